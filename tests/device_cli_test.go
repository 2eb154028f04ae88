package tests

import (
	"strings"
	"testing"

	"cell/tests/harness"
)

// `c profile device` and `c config device` are one set of commands: the
// same verbs on a profile's devices and on an instance's, and an instance
// can override (but not remove) a device its profile gives it.
func TestDeviceCommands(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustC("profile", "create", "extra")
	d.MustC("profile", "device", "add", "extra", "null2", "unix-char", "source=/dev/null", "path=/dev/null2")
	d.MustC("profile", "device", "set", "extra", "null2", "mode=0600")
	if got := strings.TrimSpace(d.MustC("profile", "device", "get", "extra", "null2", "mode")); got != "0600" {
		t.Fatalf("profile device get mode = %q, want 0600", got)
	}
	if out := d.MustC("profile", "device", "show", "extra"); !strings.Contains(out, "path: /dev/null2") {
		t.Fatalf("profile device show = %q", out)
	}
	d.MustC("profile", "device", "unset", "extra", "null2", "mode")
	if got := strings.TrimSpace(d.MustC("profile", "device", "get", "extra", "null2", "mode")); got != "" {
		t.Fatalf("mode after unset = %q, want empty", got)
	}
	if _, errOut, code := d.C("profile", "device", "set", "extra", "nosuch", "mode=0600"); code == 0 || !strings.Contains(errOut, "Device doesn't exist") {
		t.Fatalf("set on a missing profile device: exit %d, %q", code, errOut)
	}

	d.MustC("init", "bb", "D1", "-p", "default", "-p", "extra")
	if _, errOut, code := d.C("config", "device", "remove", "D1", "null2"); code == 0 || !strings.Contains(errOut, "Override device or modify profile") {
		t.Fatalf("removing a profile's device from an instance: exit %d, %q", code, errOut)
	}
	d.MustC("config", "device", "override", "D1", "null2", "mode=0640")
	if got := strings.TrimSpace(d.MustC("config", "device", "get", "D1", "null2", "mode")); got != "0640" {
		t.Fatalf("overridden mode = %q, want 0640", got)
	}
	if got := strings.TrimSpace(d.MustC("profile", "device", "get", "extra", "null2", "mode")); got != "" {
		t.Fatalf("the override changed the profile: mode %q", got)
	}
	d.MustC("config", "device", "remove", "D1", "null2") // the instance's own copy
	if out := d.MustC("config", "device", "list", "D1"); strings.Contains(out, "null2") {
		t.Fatalf("instance's own devices after remove = %q", out)
	}
	if out := d.MustC("config", "show", "D1", "--expanded"); !strings.Contains(out, "null2") {
		t.Fatalf("the profile's device should still apply: %q", out)
	}
	d.MustC("delete", "D1")
	d.MustC("profile", "device", "remove", "extra", "null2")
	if out := d.MustC("profile", "device", "list", "extra"); strings.TrimSpace(out) != "" {
		t.Fatalf("profile devices after remove = %q", out)
	}
}
