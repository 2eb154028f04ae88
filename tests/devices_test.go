package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevicesUnix: unix-char devices appear in the container as working
// device nodes with the asked mode, at start and live; a profile's device
// is masked by a "none" device; a missing host device and two devices on
// one path are refused with nothing applied.
func TestDevicesUnix(t *testing.T) {
	d := busyboxDaemon(t)
	createInstance(t, d, "C01", nil)
	d.MustC("config", "device", "add", "C01", "mynull", "unix-char", "source=/dev/null", "path=/dev/mynull")
	d.MustC("start", "C01")
	out := d.MustC("exec", "C01", "--", "sh", "-c", "echo hi > /dev/mynull && ls -l /dev/mynull")
	if !strings.HasPrefix(out, "crw-rw----") || !strings.Contains(out, "1,   3") {
		t.Errorf("/dev/mynull in the container: %q", out)
	}

	// Live.
	d.MustC("config", "device", "add", "C01", "myzero", "unix-char", "source=/dev/zero", "path=/dev/myzero", "mode=0600")
	out = d.MustC("exec", "C01", "--", "sh", "-c", "head -c 5 /dev/myzero | wc -c; ls -l /dev/myzero")
	if f := strings.Fields(out); len(f) < 2 || f[0] != "5" || !strings.HasPrefix(f[1], "crw-------") {
		t.Errorf("hotplugged /dev/myzero: %q", out)
	}
	d.MustC("config", "device", "remove", "C01", "myzero")
	if _, _, code := d.C("exec", "C01", "--", "test", "-e", "/dev/myzero"); code == 0 {
		t.Errorf("/dev/myzero still in the container after its removal")
	}

	// Refusals: nothing applied.
	_, errOut, code := d.C("config", "device", "add", "C01", "gone", "unix-char", "source=/dev/no-such-device")
	if code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("a missing host device: exit %d %q", code, errOut)
	}
	_, errOut, code = d.C("config", "device", "add", "C01", "notchar", "unix-char", "source=/etc/hostname")
	if code == 0 || !strings.Contains(errOut, "not a char device") {
		t.Errorf("a regular file as a char device: exit %d %q", code, errOut)
	}
	_, errOut, code = d.C("config", "device", "add", "C01", "twice", "unix-char", "source=/dev/zero", "path=/dev/mynull")
	if code == 0 || !strings.Contains(errOut, "/dev/mynull") {
		t.Errorf("two devices on one path: exit %d %q", code, errOut)
	}
	_, errOut, code = d.C("config", "device", "add", "C01", "nodir", "disk", "source=/no/such/dir", "path=/mnt")
	if code == 0 || !strings.Contains(errOut, "does not exist") {
		t.Errorf("a disk from a missing host path: exit %d %q", code, errOut)
	}
	devs := d.MustC("config", "device", "list", "C01")
	if strings.Fields(devs)[0] != "mynull" || len(strings.Fields(devs)) != 1 {
		t.Errorf("devices after refused additions: %q", devs)
	}
	// Not required: accepted, and left out while missing.
	d.MustC("config", "device", "add", "C01", "maybe", "unix-char", "source=/dev/no-such-device", "required=false")
	d.MustC("restart", "-f", "C01")

	// A profile's device, added live to the running instances using it,
	// and masked by an instance's "none" device.
	d.MustC("profile", "create", "dev")
	d.MustC("launch", "bb", "C02", "-p", "default", "-p", "dev")
	d.MustC("profile", "device", "add", "dev", "myzero", "unix-char", "source=/dev/zero", "path=/dev/pzero")
	d.MustC("exec", "C02", "--", "test", "-c", "/dev/pzero")
	d.MustC("launch", "bb", "C03", "-p", "default", "-p", "dev")
	d.MustC("config", "device", "add", "C03", "myzero", "none")
	if _, _, code := d.C("exec", "C03", "--", "test", "-e", "/dev/pzero"); code == 0 {
		t.Errorf("a masked profile device is still in the container")
	}
	d.MustC("restart", "-f", "C03")
	if _, _, code := d.C("exec", "C03", "--", "test", "-e", "/dev/pzero"); code == 0 {
		t.Errorf("a masked profile device is back after a restart")
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "lxc", "C01", "devices", "unix.mynull")); err != nil {
		t.Errorf("host node of mynull: %v", err)
	}
}
