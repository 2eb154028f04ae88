package tests

import (
	"net/http"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestProfilesMergeAndLive: later profiles win over earlier ones and the
// instance's own config over all; a profile in use cannot be renamed or
// deleted; a profile's limit change reaches its running users at once,
// and a bad one reaches none.
func TestProfilesMergeAndLive(t *testing.T) {
	d := busyboxDaemon(t)
	d.MustC("profile", "create", "p1")
	d.MustC("profile", "create", "p2")
	d.MustC("profile", "set", "p1", "user.color", "red")
	d.MustC("profile", "set", "p1", "user.size", "small")
	d.MustC("profile", "set", "p1", "limits.memory", "64MiB")
	d.MustC("profile", "set", "p2", "user.color", "blue")
	d.MustC("profile", "set", "p2", "user.shape", "round")
	d.MustC("launch", "bb", "C01", "-p", "default", "-p", "p1", "-p", "p2", "-c", "user.shape=square")

	var shown struct {
		Config   map[string]string `yaml:"config"`
		Profiles []string          `yaml:"profiles"`
	}
	if err := yaml.Unmarshal([]byte(d.MustC("config", "show", "C01", "--expanded")), &shown); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"user.color": "blue", "user.size": "small", "user.shape": "square", "limits.memory": "64MiB"} {
		if got := shown.Config[k]; got != want {
			t.Errorf("expanded %s = %q, want %q", k, got, want)
		}
	}
	if strings.Join(shown.Profiles, ",") != "default,p1,p2" {
		t.Errorf("profiles = %v", shown.Profiles)
	}
	// The order of the profiles is what decides.
	d.MustC("profile", "assign", "C01", "default,p2,p1")
	if got := strings.TrimSpace(d.MustC("config", "get", "C01", "user.color", "--expanded")); got != "red" {
		t.Errorf("with p1 last, user.color = %q, want red", got)
	}

	for _, args := range [][]string{{"profile", "rename", "p1", "p3"}, {"profile", "delete", "p1"}} {
		_, errOut, code := d.C(args...)
		if code == 0 || !strings.Contains(errOut, "C01") {
			t.Errorf("c %s on a profile in use: exit %d, %q (want a refusal naming C01)", strings.Join(args, " "), code, errOut)
		}
	}
	if status, _ := d.API("GET", "/1.0/profiles/p1", nil); status != http.StatusOK {
		t.Fatalf("p1 gone after a refused rename/delete: %d", status)
	}

	// Live: the running instance gets the profile's new limit.
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got != "67108864" {
		t.Fatalf("memory limit from p1 = %s", got)
	}
	d.MustC("profile", "set", "p1", "limits.memory", "80MiB")
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got != "83886080" {
		t.Fatalf("memory limit after the profile changed = %s, want 83886080", got)
	}
	// A CPU the host does not have: refused, nothing changed.
	_, errOut, code := d.C("profile", "set", "p1", "limits.cpu", "0-4095")
	if code == 0 || !strings.Contains(errOut, "not online") {
		t.Fatalf("pinning to a missing CPU: exit %d, %q", code, errOut)
	}
	if got := strings.TrimSpace(d.MustC("profile", "get", "p1", "limits.cpu")); got != "" {
		t.Errorf("refused limits.cpu saved in p1: %q", got)
	}

	// The instance's own value beats the profile, and a profile change
	// under it leaves it alone.
	d.MustC("config", "set", "C01", "limits.memory", "72MiB")
	d.MustC("profile", "set", "p1", "limits.memory", "90MiB")
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got != "75497472" {
		t.Fatalf("memory limit with an instance override = %s, want 75497472", got)
	}
	d.MustC("stop", "-f", "C01")
	d.MustC("delete", "C01")
	d.MustC("profile", "rename", "p1", "p3")
	d.MustC("profile", "delete", "p3")
}
