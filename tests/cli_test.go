package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cell/tests/harness"
)

// TestCLI drives celld through `c` the way the README shows a user doing it.
func TestCLI(t *testing.T) {
	d := harness.StartDaemon(t)
	image := harness.BusyboxImage(t)

	out := d.MustC("image", "import", image, "--alias", "busybox")
	if !strings.Contains(out, "Image imported with fingerprint:") {
		t.Fatalf("image import printed %q", out)
	}
	if out := d.MustC("image", "list", "--format", "csv"); !strings.Contains(out, "busybox,") {
		t.Fatalf("image list lacks the alias:\n%s", out)
	}

	d.MustC("launch", "busybox", "C01")
	t.Run("list", func(t *testing.T) {
		d := d.For(t)
		out := d.MustC("list", "--format", "csv", "-c", "ns")
		if strings.TrimSpace(out) != "C01,RUNNING" {
			t.Fatalf("list = %q, want C01,RUNNING", out)
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(d.MustC("list", "--format", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0]["name"] != "C01" || list[0]["status"] != "Running" {
			t.Fatalf("list json = %v", list)
		}
		table := d.MustC("list")
		for _, col := range []string{"NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"} {
			if !strings.Contains(table, col) {
				t.Errorf("table lacks column %s:\n%s", col, table)
			}
		}
	})
	t.Run("exec", func(t *testing.T) {
		d := d.For(t)
		stdout, stderr, code := d.C("exec", "C01", "--", "sh", "-c", "echo out; echo err >&2; exit 42")
		if code != 42 || stdout != "out\n" || stderr != "err\n" {
			t.Fatalf("exec: code %d stdout %q stderr %q; want 42, out, err", code, stdout, stderr)
		}
		stdout, _, code = d.Run(strings.NewReader("piped\n"), filepath.Join(d.Bin, "c"), "exec", "C01", "--", "cat")
		if code != 0 || stdout != "piped\n" {
			t.Fatalf("stdin through exec: code %d, %q", code, stdout)
		}
	})
	t.Run("files", func(t *testing.T) {
		d := d.For(t)
		src := filepath.Join(t.TempDir(), "hosts")
		if err := os.WriteFile(src, []byte("127.0.0.1 test\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d.MustC("file", "push", src, "C01/etc/hosts", "--mode", "0644", "--uid", "0", "--gid", "0")
		if got := d.MustC("exec", "C01", "--", "stat", "-c", "%a %u %g", "/etc/hosts"); got != "644 0 0\n" {
			t.Fatalf("pushed file mode/owner = %q", got)
		}
		dst := filepath.Join(t.TempDir(), "etc-copy")
		d.MustC("file", "pull", "-r", "C01/etc/", dst)
		data, err := os.ReadFile(filepath.Join(dst, "etc", "hosts"))
		if err != nil {
			// lxc puts the directory itself inside the target.
			data, err = os.ReadFile(filepath.Join(dst, "hosts"))
		}
		if err != nil || string(data) != "127.0.0.1 test\n" {
			t.Fatalf("pulled hosts = %q, %v", data, err)
		}
	})
	t.Run("config", func(t *testing.T) {
		d := d.For(t)
		d.MustC("config", "set", "C01", "boot.autostart", "true")
		if got := d.MustC("config", "get", "C01", "boot.autostart"); strings.TrimSpace(got) != "true" {
			t.Fatalf("config get = %q", got)
		}
		_, stderr, code := d.C("config", "set", "C01", "boot.autostart", "maybe")
		if code == 0 || !strings.Contains(stderr, "boot.autostart") {
			t.Fatalf("bad value accepted or error does not name the key: %d %q", code, stderr)
		}
		_, stderr, code = d.C("config", "set", "C01", "no.such.key", "1")
		if code == 0 || !strings.Contains(stderr, "no.such.key") {
			t.Fatalf("unknown key accepted or not named: %d %q", code, stderr)
		}
		if !strings.Contains(d.MustC("config", "show", "C01", "--expanded"), "pool: default") {
			t.Fatal("expanded config does not show the root disk from the default profile")
		}
	})
	t.Run("lifecycle", func(t *testing.T) {
		d := d.For(t)
		for _, step := range []struct {
			args  []string
			state string
		}{
			{[]string{"pause", "C01"}, "FROZEN"},
			{[]string{"resume", "C01"}, "RUNNING"},
			{[]string{"restart", "C01"}, "RUNNING"},
			{[]string{"stop", "C01"}, "STOPPED"},
			{[]string{"start", "C01"}, "RUNNING"},
		} {
			d.MustC(step.args...)
			if got := d.LXCState("C01"); got != step.state {
				t.Fatalf("after c %s: liblxc says %s, want %s", strings.Join(step.args, " "), got, step.state)
			}
		}
		if _, _, code := d.C("rename", "C01", "C02"); code == 0 {
			t.Fatal("renaming a running instance succeeded")
		}
		d.MustC("stop", "C01")
		d.MustC("rename", "C01", "C02")
		d.MustC("start", "C02")
		if _, _, code := d.C("delete", "C02"); code == 0 {
			t.Fatal("deleting a running instance without -f succeeded")
		}
		d.MustC("delete", "-f", "C02")
		if out := d.MustC("list", "--format", "csv"); strings.TrimSpace(out) != "" {
			t.Fatalf("instances left after delete: %q", out)
		}
	})
	t.Run("profiles", func(t *testing.T) {
		d := d.For(t)
		d.MustC("profile", "create", "web")
		d.MustC("profile", "set", "web", "environment.ROLE", "web")
		d.MustC("launch", "busybox", "W1", "-p", "default", "-p", "web")
		if got := d.MustC("exec", "W1", "--", "sh", "-c", "echo $ROLE"); got != "web\n" {
			t.Fatalf("profile environment not applied: %q", got)
		}
		if _, _, code := d.C("profile", "delete", "web"); code == 0 {
			t.Fatal("deleting a profile in use succeeded")
		}
		d.MustC("delete", "-f", "W1")
		d.MustC("profile", "delete", "web")
	})
	t.Run("images", func(t *testing.T) {
		d := d.For(t)
		dir := t.TempDir()
		d.MustC("image", "export", "busybox", filepath.Join(dir, "exported"))
		matches, _ := filepath.Glob(filepath.Join(dir, "exported*"))
		if len(matches) != 1 {
			t.Fatalf("export wrote %v", matches)
		}
		orig, _ := os.ReadFile(image)
		got, _ := os.ReadFile(matches[0])
		if string(orig) != string(got) {
			t.Fatal("exported image differs from the imported file")
		}
		fp := strings.Split(d.MustC("image", "list", "--format", "csv", "-c", "f"), "\n")[0]
		d.MustC("image", "alias", "create", "bb2", fp)
		d.MustC("image", "delete", "busybox")
		if _, _, code := d.C("image", "show", "bb2"); code == 0 {
			t.Fatal("an alias outlived its image")
		}
		if out := d.MustC("image", "list", "--format", "csv"); strings.TrimSpace(out) != "" {
			t.Fatalf("image still listed after delete: %q", out)
		}
		_, stderr, code := d.C("launch", "busybox", "X1")
		if code == 0 || !strings.Contains(strings.ToLower(stderr), "not found") {
			t.Fatalf("launch of a deleted image: %d %q", code, stderr)
		}
	})
}

// TestCLIConfigObjects sets, reads and unsets keys and descriptions of a
// network, a storage pool and a profile through `c`, the way an LXD user
// does with `lxc network|storage|profile set/get/unset`.
func TestCLIConfigObjects(t *testing.T) {
	var links []string
	expectLinksGone(t, &links)
	d := harness.StartDaemon(t)
	network, _ := managedNetwork(t, d)
	links = append(links, network)
	d.MustC("profile", "create", "web")

	objects := []struct{ command, name, key, value string }{
		{"network", network, "ipv4.dhcp.expiry", "2h"},
		// A dir pool has no key to change after its creation: the
		// description alone.
		{"storage", "default", "", ""},
		{"profile", "web", "limits.processes", "200"},
	}
	for _, o := range objects {
		d.MustC(o.command, "set", o.name, "description", "made by "+o.command)
		if got := strings.TrimSpace(d.MustC(o.command, "get", o.name, "description")); got != "made by "+o.command {
			t.Errorf("c %s get %s description = %q", o.command, o.name, got)
		}
		if o.key == "" {
			continue
		}
		d.MustC(o.command, "set", o.name, o.key+"="+o.value)
		if got := strings.TrimSpace(d.MustC(o.command, "get", o.name, o.key)); got != o.value {
			t.Errorf("c %s get %s %s = %q after set, want %q", o.command, o.name, o.key, got, o.value)
		}
		// YAML quotes a value that would read as a number: "200".
		if show := d.MustC(o.command, "show", o.name); !strings.Contains(show, o.key+": "+o.value) && !strings.Contains(show, o.key+`: "`+o.value+`"`) {
			t.Errorf("c %s show %s lacks %s: %s\n%s", o.command, o.name, o.key, o.value, show)
		}
		d.MustC(o.command, "unset", o.name, o.key)
		if got := strings.TrimSpace(d.MustC(o.command, "get", o.name, o.key)); got != "" {
			t.Errorf("c %s get %s %s = %q after unset", o.command, o.name, o.key, got)
		}
		if _, errOut, code := d.C(o.command, "unset", o.name, o.key); code == 0 || !strings.Contains(errOut, "not currently set") {
			t.Errorf("c %s unset of a key that is not set: exit %d, %q", o.command, code, errOut)
		}
		// A bad key is the server's refusal, and changes nothing.
		if _, errOut, code := d.C(o.command, "set", o.name, "no.such.key=1"); code == 0 || errOut == "" {
			t.Errorf("c %s set of an unknown key: exit %d, %q", o.command, code, errOut)
		}
		if got := strings.TrimSpace(d.MustC(o.command, "get", o.name, "description")); got != "made by "+o.command {
			t.Errorf("c %s: description %q after a refused change", o.command, got)
		}
	}
	d.MustC("network", "delete", network)
}
