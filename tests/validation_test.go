package tests

import (
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"cell/tests/harness"
)

// validationSnapshot is what must not change when a request is refused.
type validationSnapshot struct {
	listed, volumes, rows []string
}

func validationTake(t *testing.T, d *harness.Daemon) validationSnapshot {
	t.Helper()
	var s validationSnapshot
	s.listed = imagesInstances(t, d)
	s.volumes = imagesNames(t, filepath.Join(crashPool(d), "containers"))
	for name := range crashRows(t, d) {
		s.rows = append(s.rows, name)
	}
	slices.Sort(s.rows)
	return s
}

func (s validationSnapshot) same(t *testing.T, d *harness.Daemon) {
	t.Helper()
	now := validationTake(t, d)
	if !slices.Equal(s.listed, now.listed) || !slices.Equal(s.volumes, now.volumes) || !slices.Equal(s.rows, now.rows) {
		t.Errorf("a refused request changed state: instances %v -> %v, volumes %v -> %v, rows %v -> %v",
			s.listed, now.listed, s.volumes, now.volumes, s.rows, now.rows)
	}
}

// validationRefused sends a request and checks it is refused with status,
// with an error that mentions every one of mention.
func validationRefused(t *testing.T, d *harness.Daemon, method, path string, body any, status int, mention ...string) {
	t.Helper()
	got, env := d.API(method, path, body)
	if got != status {
		t.Errorf("%s %s: status %d, want %d (%s)", method, path, got, status, env.Error)
		if got == http.StatusAccepted {
			d.Wait(env)
		}
		return
	}
	if env.Type != "error" || env.ErrorCode != status {
		t.Errorf("%s %s: envelope %+v, want an error %d", method, path, env, status)
	}
	for _, m := range mention {
		if !strings.Contains(env.Error, m) {
			t.Errorf("%s %s: error %q does not mention %q", method, path, env.Error, m)
		}
	}
}

// validationConfig returns an instance's own config as the API shows it.
func validationConfig(t *testing.T, d *harness.Daemon, name string) map[string]string {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name, nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", name, status, env.Error)
	}
	var inst struct {
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal(env.Metadata, &inst); err != nil {
		t.Fatal(err)
	}
	return inst.Config
}

func TestValidation(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "v1", nil)
	fromImage := func(name string, config map[string]string) map[string]any {
		return map[string]any{"name": name, "config": config, "source": map[string]string{"type": "image", "alias": "bb"}}
	}

	t.Run("InstanceNames", func(t *testing.T) {
		before := validationTake(t, d)
		for _, name := range []string{"1abc", "-a", "a-", "a_b", "a.b", "a/b", "..", ".", "a b", "a\nb", "ünï", "ab\x00",
			strings.Repeat("a", 64), strings.Repeat("x", 300)} {
			validationRefused(t, d, "POST", "/1.0/instances", fromImage(name, nil), http.StatusBadRequest, "instance name")
			// Renaming to it is refused the same way.
			validationRefused(t, d, "POST", "/1.0/instances/v1", map[string]string{"name": name}, http.StatusBadRequest, "instance name")
		}
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "", "type": "virtual-machine", "source": map[string]string{"type": "none"}},
			http.StatusBadRequest, "virtual-machine")
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "vm1", "type": "virtual-machine", "source": map[string]string{"type": "none"}},
			http.StatusBadRequest, "virtual-machine")
		before.same(t, d)
		// The longest name allowed works.
		long := strings.Repeat("a", 63)
		d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": long, "source": map[string]string{"type": "none"}})
		d.MustSucceed("DELETE", "/1.0/instances/"+long, nil)
		// An empty name asks for a generated one, as with LXD (`lxc launch
		// IMAGE` sends none): it must be a valid name.
		d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": "", "type": "container", "source": map[string]string{"type": "none"}})
		after := imagesInstances(t, d)
		var made []string
		for _, n := range after {
			if !slices.Contains(before.listed, n) {
				made = append(made, n)
			}
		}
		if len(made) != 1 || !regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]{0,62}$`).MatchString(made[0]) || strings.HasSuffix(made[0], "-") {
			t.Errorf("an empty name made %v", made)
		}
		for _, n := range made {
			d.MustSucceed("DELETE", "/1.0/instances/"+n, nil)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		before := validationTake(t, d)
		validationRefused(t, d, "POST", "/1.0/instances", fromImage("v1", nil), http.StatusConflict, "v1")
		before.same(t, d)
		if code, _ := crashExec(t, d, "v1", "true"); code != 0 {
			t.Error("the existing instance no longer works")
		}
		d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": "v2", "source": map[string]string{"type": "none"}})
		validationRefused(t, d, "POST", "/1.0/instances/v2", map[string]string{"name": "v1"}, http.StatusConflict, "v1")
		d.MustSucceed("DELETE", "/1.0/instances/v2", nil)
	})

	t.Run("DeleteRunning", func(t *testing.T) {
		validationRefused(t, d, "DELETE", "/1.0/instances/v1", nil, http.StatusBadRequest, "v1", "running")
		if state := d.LXCState("v1"); state != "RUNNING" {
			t.Errorf("v1 is %q after a refused delete", state)
		}
		if _, err := os.Stat(filepath.Join(crashPool(d), "containers", "v1", "rootfs", "etc")); err != nil {
			t.Errorf("v1's rootfs after a refused delete: %v", err)
		}
		if code, _ := crashExec(t, d, "v1", "true"); code != 0 {
			t.Error("v1 no longer runs commands")
		}
	})

	t.Run("UnknownImage", func(t *testing.T) {
		before := validationTake(t, d)
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "noimg", "source": map[string]string{"type": "image", "alias": "nosuch"}},
			http.StatusNotFound, "nosuch")
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "noimg", "source": map[string]string{"type": "image", "fingerprint": "0123abcd"}},
			http.StatusNotFound, "0123abcd")
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "noimg", "source": map[string]string{"type": "image"}},
			http.StatusBadRequest, "alias")
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "noimg", "source": map[string]string{"type": "teleport"}},
			http.StatusBadRequest, "teleport")
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "noimg", "profiles": []string{"nosuch"}, "source": map[string]string{"type": "none"}},
			http.StatusBadRequest, "nosuch")
		before.same(t, d)
	})

	badConfig := []struct{ key, value string }{
		{"nonsense.key", "1"},
		{"boot.autostart", "maybe"},
		{"limits.memory", "lots"},
		{"limits.cpu", "0"},
		{"security.privileged", "sure"},
		{"raw.lxc", "lxc.rootfs.path = dir:/"},
		{"environment.X", "a\nlxc.rootfs.path = dir:/"},
		{"environment.A\nlxc.rootfs.path", "dir:/"},
		{"environment.A=B", "c"},
	}
	t.Run("BadConfig", func(t *testing.T) {
		before := validationTake(t, d)
		for _, c := range badConfig {
			mention := c.key
			if strings.Contains(c.key, "\n") {
				mention = "environment." // the key is shown quoted
			}
			validationRefused(t, d, "POST", "/1.0/instances", fromImage("badcfg", map[string]string{c.key: c.value}), http.StatusBadRequest, mention)
		}
		before.same(t, d)
		// The same through PATCH and PUT of an existing instance, which
		// keeps its config.
		cfg := validationConfig(t, d, "v1")
		for _, c := range badConfig {
			mention := c.key
			if strings.Contains(c.key, "\n") {
				mention = "environment."
			}
			validationRefused(t, d, "PATCH", "/1.0/instances/v1", map[string]any{"config": map[string]string{c.key: c.value}}, http.StatusBadRequest, mention)
			put := map[string]string{c.key: c.value}
			for k, v := range cfg {
				put[k] = v
			}
			validationRefused(t, d, "PUT", "/1.0/instances/v1", map[string]any{"config": put, "profiles": []string{"default"}}, http.StatusBadRequest, mention)
			validationRefused(t, d, "PUT", "/1.0/profiles/default", map[string]any{"config": map[string]string{c.key: c.value},
				"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": "default"}}}, http.StatusBadRequest, mention)
		}
		if now := validationConfig(t, d, "v1"); !maps.Equal(cfg, now) {
			t.Errorf("refused updates changed v1's config: %v -> %v", cfg, now)
		}
	})

	t.Run("BadDevices", func(t *testing.T) {
		before := validationTake(t, d)
		for name, dev := range map[string]map[string]string{
			// Host paths are valid disk sources (as in LXD); a relative
			// mount path, a missing source and an unknown key are not.
			"relpath":  {"type": "disk", "source": "/tmp", "path": "mnt"},
			"nosource": {"type": "disk", "source": "/no/such/dir", "path": "/mnt"},
			"badkey":   {"type": "disk", "source": "/tmp", "path": "/mnt", "bogus": "1"},
			"eth0":     {"type": "nic", "nictype": "bridged", "parent": "br0"},
			"notype":   {"path": "/x"},
		} {
			validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "baddev", "devices": map[string]any{name: dev},
				"source": map[string]string{"type": "image", "alias": "bb"}}, http.StatusBadRequest, name)
			validationRefused(t, d, "PATCH", "/1.0/instances/v1", map[string]any{"devices": map[string]any{name: dev}}, http.StatusBadRequest, name)
		}
		before.same(t, d)
		status, env := d.API("GET", "/1.0/instances/v1", nil)
		if status != 200 || strings.Contains(string(env.Metadata), "nosource") || strings.Contains(string(env.Metadata), "relpath") {
			t.Errorf("a refused device was kept: %s", env.Metadata)
		}
	})

	t.Run("Architecture", func(t *testing.T) {
		before := validationTake(t, d)
		validationRefused(t, d, "POST", "/1.0/instances", map[string]any{"name": "arch", "architecture": "sparc64", "source": map[string]string{"type": "none"}},
			http.StatusBadRequest, "sparc64")
		validationRefused(t, d, "PUT", "/1.0/instances/v1", map[string]any{"architecture": "sparc64",
			"config": validationConfig(t, d, "v1"), "profiles": []string{"default"}}, http.StatusBadRequest, "sparc64")
		before.same(t, d)
		// The host's own, under the name images use for it, is fine.
		alias := map[string]string{"x86_64": "amd64", "aarch64": "arm64"}
		host := strings.TrimPrefix(strings.SplitN(imagesMetadata(), "\n", 2)[0], "architecture: ")
		if alias[host] == "" {
			return
		}
		d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": "arch", "architecture": alias[host], "source": map[string]string{"type": "none"}})
		status, env := d.API("GET", "/1.0/instances/arch", nil)
		if status != 200 || !strings.Contains(string(env.Metadata), `"architecture":"`+host+`"`) {
			t.Errorf("architecture %s not stored as %s: %s", alias[host], host, env.Metadata)
		}
		d.MustSucceed("DELETE", "/1.0/instances/arch", nil)
	})

	t.Run("Volatile", func(t *testing.T) {
		cfg := validationConfig(t, d, "v1")
		for _, key := range []string{"volatile.last_state.idmap", "volatile.base_image", "volatile.new.key"} {
			put := map[string]string{}
			for k, v := range cfg {
				put[k] = v
			}
			put[key] = "changed"
			validationRefused(t, d, "PUT", "/1.0/instances/v1", map[string]any{"config": put, "profiles": []string{"default"}}, http.StatusBadRequest, key)
			validationRefused(t, d, "PATCH", "/1.0/instances/v1", map[string]any{"config": map[string]string{key: "changed"}}, http.StatusBadRequest, key)
		}
		// Unsetting one is a change too.
		validationRefused(t, d, "PATCH", "/1.0/instances/v1", map[string]any{"config": map[string]string{"volatile.base_image": ""}}, http.StatusBadRequest, "volatile.base_image")
		if now := validationConfig(t, d, "v1"); !maps.Equal(cfg, now) {
			t.Errorf("refused volatile changes changed v1's config: %v -> %v", cfg, now)
		}
		// A PUT that leaves volatile keys out keeps them.
		status, env := d.API("PUT", "/1.0/instances/v1", map[string]any{"config": map[string]string{"user.note": "x"}, "profiles": []string{"default"}})
		if status == http.StatusAccepted {
			d.Wait(env)
		} else if status != 200 {
			t.Fatalf("PUT without volatile keys: %d %s", status, env.Error)
		}
		now := validationConfig(t, d, "v1")
		for k, v := range cfg {
			if strings.HasPrefix(k, "volatile.") && now[k] != v {
				t.Errorf("PUT dropped %s (%q -> %q)", k, v, now[k])
			}
		}
		if now["user.note"] != "x" {
			t.Errorf("PUT did not set user.note: %v", now)
		}
	})

	t.Run("MalformedJSON", func(t *testing.T) {
		if status, env := d.API("POST", "/1.0/profiles", map[string]any{"name": "scratch"}); status != 201 {
			t.Fatalf("create profile: %d %s", status, env.Error)
		}
		before := validationTake(t, d)
		// Not JSON at all: every endpoint that takes JSON says so.
		for _, body := range []string{"", "{", "nope", `{"name": "j1"} trailing`, "\x00\xff", `{"name": "j1",}`} {
			for _, target := range []struct{ method, path string }{
				{"POST", "/1.0/instances"},
				{"PUT", "/1.0/instances/v1"},
				{"PATCH", "/1.0/instances/v1"},
				{"POST", "/1.0/instances/v1"},
				{"PUT", "/1.0/instances/v1/state"},
				{"POST", "/1.0/instances/v1/exec"},
				{"POST", "/1.0/images/aliases"},
				{"PUT", "/1.0/profiles/scratch"},
				{"POST", "/1.0/profiles"},
				{"PATCH", "/1.0"},
			} {
				validationRefused(t, d, target.method, target.path, body, http.StatusBadRequest, "JSON")
			}
		}
		// JSON of the wrong shape.
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/1.0/instances", "[]"},
			{"POST", "/1.0/instances", `{"name": 5}`},
			{"POST", "/1.0/instances", `{"name": "j1", "config": {"limits.cpu": 1}}`},
			{"POST", "/1.0/instances", `{"name": "j1", "devices": ["root"]}`},
			{"PATCH", "/1.0/instances/v1", `{"config": {"limits.cpu": 1}}`},
			{"PUT", "/1.0/instances/v1", `{"profiles": "default"}`},
			{"PUT", "/1.0/instances/v1/state", `{"action": ["stop"]}`},
			{"POST", "/1.0/instances/v1/exec", `{"command": "ls -l"}`},
			{"PUT", "/1.0/profiles/scratch", `{"config": []}`},
		} {
			validationRefused(t, d, c.method, c.path, c.body, http.StatusBadRequest, "JSON")
		}
		before.same(t, d)
		if state := d.LXCState("v1"); state != "RUNNING" {
			t.Errorf("v1 is %q after malformed requests", state)
		}
	})

	t.Run("HugeBody", func(t *testing.T) {
		before := validationTake(t, d)
		huge := `{"name": "huge", "source": {"type": "none"}, "description": "` + strings.Repeat("x", 20<<20) + `"}`
		for _, target := range []struct{ method, path string }{
			{"POST", "/1.0/instances"},
			{"PUT", "/1.0/instances/v1"},
			{"PUT", "/1.0/profiles/default"},
			{"POST", "/1.0/images/aliases"},
		} {
			validationRefused(t, d, target.method, target.path, huge, http.StatusRequestEntityTooLarge)
		}
		if status, _ := d.API("GET", "/1.0", nil); status != 200 {
			t.Fatalf("the daemon does not answer after huge bodies: %d", status)
		}
		before.same(t, d)
	})

	t.Run("StateActions", func(t *testing.T) {
		for _, action := range []string{"explode", "", "START"} {
			validationRefused(t, d, "PUT", "/1.0/instances/v1/state", map[string]string{"action": action}, http.StatusBadRequest, "action")
		}
		validationRefused(t, d, "PUT", "/1.0/instances/nosuch/state", map[string]string{"action": "start"}, http.StatusNotFound, "nosuch")
		if state := d.LXCState("v1"); state != "RUNNING" {
			t.Errorf("v1 is %q after refused actions", state)
		}
	})

	d.MustSucceed("PUT", "/1.0/instances/v1/state", map[string]any{"action": "stop", "force": true})
	d.MustSucceed("DELETE", "/1.0/instances/v1", nil)
}
