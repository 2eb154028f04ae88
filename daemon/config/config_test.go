package config

import (
	"strings"
	"testing"
)

func TestValidateInstanceName(t *testing.T) {
	good := []string{"c1", "C01", "web-1", "a", strings.Repeat("a", 63)}
	for _, n := range good {
		if err := ValidateInstanceName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	bad := []string{"", "1abc", "-a", "a-", "a_b", "a.b", "a/b", "..", "ünï", strings.Repeat("a", 64), strings.Repeat("x", 300)}
	for _, n := range bad {
		if err := ValidateInstanceName(n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestValidateInstanceKey(t *testing.T) {
	ok := map[string]string{
		"boot.autostart": "true", "boot.autostart.delay": "5", "limits.cpu": "2", "limits.memory": "512MiB",
		"environment.FOO": "bar", "user.note": "multi\nline ok", "raw.lxc": "lxc.cap.drop = sys_admin\n# comment\n",
		"security.privileged": "false", "limits.cpu.x": "",
	}
	delete(ok, "limits.cpu.x")
	for k, v := range ok {
		if err := ValidateInstanceKey(k, v); err != nil {
			t.Errorf("%s=%q refused: %v", k, v, err)
		}
	}
	bad := map[string]string{
		"boot.autostart": "maybe", "boot.autostart.delay": "-1", "limits.cpu": "0", "limits.memory": "lots",
		"environment.FOO": "a\nlxc.rootfs.path = /", "raw.lxc": "lxc.rootfs.path = dir:/", "nonsense.key": "1",
		"environment.": "x", "environment.A=B": "c", "environment.A\nlxc.rootfs.path": "dir:/", "environment.A B": "c",
	}
	for k, v := range bad {
		err := ValidateInstanceKey(k, v)
		if err == nil {
			t.Errorf("%s=%q accepted", k, v)
			continue
		}
		if !strings.Contains(err.Error(), k) && k != "environment." && !strings.Contains(k, "\n") {
			t.Errorf("error for %s does not name the key: %v", k, err)
		}
	}
}

func TestParseSizeAndCPUSet(t *testing.T) {
	sizes := map[string]int64{"512MiB": 512 << 20, "1GB": 1e9, "1048576": 1 << 20, "2GiB": 2 << 30}
	for in, want := range sizes {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	cpus := map[string]string{"1": "0", "2": "0-1", "0,2": "0,2", "1-3": "1-3"}
	for in, want := range cpus {
		if got, err := CPUSet(in); err != nil || got != want {
			t.Errorf("CPUSet(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CPUSet("3-1"); err == nil {
		t.Error("CPUSet accepted a reversed range")
	}
}
