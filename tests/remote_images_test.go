package tests

import (
	"crypto/sha256"
	"encoding/hex"
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

	"cell/tests/harness"
)

// ssTree is a simplestreams tree on disk in the Linux Containers layout,
// holding one split image made from a unified test image.
type ssTree struct {
	Dir         string
	Fingerprint string
	RootfsPath  string // relative to Dir
}

// writeSimplestreamsTree writes streams/v1/index.json, streams/v1/images.json
// and the image's lxd.tar.xz (metadata) and root.tar.xz (rootfs) under a
// new directory. extra, when not empty, is written into the metadata
// tarball as a file, which gives the image another fingerprint.
func writeSimplestreamsTree(t *testing.T, unified, release, extra string) ssTree {
	t.Helper()
	work := t.TempDir()
	unpacked := filepath.Join(work, "unpacked")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	if err := os.MkdirAll(unpacked, 0o755); err != nil {
		t.Fatal(err)
	}
	run("tar", "-xJf", unified, "-C", unpacked, "--numeric-owner")
	if extra != "" {
		if err := os.WriteFile(filepath.Join(unpacked, "extra"), []byte(extra), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	var metaEntries []string
	for _, e := range entries {
		if e.Name() != "rootfs" {
			metaEntries = append(metaEntries, e.Name())
		}
	}

	dir := filepath.Join(work, "tree")
	rel := filepath.Join("images", "busybox", release, "amd64", "default", "20260101_00:00")
	if err := os.MkdirAll(filepath.Join(dir, rel), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "streams", "v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, rel, "lxd.tar.xz")
	rootfs := filepath.Join(dir, rel, "root.tar.xz")
	run("tar", append([]string{"-cJf", meta, "--numeric-owner", "-C", unpacked}, metaEntries...)...)
	run("tar", "-cJf", rootfs, "--numeric-owner", "-C", filepath.Join(unpacked, "rootfs"), ".")

	hashFile := func(p string) (string, int64, []byte) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return hex.EncodeToString(sum[:]), int64(len(data)), data
	}
	metaSum, metaSize, metaData := hashFile(meta)
	rootSum, rootSize, rootData := hashFile(rootfs)
	combined := sha256.New()
	combined.Write(metaData)
	combined.Write(rootData)
	fp := hex.EncodeToString(combined.Sum(nil))

	arch := runtime.GOARCH // Debian names match Go's for amd64 and arm64
	productID := fmt.Sprintf("busybox:%s:%s:default", release, arch)
	relURL := filepath.ToSlash(rel)
	products := map[string]any{
		"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
		"products": map[string]any{
			productID: map[string]any{
				"aliases": fmt.Sprintf("busybox/%s/default,busybox/%s", release, release),
				"arch":    arch, "os": "Busybox", "release": release, "release_title": release, "variant": "default",
				"versions": map[string]any{
					"20260101_00:00": map[string]any{"items": map[string]any{
						"lxd.tar.xz": map[string]any{"ftype": "lxd.tar.xz", "path": relURL + "/lxd.tar.xz",
							"sha256": metaSum, "size": metaSize, "combined_rootxz_sha256": fp, "combined_sha256": fp},
						"root.tar.xz": map[string]any{"ftype": "root.tar.xz", "path": relURL + "/root.tar.xz",
							"sha256": rootSum, "size": rootSize},
					}},
				},
			},
		},
	}
	index := map[string]any{
		"format": "index:1.0",
		"index": map[string]any{
			"images": map[string]any{"datatype": "image-downloads", "format": "products:1.0",
				"path": "streams/v1/images.json", "products": []string{productID}},
		},
	}
	for name, doc := range map[string]any{"index.json": index, "images.json": products} {
		data, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "streams", "v1", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ssTree{Dir: dir, Fingerprint: fp, RootfsPath: relURL + "/root.tar.xz"}
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
		for _, sub := range []string{"images", "images-download"} {
			entries, _ := os.ReadDir(filepath.Join(d.Dir, sub))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), bad.Fingerprint[:12]) || strings.Contains(e.Name(), "tmp") {
					t.Errorf("left behind after a failed download: %s/%s", sub, e.Name())
				}
			}
		}
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
		for _, sub := range []string{"images", "images-download"} {
			entries, _ := os.ReadDir(filepath.Join(d.Dir, sub))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), cut.Fingerprint[:12]) || strings.Contains(e.Name(), "tmp") {
					t.Errorf("left behind after a failed download: %s/%s", sub, e.Name())
				}
			}
		}
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
		if _, errOut, code := d.C("remote", "add", "web", "https://example.invalid:8443"); code == 0 || !strings.Contains(errOut, "simplestreams") {
			t.Errorf("adding an lxd-protocol HTTPS remote: exit %d, %q; want a refusal pointing at simplestreams", code, errOut)
		}
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
