package tests

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"cell/client/simplestreams"
	"cell/images"
	"cell/tests/harness"
)

// ssTree is a simplestreams tree on disk in the Linux Containers layout,
// and the version of the busybox product last published into it.
type ssTree struct {
	Dir         string
	Fingerprint string
	RootfsPath  string // relative to Dir
}

// writeSimplestreamsTree publishes a test image into a new tree, the way
// `c image export-simplestreams` does (the same simplestreams.WriteTree
// and images.SplitUnified). extra, when not empty, is added to the image
// as a file, which gives it another fingerprint.
func writeSimplestreamsTree(t *testing.T, unified, release, extra string) ssTree {
	t.Helper()
	return publishVersion(t, t.TempDir(), unified, release, extra)
}

// publishVersion adds a version of the busybox/RELEASE product to the tree
// in dir: a newer one when the product is already there.
func publishVersion(t *testing.T, dir, unified, release, extra string) ssTree {
	t.Helper()
	work := t.TempDir()
	src, err := os.Open(variantImage(t, unified, extra, work))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	meta, rootfs := filepath.Join(work, "meta"), filepath.Join(work, "rootfs")
	mf, err := os.Create(meta)
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	rf, err := os.Create(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if err := images.SplitUnified(context.Background(), src, mf, rf); err != nil {
		t.Fatal(err)
	}
	fps, err := simplestreams.WriteTree(dir, []simplestreams.TreeImage{{
		MetaFile: meta, RootfsFile: rootfs, OS: "Busybox", Release: release, Variant: "default",
		Architecture: runtime.GOARCH, CreatedAt: time.Now(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	// The version just written is the one whose files hash to fps[0].
	matches, _ := filepath.Glob(filepath.Join(dir, "images", "busybox", release, "*", "default", "*", "root.tar.xz"))
	for _, m := range matches {
		if sha256Files(t, filepath.Join(filepath.Dir(m), "lxd.tar.xz"), m) == fps[0] {
			rel, _ := filepath.Rel(dir, m)
			return ssTree{Dir: dir, Fingerprint: fps[0], RootfsPath: filepath.ToSlash(rel)}
		}
	}
	t.Fatalf("version %s not found in the tree", fps[0])
	return ssTree{}
}

// variantImage returns the unified image, or with extra a copy of it (an
// uncompressed tarball in work) holding one more file.
func variantImage(t *testing.T, unified, extra, work string) string {
	t.Helper()
	if extra == "" {
		return unified
	}
	out := filepath.Join(work, "variant.tar")
	script := `mkdir -p "$2/x" && tar -xJf "$1" -C "$2/x" --numeric-owner && printf %s "$3" > "$2/x/extra" &&
		tar -cf "$4" --numeric-owner -C "$2/x" . && rm -rf "$2/x"`
	if b, err := exec.Command("sh", "-c", script, "sh", unified, work, extra, out).CombinedOutput(); err != nil {
		t.Fatalf("make a variant of %s: %v\n%s", unified, err, b)
	}
	return out
}

// ssServer serves a tree on loopback and counts the requests per path.
type ssServer struct {
	URL string
	mu  sync.Mutex
	hit map[string]int
}

func serveTree(t *testing.T, dir string) *ssServer {
	t.Helper()
	s, srv := newTreeServer(dir)
	srv.Start()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func newTreeServer(dir string) (*ssServer, *httptest.Server) {
	s := &ssServer{hit: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hit[r.URL.Path]++
		s.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	return s, srv
}

// serveTreeTLS serves a tree over HTTPS on loopback, and trusts the
// server's certificate through SSL_CERT_FILE in this process and in the
// processes it starts from now on (celld, c, lxc).
func serveTreeTLS(t *testing.T, dir string) *ssServer {
	t.Helper()
	s, srv := newTreeServer(dir)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // clients that probe and hang up
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	certFile := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(certFile, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", certFile)
	return s
}

func (s *ssServer) hits(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hit["/"+p]
}

// assertNoPartialDownload fails when anything of a failed download is
// left in the image store: the image's files, or a temporary file (hidden,
// images.Store.TempFile).
func assertNoPartialDownload(t *testing.T, d *harness.Daemon, fp string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(d.Dir, "images"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fp[:12]) || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind after a failed download: images/%s", e.Name())
		}
	}
}

// localImages returns the daemon's images as `c image list` prints them.
func localImages(t *testing.T, d *harness.Daemon) []map[string]any {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal([]byte(d.MustC("image", "list", "--format", "json")), &list); err != nil {
		t.Fatal(err)
	}
	return list
}

func TestRemoteImages(t *testing.T) {
	unified := harness.BusyboxImage(t)
	tree := writeSimplestreamsTree(t, unified, "1.35", "")
	// The main server is HTTPS (as real ones are), the others plain HTTP.
	srv := serveTreeTLS(t, tree.Dir)
	d := harness.StartDaemon(t)

	d.MustC("remote", "add", "test", srv.URL, "--protocol", "simplestreams")
	if out := d.MustC("remote", "list", "--format", "csv"); !strings.Contains(out, "test,"+srv.URL+",simplestreams") {
		t.Fatalf("remote list lacks the new remote:\n%s", out)
	}
	if out := d.MustC("image", "list", "test:", "--format", "csv", "-c", "Lf"); !strings.Contains(out, "busybox/1.35") || !strings.Contains(out, tree.Fingerprint[:12]) {
		t.Fatalf("image list test: = %q, want the busybox image %s", out, tree.Fingerprint[:12])
	}

	d.MustC("launch", "test:busybox/1.35", "C01")
	if out := d.MustC("list", "--format", "csv", "-c", "ns"); !strings.Contains(out, "C01,RUNNING") {
		t.Fatalf("list = %q, want C01 running", out)
	}
	imgs := localImages(t, d)
	if len(imgs) != 1 || imgs[0]["fingerprint"] != tree.Fingerprint || imgs[0]["cached"] != true {
		t.Fatalf("local images after launch = %v, want one cached %s", imgs, tree.Fingerprint)
	}
	us, _ := imgs[0]["update_source"].(map[string]any)
	if us["server"] != srv.URL || us["protocol"] != "simplestreams" || us["alias"] != "busybox/1.35" {
		t.Fatalf("update_source = %v, want the server, simplestreams and the alias", imgs[0]["update_source"])
	}
	if n := srv.hits(tree.RootfsPath); n != 1 {
		t.Fatalf("rootfs downloaded %d times, want 1", n)
	}

	t.Run("second launch uses the cache", func(t *testing.T) {
		d := d.For(t)
		d.MustC("init", "test:busybox/1.35", "C02")
		if n := srv.hits(tree.RootfsPath); n != 1 {
			t.Fatalf("rootfs downloaded %d times, want 1", n)
		}
		d.MustC("delete", "C02")
	})

	t.Run("image copy", func(t *testing.T) {
		d := d.For(t)
		d.MustC("image", "copy", "test:busybox/1.35", "local:", "--alias", "bb")
		out := d.MustC("image", "alias", "list", "--format", "csv")
		if !strings.Contains(out, "bb,"+tree.Fingerprint[:12]) {
			t.Fatalf("alias list = %q, want bb -> %s", out, tree.Fingerprint[:12])
		}
		if n := srv.hits(tree.RootfsPath); n != 1 {
			t.Fatalf("rootfs downloaded %d times, want 1", n)
		}
	})

	t.Run("image copy downloads and aliases", func(t *testing.T) {
		d := d.For(t)
		other := writeSimplestreamsTree(t, unified, "1.36", "copy")
		osrv := serveTree(t, other.Dir)
		d.MustC("remote", "add", "other", osrv.URL, "--protocol", "simplestreams")
		d.MustC("image", "copy", "other:busybox/1.36", "local:", "--alias", "bb136", "--auto-update")
		var found map[string]any
		for _, img := range localImages(t, d) {
			if img["fingerprint"] == other.Fingerprint {
				found = img
			}
		}
		if found == nil || found["auto_update"] != true || found["cached"] != false {
			t.Fatalf("copied image = %v, want auto_update and not cached", found)
		}
		if out := d.MustC("image", "alias", "list", "--format", "csv"); !strings.Contains(out, "bb136,"+other.Fingerprint[:12]) {
			t.Fatalf("alias list = %q", out)
		}
		d.MustC("launch", "bb136", "C05")
		d.MustC("delete", "--force", "C05")
	})

	t.Run("concurrent launches download once", func(t *testing.T) {
		d := d.For(t)
		conc := writeSimplestreamsTree(t, unified, "1.37", "concurrent")
		csrv := serveTree(t, conc.Dir)
		d.MustC("remote", "add", "conc", csrv.URL, "--protocol", "simplestreams")
		var wg sync.WaitGroup
		errs := make([]string, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, errOut, code := d.C("init", "conc:busybox/1.37", fmt.Sprintf("P%d", i))
				if code != 0 {
					errs[i] = out + errOut
				}
			}()
		}
		wg.Wait()
		for _, e := range errs {
			if e != "" {
				t.Fatalf("concurrent init failed: %s", e)
			}
		}
		if n := csrv.hits(conc.RootfsPath); n != 1 {
			t.Fatalf("rootfs downloaded %d times by two concurrent launches, want 1", n)
		}
		d.MustC("delete", "P0", "P1")
	})

	t.Run("lxc client", func(t *testing.T) {
		needLXCClient(t)
		d := d.For(t)
		mustLXC(t, d, "remote", "add", "sstest", srv.URL, "--protocol", "simplestreams", "--public")
		mustLXC(t, d, "init", "sstest:busybox/1.35", "L01")
		if out := d.MustC("list", "--format", "csv", "-c", "n"); !strings.Contains(out, "L01") {
			t.Fatalf("lxc init from an image server made no instance: %q", out)
		}
		if n := srv.hits(tree.RootfsPath); n != 1 {
			t.Fatalf("rootfs downloaded %d times, want 1 (the image is cached)", n)
		}
		mustLXC(t, d, "image", "copy", "sstest:busybox/1.35", "local:", "--alias", "lxcbb")
		if out := d.MustC("image", "alias", "list", "--format", "csv"); !strings.Contains(out, "lxcbb,"+tree.Fingerprint[:12]) {
			t.Fatalf("alias list after lxc image copy = %q", out)
		}
		d.MustC("delete", "L01")
	})

	t.Run("unknown alias", func(t *testing.T) {
		d := d.For(t)
		_, errOut, code := d.C("launch", "test:nope/1", "C03")
		t.Logf("unknown alias: %s", errOut)
		if code == 0 || !strings.Contains(errOut, `"nope/1"`) || !strings.Contains(errOut, srv.URL) {
			t.Fatalf("launch of an unknown alias: exit %d, %q; want an error naming the alias and the server", code, errOut)
		}
		if out := d.MustC("list", "--format", "csv", "-c", "n"); strings.Contains(out, "C03") {
			t.Fatalf("C03 exists after a failed launch: %q", out)
		}
	})

	t.Run("corrupted rootfs", func(t *testing.T) {
		d := d.For(t)
		bad := writeSimplestreamsTree(t, unified, "1.38", "corrupt")
		p := filepath.Join(bad.Dir, filepath.FromSlash(bad.RootfsPath))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		bsrv := serveTree(t, bad.Dir)
		d.MustC("remote", "add", "bad", bsrv.URL, "--protocol", "simplestreams")
		_, errOut, code := d.C("launch", "bad:busybox/1.38", "C04")
		t.Logf("corrupted rootfs: %s", errOut)
		if code == 0 || !strings.Contains(errOut, "sha256") {
			t.Fatalf("launch of a corrupted image: exit %d, %q; want a hash error", code, errOut)
		}
		if out := d.MustC("list", "--format", "csv", "-c", "n"); strings.Contains(out, "C04") {
			t.Fatalf("C04 exists after a failed launch: %q", out)
		}
		for _, img := range localImages(t, d) {
			if img["fingerprint"] == bad.Fingerprint {
				t.Fatalf("the corrupted image is in the image list")
			}
		}
		assertNoPartialDownload(t, d, bad.Fingerprint)
	})

	t.Run("broken servers", func(t *testing.T) {
		d := d.For(t)
		cut := writeSimplestreamsTree(t, unified, "1.39", "cut")
		files := http.FileServer(http.Dir(cut.Dir))
		broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/malformed/"):
				_, _ = io.WriteString(w, `{"format": "index:1.0", "index": `)
			case r.URL.Path == "/"+cut.RootfsPath:
				// Announce the whole file, send half of it, hang up.
				data, err := os.ReadFile(filepath.Join(cut.Dir, filepath.FromSlash(cut.RootfsPath)))
				if err != nil {
					http.Error(w, err.Error(), 500)
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(data)))
				_, _ = w.Write(data[:len(data)/2])
				if hj, ok := w.(http.Hijacker); ok {
					if conn, _, err := hj.Hijack(); err == nil {
						conn.Close()
					}
				}
			default:
				files.ServeHTTP(w, r)
			}
		}))
		defer broken.Close()
		broken.Config.ErrorLog = log.New(io.Discard, "", 0)
		d.MustC("remote", "add", "cut", broken.URL, "--protocol", "simplestreams")
		d.MustC("remote", "add", "malformed", broken.URL+"/malformed", "--protocol", "simplestreams")

		_, errOut, code := d.C("image", "copy", "cut:busybox/1.39", "local:", "--alias", "cutbb")
		t.Logf("cut transfer: %s", errOut)
		if code == 0 || !strings.Contains(errOut, "closed the connection") {
			t.Errorf("copy from a server that hangs up: exit %d, %q", code, errOut)
		}
		_, errOut, code = d.C("launch", "malformed:busybox/1.39", "C06")
		t.Logf("malformed index: %s", errOut)
		if code == 0 || !strings.Contains(errOut, "index") {
			t.Errorf("launch from a malformed index: exit %d, %q", code, errOut)
		}
		for _, img := range localImages(t, d) {
			if img["fingerprint"] == cut.Fingerprint {
				t.Fatalf("a half-downloaded image is in the image list")
			}
		}
		if out := d.MustC("list", "--format", "csv", "-c", "n"); strings.Contains(out, "C06") {
			t.Fatalf("C06 exists after a failed launch: %q", out)
		}
		if out := d.MustC("image", "alias", "list", "--format", "csv"); strings.Contains(out, "cutbb") {
			t.Fatalf("alias of a failed copy exists: %q", out)
		}
		assertNoPartialDownload(t, d, cut.Fingerprint)
	})

	t.Run("remote management", func(t *testing.T) {
		d := d.For(t)
		if out := d.MustC("remote", "get-default"); strings.TrimSpace(out) != "local" {
			t.Fatalf("get-default = %q", out)
		}
		out := d.MustC("remote", "list")
		for _, want := range []string{"NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC", "STATIC", "GLOBAL", "images", "ubuntu", "ubuntu-daily", "local (current)"} {
			if !strings.Contains(out, want) {
				t.Errorf("remote list lacks %q:\n%s", want, out)
			}
		}
		// lxd-protocol HTTPS remotes belong to the TLS work (tests there):
		// adding one now contacts the server, which a test here must not.
		if _, errOut, code := d.C("remote", "add", "test", srv.URL, "--protocol", "simplestreams"); code == 0 || !strings.Contains(errOut, "exists") {
			t.Errorf("adding a remote twice: exit %d, %q", code, errOut)
		}
		d.MustC("remote", "rename", "test", "test2")
		out = d.MustC("remote", "list", "--format", "csv")
		if strings.Contains(out, "test,") || !strings.Contains(out, "test2,"+srv.URL) {
			t.Fatalf("after rename:\n%s", out)
		}
		d.MustC("remote", "set-url", "test2", srv.URL+"/")
		if _, _, code := d.C("remote", "switch", "test2"); code == 0 {
			t.Errorf("an image server became the default remote")
		}
		d.MustC("remote", "add", "sock", "unix://"+d.Socket())
		d.MustC("remote", "switch", "sock")
		if out := d.MustC("remote", "get-default"); strings.TrimSpace(out) != "sock" {
			t.Fatalf("get-default after switch = %q", out)
		}
		if out := d.MustC("list", "--format", "csv", "-c", "n"); !strings.Contains(out, "C01") {
			t.Fatalf("list through the sock remote = %q", out)
		}
		if _, errOut, code := d.C("remote", "remove", "sock"); code == 0 || !strings.Contains(errOut, "default") {
			t.Errorf("removing the default remote: exit %d, %q", code, errOut)
		}
		d.MustC("remote", "switch", "local")
		d.MustC("remote", "remove", "sock")
		if _, errOut, code := d.C("remote", "remove", "ubuntu"); code == 0 || !strings.Contains(errOut, "static") {
			t.Errorf("removing a static remote: exit %d, %q", code, errOut)
		}
		d.MustC("remote", "remove", "test2")
		out = d.MustC("remote", "list", "--format", "csv")
		if strings.Contains(out, "test2") || strings.Contains(out, "sock") {
			t.Fatalf("after remove:\n%s", out)
		}
		data, err := os.ReadFile(filepath.Join(d.Conf, "config.yml"))
		if err != nil || !strings.Contains(string(data), "default-remote: local") {
			t.Fatalf("config.yml: %v\n%s", err, data)
		}
		// Nothing else was left in the config directory.
		entries, _ := os.ReadDir(d.Conf)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".config.yml-") {
				t.Errorf("temporary file left in the config directory: %s", e.Name())
			}
		}
	})
}

// A daemon that dies in the middle of a download leaves its temporary
// files; the next start removes them, and no image half exists.
func TestImageDownloadCrash(t *testing.T) {
	tree := writeSimplestreamsTree(t, harness.BusyboxImage(t), "1.35", "")
	release := make(chan struct{})
	files := http.FileServer(http.Dir(tree.Dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/"+tree.RootfsPath {
			files.ServeHTTP(w, r)
			return
		}
		// Half the rootfs, then nothing until the test ends.
		data, err := os.ReadFile(filepath.Join(tree.Dir, filepath.FromSlash(tree.RootfsPath)))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	d := harness.StartDaemon(t)

	status, resp := d.API("POST", "/1.0/images", map[string]any{"source": map[string]any{
		"type": "image", "mode": "pull", "server": srv.URL, "protocol": "simplestreams", "alias": "busybox/1.35"}})
	if status != 202 {
		t.Fatalf("image copy: %d %s", status, resp.Error)
	}
	partial := func() []string {
		found, _ := filepath.Glob(filepath.Join(d.Dir, "images", ".*"))
		return found
	}
	eventually(t, "the download under way in the store's temporary files", func() bool { return len(partial()) > 0 })

	d.Kill()
	d.Start()
	if left := partial(); len(left) > 0 {
		t.Fatalf("temporary files of the interrupted download left after a restart: %v", left)
	}
	if hasImage(t, d, tree.Fingerprint) {
		t.Fatal("the interrupted download is listed as an image")
	}
	assertNoPartialDownload(t, d, tree.Fingerprint)
}
