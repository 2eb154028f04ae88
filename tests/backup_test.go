package tests

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// treeSummary lists every file under dir: path, type and mode, owner,
// and content hash or link target.
func treeSummary(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%s %v %d:%d", rel, info.Mode(), st.Uid, st.Gid)
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestBackupExportImport: `c export` then `c import` under another name
// gives the same files (owners, modes, links, contents), config and
// snapshots, on dir and btrfs pools; the backup is gone from the server
// after the export.
func TestBackupExportImport(t *testing.T) {
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := busyboxDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.MustC("storage", "create", "bt", "btrfs")
	for _, pool := range []string{"default", "bt"} {
		t.Run(pool, func(t *testing.T) {
			d := d.For(t)
			src, dst := "src-"+pool, "dst-"+pool
			d.MustC("launch", "bb", src, "-s", pool, "-c", "user.note=kept", "-c", "limits.memory=64MiB")
			d.MustC("exec", src, "--", "sh", "-c", "mkdir -p /data && echo one > /data/a && ln -s a /data/link && ln /data/a /data/hard && chown 1000:1000 /data/a && chmod 4750 /data/a")
			d.MustC("snapshot", src, "s0")
			d.MustC("exec", src, "--", "sh", "-c", "echo two > /data/b && rm /data/link")
			d.MustC("snapshot", src, "s1")
			d.MustC("exec", src, "--", "sh", "-c", "echo three >> /data/a && chmod 4750 /data/a")
			d.MustC("stop", "-f", src)

			file := filepath.Join(t.TempDir(), "b.tar.gz")
			d.MustC("export", src, file)
			if out := d.MustC("query", "/1.0/instances/"+src+"/backups"); strings.Contains(out, "backup") {
				t.Errorf("the backup stayed on the server after the export: %s", out)
			}
			d.MustC("import", file, dst, "-s", pool)

			root := filepath.Join(d.Dir, "storage-pools", pool)
			if a, b := treeSummary(t, filepath.Join(root, "containers", src)), treeSummary(t, filepath.Join(root, "containers", dst)); a != b {
				t.Errorf("imported volume differs:\n--- %s\n%s\n--- %s\n%s", src, a, dst, b)
			}
			for _, s := range []string{"s0", "s1"} {
				a := treeSummary(t, filepath.Join(root, "snapshots", src, s))
				b := treeSummary(t, filepath.Join(root, "snapshots", dst, s))
				if a != b {
					t.Errorf("imported snapshot %s differs:\n--- %s\n%s\n--- %s\n%s", s, src, a, dst, b)
				}
			}
			var cfg struct {
				Config  map[string]string `yaml:"config"`
				Devices map[string]map[string]string
			}
			if err := yaml.Unmarshal([]byte(d.MustC("config", "show", dst)), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Config["user.note"] != "kept" || cfg.Config["limits.memory"] != "64MiB" {
				t.Errorf("imported config: %v", cfg.Config)
			}
			if got := strings.Fields(d.MustC("query", "/1.0/instances/"+dst+"/snapshots")); !strings.Contains(strings.Join(got, " "), dst+"/snapshots/s0") || !strings.Contains(strings.Join(got, " "), dst+"/snapshots/s1") {
				t.Errorf("imported snapshots: %v", got)
			}
			// It runs, and its files are the exported ones.
			d.MustC("start", dst)
			if out := d.MustC("exec", dst, "--", "sh", "-c", "cat /data/a; ls -ln /data/a"); !strings.HasPrefix(out, "one\nthree\n-rwsr-x---") || !strings.Contains(out, " 1000 ") {
				t.Errorf("/data/a in the import: %q", out)
			}
			d.MustC("restore", dst, "s0")
			if out := d.MustC("exec", dst, "--", "readlink", "/data/link"); strings.TrimSpace(out) != "a" {
				t.Errorf("restored s0 of the import: link -> %q", out)
			}
			// A name taken: refused, nothing changed.
			if _, errOut, code := d.C("import", file, src); code == 0 || !strings.Contains(errOut, "already exists") {
				t.Errorf("import over an existing name: exit %d %q", code, errOut)
			}
			d.MustC("stop", "-f", dst)
			d.MustC("delete", dst)

			// LXD's own client, both ways.
			lxcFile := filepath.Join(t.TempDir(), "lxc.tar.gz")
			for _, args := range [][]string{{"export", src, lxcFile}, {"import", lxcFile, dst, "-s", pool}} {
				if out, errOut, code := d.Run(nil, "lxc", args...); code != 0 {
					t.Fatalf("lxc %s: exit %d %s%s", strings.Join(args, " "), code, out, errOut)
				}
			}
			if a, b := treeSummary(t, filepath.Join(root, "containers", src)), treeSummary(t, filepath.Join(root, "containers", dst)); a != b {
				t.Errorf("volume imported by lxc differs:\n--- %s\n%s\n--- %s\n%s", src, a, dst, b)
			}
			d.MustC("delete", dst)
			d.MustC("delete", src)
		})
	}
}

// TestBackupAPI: backups are listed until they expire; a duplicate name
// and optimized storage are refused.
func TestBackupAPI(t *testing.T) {
	d := busyboxDaemon(t)
	createInstance(t, d, "C01", nil)
	expires := time.Now().Add(3 * time.Second).UTC().Format(time.RFC3339Nano)
	d.MustSucceed("POST", "/1.0/instances/C01/backups", map[string]any{"name": "b0", "expires_at": expires})
	d.MustSucceed("POST", "/1.0/instances/C01/backups", map[string]any{"name": "keep"})
	list := func() string {
		_, env := d.API("GET", "/1.0/instances/C01/backups", nil)
		return string(env.Metadata)
	}
	if l := list(); !strings.Contains(l, "/backups/b0") || !strings.Contains(l, "/backups/keep") {
		t.Fatalf("backups: %s", l)
	}
	if status, env := d.API("POST", "/1.0/instances/C01/backups", map[string]any{"name": "keep"}); status != http.StatusConflict {
		t.Errorf("a duplicate backup name: %d %s", status, env.Error)
	}
	if status, env := d.API("POST", "/1.0/instances/C01/backups", map[string]any{"optimized_storage": true}); status != http.StatusBadRequest {
		t.Errorf("optimized storage: %d %s", status, env.Error)
	}
	waitUntil(t, 30*time.Second, "b0 to expire", func() bool { return !strings.Contains(list(), "/backups/b0") })
	if l := list(); !strings.Contains(l, "/backups/keep") {
		t.Errorf("the backup without expiry went too: %s", l)
	}
	d.MustC("delete", "C01")
	if _, err := os.Stat(filepath.Join(d.Dir, "backups", "C01")); err == nil {
		t.Errorf("the backups of a deleted instance stayed")
	}
}
