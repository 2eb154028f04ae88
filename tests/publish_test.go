package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cell/tests/harness"
)

// sha256Files is the sha256 of the files' contents one after the other:
// an image's fingerprint when they are its files, metadata first.
func sha256Files(t *testing.T, paths ...string) string {
	t.Helper()
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func execOut(t *testing.T, d *harness.Daemon, name, script string) string {
	t.Helper()
	return strings.TrimSpace(d.MustC("exec", name, "--", "sh", "-c", script))
}

func TestPublish(t *testing.T) {
	// The static image server of a subtest: its certificate must be
	// trusted by celld from its start.
	tree := t.TempDir()
	srv := serveTreeTLS(t, tree)
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "P1", nil)
	// What the image must carry, and what must not trick the daemon into
	// reading host files: a symlink out of the container, a symlink to a
	// host path, a fifo (which would block a reader; unpack skips fifos).
	execOut(t, d, "P1", `echo hello > /root/marker && chown 33:34 /root/marker && chmod 640 /root/marker &&
		ln -s ../../../../../../etc/shadow /root/up && ln -s /etc/shadow /root/abs && mkfifo /root/fifo`)

	before := len(localImages(t, d))
	_, errOut, code := d.C("publish", "P1", "--alias", "refused")
	if code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("publish of a running instance without --force: exit %d, %q; want a refusal naming --force", code, errOut)
	}
	if n := len(localImages(t, d)); n != before {
		t.Fatalf("%d images after a refused publish, want %d", n, before)
	}
	// The API refuses too, whatever the client.
	status, resp := d.API("POST", "/1.0/images", map[string]any{"source": map[string]any{"type": "instance", "name": "P1"}})
	if status != 400 || !strings.Contains(resp.Error, "running") {
		t.Fatalf("POST /1.0/images from a running instance: %d %q", status, resp.Error)
	}

	out := d.MustC("publish", "P1", "--alias", "pub1", "--force", "--compression", "xz", "description=published busybox")
	if !strings.Contains(out, "Instance published with fingerprint") {
		t.Fatalf("publish output = %q", out)
	}
	if st := d.LXCState("P1"); st != "RUNNING" {
		t.Fatalf("P1 is %s after publish --force, want it started again", st)
	}
	var pub map[string]any
	for _, img := range localImages(t, d) {
		if img["fingerprint"] == aliasTarget(t, d, "pub1") {
			pub = img
		}
	}
	props, _ := pub["properties"].(map[string]any)
	if pub == nil || props["description"] != "published busybox" || pub["cached"] != false {
		t.Fatalf("published image = %v", pub)
	}

	d.Launch("pub1", "P2", nil)
	if got := execOut(t, d, "P2", "cat /root/marker; stat -c %u:%g:%a /root/marker; readlink /root/up; readlink /root/abs"); got !=
		"hello\n33:34:640\n../../../../../../etc/shadow\n/etc/shadow" {
		t.Fatalf("launched from the published image: %q", got)
	}

	t.Run("from a snapshot", func(t *testing.T) {
		d := d.For(t)
		execOut(t, d, "P1", "echo in-snapshot > /root/marker")
		d.MustC("snapshot", "P1", "s0")
		execOut(t, d, "P1", "echo after-snapshot > /root/marker")
		d.MustC("publish", "P1/s0", "--alias", "pub2")
		d.Launch("pub2", "P3", nil)
		if got := execOut(t, d, "P3", "cat /root/marker"); got != "in-snapshot" {
			t.Fatalf("launched from the published snapshot: marker = %q", got)
		}
		d.MustC("delete", "--force", "P3")
	})

	t.Run("bad requests", func(t *testing.T) {
		d := d.For(t)
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"publish", "nope"}, "not found"},
			{[]string{"publish", "P1/nope"}, "not found"},
			{[]string{"publish", "P1/s0", "--alias", "pub1"}, "already exists"},
			{[]string{"publish", "P1/s0", "--compression", "lz4"}, "gzip"},
		} {
			_, errOut, code := d.C(c.args...)
			if code == 0 || !strings.Contains(errOut, c.want) {
				t.Errorf("%v: exit %d, %q; want an error with %q", c.args, code, errOut, c.want)
			}
		}
		if n := len(localImages(t, d)); n != before+2 {
			t.Fatalf("%d images after refused publishes, want %d", n, before+2)
		}
	})

	t.Run("export", func(t *testing.T) {
		d := d.For(t)
		fp := aliasTarget(t, d, "pub1")
		dir := t.TempDir()
		d.MustC("image", "export", "pub1", dir)
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) != 1 || sha256Files(t, files...) != fp {
			t.Fatalf("exported %v, want one file hashing to %s", files, fp)
		}
	})

	t.Run("static image server", func(t *testing.T) {
		d := d.For(t)
		out := d.MustC("image", "export-simplestreams", tree, "pub1")
		t.Logf("export-simplestreams: %s", out)
		d.MustC("remote", "add", "mine", srv.URL, "--protocol", "simplestreams")
		if out := d.MustC("image", "list", "mine:", "--format", "csv", "-c", "L"); !strings.Contains(out, "pub1") {
			t.Fatalf("image list mine: = %q, want the published image under its alias", out)
		}
		// The image server describes its images itself (os release arch
		// (variant) (serial)), as linuxcontainers.org does.
		if out := d.MustC("image", "info", "mine:pub1"); !strings.Contains(out, "os: busybox") || !strings.Contains(out, "- pub1") {
			t.Fatalf("image info mine:pub1 = %q", out)
		}
		d.MustC("launch", "mine:pub1", "S1")
		if got := execOut(t, d, "S1", "cat /root/marker"); got != "hello" {
			t.Fatalf("launched from the static server: marker = %q", got)
		}
		d.MustC("delete", "--force", "S1")

		// LXD's own client reads the tree with LXD's simplestreams code.
		needLXCClient(t)
		mustLXC(t, d, "remote", "add", "lxcmine", srv.URL, "--protocol", "simplestreams", "--public")
		if out := mustLXC(t, d, "image", "info", "lxcmine:pub1"); !strings.Contains(out, "Fingerprint") {
			t.Fatalf("lxc image info lxcmine:pub1 = %q", out)
		}
		mustLXC(t, d, "launch", "lxcmine:pub1", "S2")
		if got := execOut(t, d, "S2", "cat /root/marker"); got != "hello" {
			t.Fatalf("lxc launch from the static server: marker = %q", got)
		}
		d.MustC("delete", "--force", "S2")
	})

	t.Run("lxc publish", func(t *testing.T) {
		needLXCClient(t)
		d := d.For(t)
		if _, errOut, code := lxcClient(t, d, "", "publish", "P1", "--alias", "lxcrefused"); code == 0 {
			t.Fatalf("lxc publish of a running instance succeeded: %s", errOut)
		}
		mustLXC(t, d, "publish", "P1", "--alias", "lxcpub", "--force", "--compression", "zstd")
		if st := d.LXCState("P1"); st != "RUNNING" {
			t.Fatalf("P1 is %s after lxc publish --force", st)
		}
		d.Launch("lxcpub", "L1", nil)
		if got := execOut(t, d, "L1", "cat /root/marker"); got != "after-snapshot" {
			t.Fatalf("launched from lxc's published image: marker = %q", got)
		}
		d.MustC("delete", "--force", "L1")
	})

	d.MustC("delete", "--force", "P1", "P2")
}

// A split image (what image servers publish) exports as its two files,
// which hash to its fingerprint.
func TestImageExportSplit(t *testing.T) {
	tree := writeSimplestreamsTree(t, harness.BusyboxImage(t), "1.35", "")
	srv := serveTree(t, tree.Dir)
	d := harness.StartDaemon(t)
	d.MustC("remote", "add", "ss", srv.URL, "--protocol", "simplestreams")
	d.MustC("image", "copy", "ss:busybox/1.35", "local:", "--alias", "split")
	dir := t.TempDir()
	d.MustC("image", "export", "split", filepath.Join(dir, "out"))
	meta, rootfs := filepath.Join(dir, "out"), filepath.Join(dir, "out.root")
	if got := sha256Files(t, meta, rootfs); got != tree.Fingerprint {
		t.Fatalf("exported split image hashes to %s, want %s", got, tree.Fingerprint)
	}
}
