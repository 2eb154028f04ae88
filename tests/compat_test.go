package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"cell/tests/harness"
)

// lxcClient runs LXD's own `lxc` client (lxd-client 5.0.2) against celld.
func lxcClient(t *testing.T, d *harness.Daemon, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	return d.Run(in, "lxc", args...)
}

// mustLXC runs lxc and fails the test unless it exits 0.
func mustLXC(t *testing.T, d *harness.Daemon, args ...string) string {
	t.Helper()
	out, errOut, code := lxcClient(t, d, "", args...)
	if code != 0 {
		t.Fatalf("lxc %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func needLXCClient(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("lxc"); err != nil {
		t.Skip("LXD's lxc client is not installed (apt-get install lxd-client)")
	}
}

// TestCompatLXC drives celld with LXD 5.0.2's own command line client.
func TestCompatLXC(t *testing.T) {
	needLXCClient(t)
	d := busyboxDaemon(t)

	t.Run("image list shows the alias", func(t *testing.T) {
		if out := mustLXC(t, d, "image", "list"); !strings.Contains(out, "| bb ") {
			t.Errorf("lxc image list does not show alias bb:\n%s", out)
		}
		var images []struct {
			Aliases []struct {
				Name string `json:"name"`
			} `json:"aliases"`
			Fingerprint string `json:"fingerprint"`
		}
		if err := json.Unmarshal([]byte(mustLXC(t, d, "image", "list", "--format", "json")), &images); err != nil {
			t.Fatalf("lxc image list --format json: %v", err)
		}
		if len(images) != 1 || len(images[0].Aliases) != 1 || images[0].Aliases[0].Name != "bb" {
			t.Errorf("images %+v, want one with alias bb", images)
		}
	})

	t.Run("launch from a local alias", func(t *testing.T) {
		mustLXC(t, d, "launch", "bb", "c1")
		wantState(t, d, "c1", "Running")
		mustLXC(t, d, "init", "bb", "c2")
		wantState(t, d, "c2", "Stopped")
	})

	t.Run("list", func(t *testing.T) {
		out := mustLXC(t, d, "list")
		rows := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			cells := strings.Split(line, "|")
			if len(cells) > 3 {
				rows[strings.TrimSpace(cells[1])] = strings.TrimSpace(cells[2])
			}
		}
		if rows["c1"] != "RUNNING" || rows["c2"] != "STOPPED" {
			t.Errorf("lxc list table: c1 %q, c2 %q, want RUNNING and STOPPED:\n%s", rows["c1"], rows["c2"], out)
		}
		var list []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			State  *struct {
				Status string `json:"status"`
			} `json:"state"`
		}
		if err := json.Unmarshal([]byte(mustLXC(t, d, "list", "--format", "json")), &list); err != nil {
			t.Fatalf("lxc list --format json: %v", err)
		}
		got := map[string]string{}
		for _, i := range list {
			got[i.Name] = i.Status
			if i.State == nil || i.State.Status != i.Status {
				t.Errorf("%s: state %+v does not agree with status %q", i.Name, i.State, i.Status)
			}
		}
		if len(got) != 2 || got["c1"] != "Running" || got["c2"] != "Stopped" {
			t.Errorf("lxc list --format json: %v, want c1 Running and c2 Stopped", got)
		}
	})

	t.Run("exec stdout stderr exit code", func(t *testing.T) {
		out, errOut, code := lxcClient(t, d, "", "exec", "c1", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
		if out != "out\n" || errOut != "err\n" || code != 3 {
			t.Errorf("lxc exec: stdout %q stderr %q exit %d, want out, err, 3", out, errOut, code)
		}
	})

	t.Run("exec stdin", func(t *testing.T) {
		raw := make([]byte, 300<<10)
		_, _ = rand.Read(raw)
		data := base64.StdEncoding.EncodeToString(raw) + "\nlast line\n"
		out, errOut, code := lxcClient(t, d, data, "exec", "c1", "--", "cat")
		if code != 0 || out != data {
			t.Errorf("lxc exec -- cat: exit %d, %d bytes back of %d, equal=%v, stderr %q", code, len(out), len(data), out == data, errOut)
		}
	})

	t.Run("file push and pull", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		content := "hello from the host\n\x00binary\xff\n"
		if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(src, 0o640); err != nil {
			t.Fatal(err)
		}
		mustLXC(t, d, "file", "push", src, "c1/root/pushed")
		if out, code := execCommand(t, d, "c1", "stat", "-c", "%a %u %s", "/root/pushed"); code != 0 || out != "640 0 "+strconv.Itoa(len(content))+"\n" {
			t.Errorf("pushed file inside: %q, want mode 640, owner 0, %d bytes", out, len(content))
		}
		dst := filepath.Join(dir, "dst")
		mustLXC(t, d, "file", "pull", "c1/root/pushed", dst)
		got, err := os.ReadFile(dst)
		if err != nil || string(got) != content {
			t.Errorf("pulled content %q (%v), want %q", got, err, content)
		}
		if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o640 {
			t.Errorf("pulled file mode %v (%v), want 0640", st.Mode().Perm(), err)
		}
	})

	t.Run("file push and pull recursive", func(t *testing.T) {
		dir := t.TempDir()
		tree := map[string]string{"tree/a.txt": "A\n", "tree/sub/b.txt": "B\n", "tree/sub/deeper/c.txt": "C\n"}
		for p, c := range tree {
			full := filepath.Join(dir, "up", p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mustLXC(t, d, "file", "push", "-r", filepath.Join(dir, "up", "tree"), "c1/root/")
		out, _ := execCommand(t, d, "c1", "sh", "-c", "cd /root && find tree -type f | sort && cat tree/sub/deeper/c.txt")
		if want := "tree/a.txt\ntree/sub/b.txt\ntree/sub/deeper/c.txt\nC\n"; out != want {
			t.Errorf("pushed tree inside: %q, want %q", out, want)
		}
		down := filepath.Join(dir, "down")
		if err := os.Mkdir(down, 0o755); err != nil {
			t.Fatal(err)
		}
		mustLXC(t, d, "file", "pull", "-r", "c1/root/tree", down)
		got := map[string]string{}
		_ = filepath.WalkDir(down, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				data, _ := os.ReadFile(p)
				rel, _ := filepath.Rel(down, p)
				got[rel] = string(data)
			}
			return nil
		})
		if len(got) != len(tree) {
			t.Errorf("pulled tree %v, want %v", got, tree)
		}
		for p, c := range tree {
			if got[p] != c {
				t.Errorf("pulled %s = %q, want %q", p, got[p], c)
			}
		}
	})

	t.Run("config set and get", func(t *testing.T) {
		mustLXC(t, d, "config", "set", "c1", "user.x", "1")
		if out := mustLXC(t, d, "config", "get", "c1", "user.x"); out != "1\n" {
			t.Errorf("lxc config get: %q, want 1", out)
		}
		if v := getInstance(t, d, "c1").Config["user.x"]; v != "1" {
			t.Errorf("API shows user.x = %q after lxc config set", v)
		}
	})

	t.Run("info", func(t *testing.T) {
		out := mustLXC(t, d, "info", "c1")
		for _, want := range []string{"Name: c1", "Status: RUNNING", "Type: container"} {
			if !strings.Contains(out, want) {
				t.Errorf("lxc info lacks %q:\n%s", want, out)
			}
		}
		if out := mustLXC(t, d, "info"); !strings.Contains(out, "api_version: \"1.0\"") {
			t.Errorf("lxc info (server) lacks api_version:\n%s", out)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		mustLXC(t, d, "stop", "c1")
		wantState(t, d, "c1", "Stopped")
		mustLXC(t, d, "start", "c1")
		wantState(t, d, "c1", "Running")
	})

	t.Run("delete", func(t *testing.T) {
		if _, _, code := lxcClient(t, d, "", "delete", "c1"); code == 0 {
			t.Error("lxc delete of a running instance succeeded without --force")
		}
		wantState(t, d, "c1", "Running")
		mustLXC(t, d, "delete", "-f", "c1")
		mustLXC(t, d, "delete", "c2")
		for _, name := range []string{"c1", "c2"} {
			if status, _ := d.API("GET", "/1.0/instances/"+name, nil); status != http.StatusNotFound {
				t.Errorf("%s still answers %d after lxc delete", name, status)
			}
		}
		if s := d.LXCState("c1"); s == "RUNNING" {
			t.Error("c1 still runs after lxc delete -f")
		}
		if out := mustLXC(t, d, "list", "--format", "csv"); strings.TrimSpace(out) != "" {
			t.Errorf("lxc list after deleting everything: %q", out)
		}
	})
}

// pylxdScript uses pylxd 2.2's old API (client.containers) the way a
// program would: list, create from an alias, start, run a command.
const pylxdScript = `
import json, sys, urllib.parse, warnings
warnings.simplefilter("ignore")
import pylxd

client = pylxd.Client(endpoint="http+unix://" + urllib.parse.quote(sys.argv[1], safe=""))
result = {"before": sorted(c.name for c in client.containers.all())}
c = client.containers.create({"name": "py1", "source": {"type": "image", "alias": "bb"}}, wait=True)
c.start(wait=True)
c = client.containers.get("py1")
result["status"] = c.status
r = c.execute(["sh", "-c", "echo py-out; echo py-err >&2; exit 2"])
result["exec"] = [r.exit_code, r.stdout, r.stderr]
result["after"] = sorted(c.name for c in client.containers.all())
print(json.dumps(result))
`

// TestCompatPylxd drives celld with python3-pylxd 2.2.10.
func TestCompatPylxd(t *testing.T) {
	python := "/usr/bin/python3" // Debian's, which has pylxd; not a pyenv shim
	if err := exec.Command(python, "-c", "import pylxd").Run(); err != nil {
		t.Skip("python3-pylxd is not installed")
	}
	d := busyboxDaemon(t)
	d.Launch("bb", "c0", nil)
	script := filepath.Join(t.TempDir(), "pylxd_test.py")
	if err := os.WriteFile(script, []byte(pylxdScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, d.Socket())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pylxd script: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var res struct {
		Before []string `json:"before"`
		After  []string `json:"after"`
		Status string   `json:"status"`
		Exec   []any    `json:"exec"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("pylxd script output %q: %v (stderr %s)", stdout.String(), err, stderr.String())
	}
	if strings.Join(res.Before, ",") != "c0" || strings.Join(res.After, ",") != "c0,py1" {
		t.Errorf("pylxd listed %v before and %v after, want [c0] and [c0 py1]", res.Before, res.After)
	}
	if res.Status != "Running" {
		t.Errorf("pylxd sees py1 as %q, want Running", res.Status)
	}
	if len(res.Exec) != 3 || res.Exec[0] != float64(2) || res.Exec[1] != "py-out\n" || res.Exec[2] != "py-err\n" {
		t.Errorf("pylxd execute: %v, want [2 py-out py-err]", res.Exec)
	}
	wantState(t, d, "py1", "Running")
	if base := getInstance(t, d, "py1").Config["volatile.base_image"]; base == "" {
		t.Error("py1 was not created from the image")
	}
}
