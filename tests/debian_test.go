package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"cell/shared/idmap"
	"cell/tests/harness"
)

// waitSystemRunning waits until systemd in the instance reports the
// system running (or degraded, then logging what failed).
func waitSystemRunning(t *testing.T, d *harness.Daemon, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, errOut, code := execWS(t, d, name, map[string]any{
			"command": []string{"systemctl", "is-system-running", "--wait"}}, nil)
		state := strings.TrimSpace(out)
		switch {
		case state == "running" && code == 0:
			return
		case state == "degraded":
			failed, _ := execCommand(t, d, name, "systemctl", "--failed", "--no-pager")
			t.Logf("%s booted degraded:\n%s", name, failed)
			return
		case (strings.Contains(errOut, "Failed to connect to bus") || state == "offline") && time.Now().Before(deadline):
			// Right after start systemd has not yet opened its bus socket,
			// or not yet created /run/systemd/system (then: offline).
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("systemctl is-system-running: %q, stderr %q, exit %d", state, errOut, code)
		}
	}
}

// ownerOf returns the host owner of a file in an instance's rootfs.
func ownerOf(t *testing.T, d *harness.Daemon, name, path string) (uid, gid uint32) {
	t.Helper()
	p := filepath.Join(d.Dir, "storage-pools", "default", "containers", name, "rootfs", path)
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return sys.Uid, sys.Gid
}

// TestDebian boots the Debian bookworm image with systemd as init, both
// unprivileged and privileged.
func TestDebian(t *testing.T) {
	image := harness.DebianImage(t)
	d := harness.StartDaemon(t)
	d.ImportImage(image, "debian")

	boot := func(t *testing.T, name string) {
		t.Helper()
		waitSystemRunning(t, d, name)
		out, code := execCommand(t, d, name, "cat", "/proc/1/comm")
		if code != 0 || strings.TrimSpace(out) != "systemd" {
			t.Errorf("PID 1 is %q (exit %d), want systemd", out, code)
		}
		if out, _ := execCommand(t, d, name, "hostname"); strings.TrimSpace(out) != name {
			t.Errorf("hostname %q, want %q", out, name)
		}
	}
	cleanStop := func(t *testing.T, name string) {
		t.Helper()
		start := time.Now()
		// Had systemd ignored its halt signal, the stop would have waited for
		// all 30 s and then killed it.
		changeState(t, d, name, "stop", map[string]any{"timeout": 30})
		if took := time.Since(start); took >= 30*time.Second {
			t.Errorf("stop took %s: systemd did not halt, it was killed at the timeout", took)
		} else {
			t.Logf("%s stopped cleanly in %s", name, took.Round(time.Millisecond))
		}
		wantState(t, d, name, "Stopped")
	}

	t.Run("unprivileged", func(t *testing.T) {
		d.Launch("debian", "deb", nil)
		boot(t, "deb")
		m, err := idmap.Parse(getInstance(t, d, "deb").Config["volatile.idmap.current"])
		if err != nil || m.IsPrivileged() {
			t.Fatalf("volatile.idmap.current of an unprivileged instance: %v %v", m, err)
		}
		if uid, gid := ownerOf(t, d, "deb", "etc/shadow"); int64(uid) != m.ShiftUID(0) || int64(gid) != m.ShiftGID(42) {
			t.Errorf("etc/shadow owned by %d:%d on the host, want %d:%d (root:shadow shifted)", uid, gid, m.ShiftUID(0), m.ShiftGID(42))
		}
		if out, _ := execCommand(t, d, "deb", "cat", "/proc/self/uid_map"); !strings.Contains(out, fmt.Sprint(m.ShiftUID(0))) {
			t.Errorf("uid_map inside: %q, want the %d range", out, m.ShiftUID(0))
		}
		cleanStop(t, "deb")
	})

	t.Run("privileged", func(t *testing.T) {
		d.Launch("debian", "debp", map[string]string{"security.privileged": "true"})
		boot(t, "debp")
		if out, _ := execCommand(t, d, "debp", "cat", "/proc/self/uid_map"); len(strings.Fields(out)) != 3 || strings.Fields(out)[1] != "0" {
			t.Errorf("uid_map of a privileged instance: %q, want the identity", out)
		}
		// The image volume is unpacked for the unprivileged map: the start
		// must have shifted this copy back to the host's ids.
		for path, want := range map[string][2]uint32{"": {0, 0}, "etc/shadow": {0, 42}, "usr/bin/bash": {0, 0}} {
			if uid, gid := ownerOf(t, d, "debp", path); uid != want[0] || gid != want[1] {
				t.Errorf("/%s owned by %d:%d on the host, want %d:%d", path, uid, gid, want[0], want[1])
			}
		}
		if last := getInstance(t, d, "debp").Config["volatile.last_state.idmap"]; last != "privileged" {
			t.Errorf("volatile.last_state.idmap = %q, want privileged", last)
		}
		cleanStop(t, "debp")
	})
}
