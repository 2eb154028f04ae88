package simplestreams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

// fixture serves two simplestreams trees on loopback, modeled on the real
// ones: the Linux Containers image server under /lxc and Ubuntu's cloud
// images under /ubuntu/releases. The JSON comes from templates in testdata/
// whose {{sha}}, {{size}} and {{combined}} calls name image files; those
// files are generated (a few KB each) and served too.
type fixture struct {
	srv   *httptest.Server
	files map[string][]byte // URL path -> bytes

	mu       sync.Mutex
	hits     map[string]int
	corrupt  map[string]bool // serve with one byte changed
	truncate map[string]bool // announce the full length, send half, close
}

// fileContent is the generated content of an image file.
func fileContent(p string) []byte {
	return bytes.Repeat([]byte(p+"\n"), 40)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := renderFixture(t)
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// renderFixture renders the trees without serving them.
func renderFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		files:    map[string][]byte{},
		hits:     map[string]int{},
		corrupt:  map[string]bool{},
		truncate: map[string]bool{},
	}
	f.render(t, "/lxc", "lxc-index.json", "streams/v1/index.json")
	f.render(t, "/lxc", "lxc-images.json", "streams/v1/images.json")
	f.render(t, "/ubuntu/releases", "ubuntu-index.json", "streams/v1/index.json")
	f.render(t, "/ubuntu/releases", "ubuntu-released-download.json", "streams/v1/com.ubuntu.cloud:released:download.json")
	return f
}

// render executes a testdata template and serves the result at prefix/at.
func (f *fixture) render(t testing.TB, prefix, name, at string) {
	t.Helper()
	file := func(p string) []byte {
		b := fileContent(p)
		f.files[prefix+"/"+p] = b
		return b
	}
	funcs := template.FuncMap{
		"sha":  func(p string) string { return sha(file(p)) },
		"size": func(p string) string { return strconv.Itoa(len(file(p))) },
		"combined": func(meta, rootfs string) string {
			return sha(append(slices.Clone(file(meta)), file(rootfs)...))
		},
	}
	src, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New(name).Funcs(funcs).Parse(string(src))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, nil); err != nil {
		t.Fatal(err)
	}
	f.files[prefix+"/"+at] = out.Bytes()
}

func (f *fixture) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	corrupt, truncate := f.corrupt[r.URL.Path], f.truncate[r.URL.Path]
	f.mu.Unlock()
	b, ok := f.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if corrupt {
		b = slices.Clone(b)
		b[len(b)/2] ^= 0xff
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if truncate {
		_, _ = w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(b)
}

func (f *fixture) hitCount(p string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[p]
}

func (f *fixture) client(t testing.TB, prefix string) *Client {
	t.Helper()
	c, err := New(f.srv.URL+prefix+"/", f.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// find returns the image of a product version.
func find(t *testing.T, imgs []Image, product, serial string) Image {
	t.Helper()
	for _, img := range imgs {
		if img.Product == product && img.Properties["serial"] == serial {
			return img
		}
	}
	t.Fatalf("no image %s %s in %d images", product, serial, len(imgs))
	return Image{}
}

func wantAliases(t *testing.T, img Image, want ...string) {
	t.Helper()
	for _, a := range want {
		if !slices.Contains(img.Aliases, a) {
			t.Errorf("%s %s: alias %q missing from %q", img.Product, img.Properties["serial"], a, img.Aliases)
		}
	}
}

func noAliases(t *testing.T, img Image, unwanted ...string) {
	t.Helper()
	for _, a := range unwanted {
		if slices.Contains(img.Aliases, a) {
			t.Errorf("%s %s: unexpected alias %q in %q", img.Product, img.Properties["serial"], a, img.Aliases)
		}
	}
}

func TestLinuxContainersLayout(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	imgs, err := c.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// alpine 1, debian cloud 1, debian amd64 2, debian arm64 1; the
	// VM-only ubuntu desktop product has no container image.
	if len(imgs) != 5 {
		for _, img := range imgs {
			t.Log(img.Product, img.Properties["serial"])
		}
		t.Fatalf("got %d images, want 5", len(imgs))
	}
	for _, img := range imgs {
		if img.Product == "ubuntu:noble:amd64:desktop" {
			t.Errorf("VM-only product listed: %+v", img)
		}
	}

	const dir = "images/debian/bookworm/amd64/default/20241123_05:24/"
	img := find(t, imgs, "debian:bookworm:amd64:default", "20241123_05:24")
	meta, root := fileContent(dir+"lxd.tar.xz"), fileContent(dir+"root.squashfs")
	if want := sha(append(slices.Clone(meta), root...)); img.Fingerprint != want {
		t.Errorf("fingerprint %s, want the combined squashfs sha256 %s", img.Fingerprint, want)
	}
	if img.Meta != (File{Path: dir + "lxd.tar.xz", SHA256: sha(meta), Size: int64(len(meta)), Type: "lxd.tar.xz"}) {
		t.Errorf("meta %+v", img.Meta)
	}
	if img.Rootfs != (File{Path: dir + "root.squashfs", SHA256: sha(root), Size: int64(len(root)), Type: "squashfs"}) {
		t.Errorf("rootfs %+v", img.Rootfs)
	}
	if img.Size != int64(len(meta)+len(root)) {
		t.Errorf("size %d", img.Size)
	}
	if img.Architecture != "x86_64" {
		t.Errorf("architecture %q, want x86_64", img.Architecture)
	}
	if want := time.Date(2024, 11, 23, 5, 24, 0, 0, time.UTC); !img.CreatedAt.Equal(want) {
		t.Errorf("created %v, want %v", img.CreatedAt, want)
	}
	for k, v := range map[string]string{
		"os": "Debian", "release": "bookworm", "variant": "default", "architecture": "x86_64",
		"serial": "20241123_05:24", "description": "Debian bookworm amd64 (20241123_05:24)",
	} {
		if img.Properties[k] != v {
			t.Errorf("property %s = %q, want %q", k, img.Properties[k], v)
		}
	}
	wantAliases(t, img, "debian/12", "debian/bookworm", "debian/12/default", "debian/bookworm/default",
		"debian/12/amd64", "debian/bookworm/amd64", "debian/bookworm/default/amd64", "debian/12/default/amd64")
	noAliases(t, img, "debian/12/cloud")

	// Older versions are listed, reachable by fingerprint only.
	old := find(t, imgs, "debian:bookworm:amd64:default", "20241122_05:24")
	if len(old.Aliases) != 0 {
		t.Errorf("old version has aliases %q", old.Aliases)
	}
	if old.Fingerprint == img.Fingerprint {
		t.Error("two versions share a fingerprint")
	}

	// A variant other than default: no implied short form.
	cloud := find(t, imgs, "debian:bookworm:amd64:cloud", "20241123_05:24")
	wantAliases(t, cloud, "debian/12/cloud", "debian/bookworm/cloud", "debian/12/cloud/amd64")
	noAliases(t, cloud, "debian/12", "debian/bookworm", "debian/12/amd64")
	if cloud.Properties["description"] != "Debian bookworm amd64 (cloud) (20241123_05:24)" {
		t.Errorf("description %q", cloud.Properties["description"])
	}

	// Only root.tar.xz: the rootxz combined hash is the fingerprint, and
	// the default variant is implied on a server alias without it.
	const adir = "images/alpine/3.20/amd64/default/20241123_13:00/"
	alpine := find(t, imgs, "alpine:3.20:amd64:default", "20241123_13:00")
	if want := sha(append(fileContent(adir+"lxd.tar.xz"), fileContent(adir+"root.tar.xz")...)); alpine.Fingerprint != want {
		t.Errorf("alpine fingerprint %s, want %s", alpine.Fingerprint, want)
	}
	if alpine.Rootfs.Type != "root.tar.xz" || alpine.Rootfs.Path != adir+"root.tar.xz" {
		t.Errorf("alpine rootfs %+v", alpine.Rootfs)
	}
	wantAliases(t, alpine, "alpine/3.20", "alpine/3.20/default", "alpine/3.20/amd64", "alpine/3.20/default/amd64")

	arm := find(t, imgs, "debian:bookworm:arm64:default", "20241124_05:24")
	if arm.Architecture != "aarch64" {
		t.Errorf("arm64 product architecture %q, want aarch64", arm.Architecture)
	}
	wantAliases(t, arm, "debian/12", "debian/12/arm64")
	noAliases(t, arm, "debian/12/amd64")
}

func TestUbuntuLayout(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/ubuntu/releases")
	imgs, err := c.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// 18.04 amd64 x2, 18.04 arm64, 22.04 amd64; 10.04 has disk images only.
	if len(imgs) != 4 {
		t.Fatalf("got %d images, want 4", len(imgs))
	}
	if n := f.hitCount("/ubuntu/releases/streams/v1/com.ubuntu.cloud:released:aws.json"); n != 0 {
		t.Errorf("the image-ids stream was fetched %d times", n)
	}

	const base = "server/releases/bionic/release-20230607/ubuntu-18.04-server-cloudimg-amd64"
	img := find(t, imgs, "com.ubuntu.cloud:server:18.04:amd64", "20230607")
	meta, root := fileContent(base+"-lxd.tar.xz"), fileContent(base+".squashfs")
	if want := sha(append(slices.Clone(meta), root...)); img.Fingerprint != want {
		t.Errorf("fingerprint %s, want the combined squashfs sha256 %s", img.Fingerprint, want)
	}
	if img.Meta.Path != base+"-lxd.tar.xz" || img.Rootfs.Path != base+".squashfs" || img.Rootfs.Type != "squashfs" {
		t.Errorf("files %+v %+v", img.Meta, img.Rootfs)
	}
	for k, v := range map[string]string{
		"os": "ubuntu", "release": "bionic", "version": "18.04", "architecture": "x86_64",
		"label": "release", "serial": "20230607", "description": "ubuntu 18.04 LTS amd64 (release) (20230607)",
	} {
		if img.Properties[k] != v {
			t.Errorf("property %s = %q, want %q", k, img.Properties[k], v)
		}
	}
	if _, ok := img.Properties["variant"]; ok {
		t.Error("ubuntu image has a variant property")
	}
	wantAliases(t, img, "18.04", "b", "bionic", "18.04/amd64", "bionic/amd64", "b/amd64")
	noAliases(t, img, "lts", "18.04/default")
	if len(find(t, imgs, "com.ubuntu.cloud:server:18.04:amd64", "20230531").Aliases) != 0 {
		t.Error("old version has aliases")
	}

	jammy := find(t, imgs, "com.ubuntu.cloud:server:22.04:amd64", "20230616.1")
	wantAliases(t, jammy, "22.04", "j", "jammy", "lts", "lts/amd64")
	if want := time.Date(2023, 6, 16, 0, 0, 0, 0, time.UTC); !jammy.CreatedAt.Equal(want) {
		t.Errorf("created %v, want %v", jammy.CreatedAt, want)
	}
	arm := find(t, imgs, "com.ubuntu.cloud:server:18.04:arm64", "20230610")
	if arm.Architecture != "aarch64" {
		t.Errorf("architecture %q", arm.Architecture)
	}
}

func TestResolve(t *testing.T) {
	f := newFixture(t)
	lxc, ubuntu := f.client(t, "/lxc"), f.client(t, "/ubuntu/releases")
	ctx := context.Background()

	lxcImgs, err := lxc.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldDebian := find(t, lxcImgs, "debian:bookworm:amd64:default", "20241122_05:24")

	for _, tc := range []struct {
		c             *Client
		name, arch    string
		product, want string // product and serial of the answer
	}{
		// Newest version wins; the host's architecture beats a newer
		// arm64 build; Debian and kernel architecture names both work.
		{lxc, "debian/12", "x86_64", "debian:bookworm:amd64:default", "20241123_05:24"},
		{lxc, "debian/12", "amd64", "debian:bookworm:amd64:default", "20241123_05:24"},
		{lxc, "debian/bookworm", "x86_64", "debian:bookworm:amd64:default", "20241123_05:24"},
		{lxc, "debian/bookworm/default", "x86_64", "debian:bookworm:amd64:default", "20241123_05:24"},
		{lxc, "debian/12", "aarch64", "debian:bookworm:arm64:default", "20241124_05:24"},
		{lxc, "debian/12", "arm64", "debian:bookworm:arm64:default", "20241124_05:24"},
		{lxc, "debian/12/arm64", "x86_64", "debian:bookworm:arm64:default", "20241124_05:24"},
		{lxc, "debian/12/amd64", "aarch64", "debian:bookworm:amd64:default", "20241123_05:24"},
		{lxc, "debian/12/cloud", "x86_64", "debian:bookworm:amd64:cloud", "20241123_05:24"},
		{lxc, "alpine/3.20", "x86_64", "alpine:3.20:amd64:default", "20241123_13:00"},
		// No build for the host: the newest of the others.
		{lxc, "debian/12", "s390x", "debian:bookworm:arm64:default", "20241124_05:24"},
		// Fingerprints, whole or a prefix, any case.
		{lxc, oldDebian.Fingerprint, "x86_64", "debian:bookworm:amd64:default", "20241122_05:24"},
		{lxc, strings.ToUpper(oldDebian.Fingerprint[:12]), "x86_64", "debian:bookworm:amd64:default", "20241122_05:24"},

		{ubuntu, "18.04", "x86_64", "com.ubuntu.cloud:server:18.04:amd64", "20230607"},
		{ubuntu, "b", "x86_64", "com.ubuntu.cloud:server:18.04:amd64", "20230607"},
		{ubuntu, "bionic", "x86_64", "com.ubuntu.cloud:server:18.04:amd64", "20230607"},
		{ubuntu, "bionic", "arm64", "com.ubuntu.cloud:server:18.04:arm64", "20230610"},
		{ubuntu, "18.04/arm64", "x86_64", "com.ubuntu.cloud:server:18.04:arm64", "20230610"},
		{ubuntu, "lts", "x86_64", "com.ubuntu.cloud:server:22.04:amd64", "20230616.1"},
		{ubuntu, "jammy", "", "com.ubuntu.cloud:server:22.04:amd64", "20230616.1"},
	} {
		img, err := tc.c.Resolve(ctx, tc.name, tc.arch)
		if err != nil {
			t.Errorf("Resolve(%q, %q): %v", tc.name, tc.arch, err)
			continue
		}
		if img.Product != tc.product || img.Properties["serial"] != tc.want {
			t.Errorf("Resolve(%q, %q) = %s %s, want %s %s", tc.name, tc.arch,
				img.Product, img.Properties["serial"], tc.product, tc.want)
		}
	}
}

func TestResolveNotFound(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/ubuntu/releases")
	ctx := context.Background()

	_, err := c.Resolve(ctx, "ubuntu/99.04", "x86_64")
	if err == nil {
		t.Fatal("unknown alias resolved")
	}
	want := fmt.Sprintf("image alias %q not found on %s/ubuntu/releases", "ubuntu/99.04", f.srv.URL)
	if err.Error() != want || !errors.Is(err, ErrNotFound) {
		t.Errorf("error %q, want %q, matching ErrNotFound", err, want)
	}

	_, err = c.Resolve(ctx, "deadbeef", "x86_64")
	if err == nil || !strings.Contains(err.Error(), `image alias or fingerprint "deadbeef" not found on `+f.srv.URL) {
		t.Errorf("unknown fingerprint: %v", err)
	}
	if _, err := c.Resolve(ctx, "", "x86_64"); err == nil {
		t.Error("empty name resolved")
	}
}

// download runs Download into buffers and returns them with the progress
// reports.
func download(c *Client, img Image) (meta, rootfs []byte, reports [][2]int64, err error) {
	var m, r bytes.Buffer
	err = c.Download(context.Background(), img, &m, &r, func(done, total int64) {
		reports = append(reports, [2]int64{done, total})
	})
	return m.Bytes(), r.Bytes(), reports, err
}

func TestDownload(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ prefix, alias string }{
		{"/lxc", "debian/12"},
		{"/lxc", "alpine/3.20"}, // root.tar.xz
		{"/ubuntu/releases", "18.04"},
	} {
		c := f.client(t, tc.prefix)
		img, err := c.Resolve(context.Background(), tc.alias, "x86_64")
		if err != nil {
			t.Fatal(err)
		}
		meta, rootfs, reports, err := download(c, img)
		if err != nil {
			t.Fatalf("download %s: %v", tc.alias, err)
		}
		if !bytes.Equal(meta, fileContent(img.Meta.Path)) || !bytes.Equal(rootfs, fileContent(img.Rootfs.Path)) {
			t.Errorf("%s: downloaded bytes differ from the served files", tc.alias)
		}
		if sha(append(meta, rootfs...)) != img.Fingerprint {
			t.Errorf("%s: fingerprint is not the sha256 of meta then rootfs", tc.alias)
		}
		if len(reports) == 0 {
			t.Fatalf("%s: no progress reported", tc.alias)
		}
		for i, r := range reports {
			if r[1] != img.Size || (i > 0 && r[0] < reports[i-1][0]) {
				t.Fatalf("%s: bad progress report %d: %v", tc.alias, i, r)
			}
		}
		if last := reports[len(reports)-1]; last[0] != img.Size {
			t.Errorf("%s: last progress %v, want %d done", tc.alias, last, img.Size)
		}
	}
}

func TestDownloadCorruptFile(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	img, err := c.Resolve(context.Background(), "debian/12", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	f.corrupt["/lxc/"+img.Rootfs.Path] = true
	_, _, _, err = download(c, img)
	if err == nil {
		t.Fatal("a corrupted rootfs downloaded without error")
	}
	for _, want := range []string{"sha256 mismatch", img.Rootfs.Path, img.Rootfs.SHA256} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestDownloadFingerprintMismatch(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/ubuntu/releases")
	img, err := c.Resolve(context.Background(), "bionic", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	// Both files match their own hashes; the pair does not match the
	// fingerprint (as when an index pairs the wrong files).
	img.Fingerprint = strings.Repeat("0", 64)
	_, _, _, err = download(c, img)
	if err == nil || !strings.Contains(err.Error(), "does not match its fingerprint") {
		t.Fatalf("got %v, want a fingerprint mismatch", err)
	}
}

func TestDownloadTruncated(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	img, err := c.Resolve(context.Background(), "debian/12", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	f.truncate["/lxc/"+img.Rootfs.Path] = true
	_, _, _, err = download(c, img)
	want := fmt.Sprintf("closed the connection after %d of %d bytes", img.Rootfs.Size/2, img.Rootfs.Size)
	if err == nil || !strings.Contains(err.Error(), img.Rootfs.Path) || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error naming %s and saying %q", err, img.Rootfs.Path, want)
	}
}

func TestDownloadMissingFile(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	img, err := c.Resolve(context.Background(), "debian/12", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	img.Rootfs.Path += ".gone"
	_, _, _, err = download(c, img)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v, want a 404 error", err)
	}
}

func TestBadServers(t *testing.T) {
	for _, tc := range []struct {
		name, index, products, want string
	}{
		{"malformed index", `{"format": "index:1.0", "index": {`, "", "streams/v1/index.json: not valid JSON"},
		{"no image stream", `{"format": "index:1.0", "index": {"x": {"datatype": "image-ids", "path": "streams/v1/x.json"}}}`, "",
			"lists no image-downloads stream"},
		{"index format", `{"format": "index:9.0", "index": {}}`, "", `unsupported index format "index:9.0"`},
		{"products type", `{"format": "index:1.0", "index": {"i": {"datatype": "image-downloads", "path": "streams/v1/images.json"}}}`,
			`{"format": "products:1.0", "products": {"a": {"versions": 7}}}`, "simplestreams products"},
		{"missing products", `{"format": "index:1.0", "index": {"i": {"datatype": "image-downloads", "path": "streams/v1/gone.json"}}}`,
			"", "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/streams/v1/index.json":
					_, _ = w.Write([]byte(tc.index))
				case "/streams/v1/images.json":
					_, _ = w.Write([]byte(tc.products))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			c, err := New(srv.URL, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Images(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), srv.URL) {
				t.Fatalf("got %v, want an error with %q and the server URL", err, tc.want)
			}
			// Failures are not cached.
			if _, err2 := c.Images(context.Background()); err2 == nil {
				t.Fatal("second call succeeded")
			}
		})
	}
}

func TestCache(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	now := time.Date(2024, 11, 23, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	ctx := context.Background()
	const index = "/lxc/streams/v1/index.json"

	for range 3 {
		if _, err := c.Images(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Resolve(ctx, "debian/12", ""); err != nil {
		t.Fatal(err)
	}
	if n := f.hitCount(index); n != 1 {
		t.Fatalf("index fetched %d times within the TTL, want 1", n)
	}

	now = now.Add(DefaultCacheTTL + time.Second)
	if _, err := c.Images(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.hitCount(index); n != 2 {
		t.Fatalf("index fetched %d times after the TTL, want 2", n)
	}

	// Concurrent callers after a flush share one fetch.
	c.Flush()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.Images(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.hitCount(index); n != 3 {
		t.Fatalf("index fetched %d times in total, want 3", n)
	}

	// Callers get their own copy.
	a, _ := c.Images(ctx)
	a[0].Properties["os"] = "changed"
	a[0].Aliases = append(a[0].Aliases[:0], "changed")
	b, _ := c.Images(ctx)
	if b[0].Properties["os"] == "changed" || slices.Contains(b[0].Aliases, "changed") {
		t.Error("Images returned the shared cache")
	}
}

func TestCanceledContext(t *testing.T) {
	f := newFixture(t)
	c := f.client(t, "/lxc")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Images(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if _, err := c.Images(context.Background()); err != nil {
		t.Fatalf("after a canceled call: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, bad := range []string{"", "images.linuxcontainers.org", "ftp://x/", "https://", "http://[::1"} {
		if _, err := New(bad, nil); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
	c, err := New("https://cloud-images.ubuntu.com/releases/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL() != "https://cloud-images.ubuntu.com/releases" {
		t.Errorf("URL() = %q", c.URL())
	}
	if got := c.fileURL("streams/v1/com.ubuntu.cloud:released:download.json"); got != "https://cloud-images.ubuntu.com/releases/streams/v1/com.ubuntu.cloud:released:download.json" {
		t.Errorf("fileURL = %q", got)
	}
}

func TestKernelArchitecture(t *testing.T) {
	for in, want := range map[string]string{
		"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "armhf": "armv7l",
		"i386": "i686", "ppc64el": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
		"AMD64": "x86_64", "sparc": "sparc",
	} {
		if got := KernelArchitecture(in); got != want {
			t.Errorf("KernelArchitecture(%q) = %q, want %q", in, got, want)
		}
	}
}

// The parsers take whatever a server sends: they must never panic, and
// every image they return must be complete.
func FuzzProducts(f *testing.F) {
	fx := renderFixture(f)
	f.Add(fx.files["/lxc/streams/v1/images.json"])
	f.Add(fx.files["/ubuntu/releases/streams/v1/com.ubuntu.cloud:released:download.json"])
	f.Add([]byte(`{"products": {"a": {"aliases": ",,/,", "variant": "default", "versions": {"x": {"items": {}}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		imgs, err := parseProducts(data)
		if err != nil {
			return
		}
		for _, img := range imgs {
			if img.Fingerprint == "" || img.Meta.Path == "" || img.Rootfs.Path == "" {
				t.Fatalf("incomplete image %+v", img)
			}
			if slices.Contains(img.Aliases, "") {
				t.Fatalf("empty alias in %q", img.Aliases)
			}
		}
	})
}

func FuzzIndex(f *testing.F) {
	fx := renderFixture(f)
	f.Add(fx.files["/lxc/streams/v1/index.json"])
	f.Add(fx.files["/ubuntu/releases/streams/v1/index.json"])
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := productsPaths(data)
		if err == nil && len(paths) == 0 {
			t.Fatal("no error and no paths")
		}
	})
}
