package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddUnifiedEveryCompression(t *testing.T) {
	for _, format := range []string{formatTar, formatGzip, formatXz, formatZstd, formatBzip2} {
		t.Run(format, func(t *testing.T) {
			s := newStore(t)
			data := compress(t, format, unifiedImage(t, file("rootfs/hello", "hi from "+format)))
			info := addUnified(t, s, data)

			if want := sha(data); info.Fingerprint != want {
				t.Fatalf("fingerprint %s, want sha256 of the tarball %s", info.Fingerprint, want)
			}
			if info.Split || info.Size != int64(len(data)) || info.Metadata.Architecture != "x86_64" {
				t.Errorf("Add info = %+v", info)
			}
			again, err := s.Info(context.Background(), info.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if again.Fingerprint != info.Fingerprint || again.Size != info.Size || again.Metadata.Properties["os"] != "busybox" {
				t.Errorf("Info = %+v, Add said %+v", again, info)
			}

			meta, rootfs, err := s.Open(info.Fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			defer meta.Close()
			if rootfs != nil {
				t.Error("unified image opened with a rootfs file")
			}
			if got, _ := io.ReadAll(meta); !bytes.Equal(got, data) {
				t.Error("exported image differs from the upload")
			}

			dest := filepath.Join(t.TempDir(), "vol")
			if err := s.Unpack(context.Background(), info.Fingerprint, dest, idmap0); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if got := readFile(t, filepath.Join(dest, "rootfs/hello")); got != "hi from "+format {
				t.Errorf("unpacked file = %q", got)
			}
		})
	}
}

func TestAddSplit(t *testing.T) {
	s := newStore(t)
	meta := compress(t, formatGzip, tarball(t, file("metadata.yaml", testMetadata), dir("templates/"), file("templates/hostname.tpl", "x")))
	rootfs := compress(t, formatXz, tarball(t, dir("./"), dir("./etc/"), file("./etc/os-release", "ID=test\n")))

	info, err := s.Add(context.Background(), bytes.NewReader(meta), bytes.NewReader(rootfs), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := sha(meta, rootfs); info.Fingerprint != want {
		t.Fatalf("fingerprint %s, want sha256(metadata || rootfs) %s", info.Fingerprint, want)
	}
	if !info.Split || info.RootfsType != "tar" || info.Size != int64(len(meta)+len(rootfs)) {
		t.Errorf("info = %+v", info)
	}

	m, r, err := s.Open(info.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	gotMeta, _ := io.ReadAll(m)
	gotRootfs, _ := io.ReadAll(r)
	m.Close()
	r.Close()
	if !bytes.Equal(gotMeta, meta) || !bytes.Equal(gotRootfs, rootfs) {
		t.Error("exported split image differs from the upload")
	}

	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, idmap0); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dest, "rootfs/etc/os-release")); got != "ID=test\n" {
		t.Errorf("os-release = %q", got)
	}
	if got := readFile(t, filepath.Join(dest, "templates/hostname.tpl")); got != "x" {
		t.Errorf("template = %q", got)
	}
	if _, err := ReadVolumeMetadata(dest); err != nil {
		t.Error(err)
	}
}

func TestAddRefusesFingerprintMismatch(t *testing.T) {
	s := newStore(t)
	data := unifiedImage(t, file("rootfs/a", "a"))
	wrong := sha([]byte("something else"))
	_, err := s.Add(context.Background(), bytes.NewReader(data), nil, wrong)
	if !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("Add with a wrong fingerprint: %v, want ErrFingerprintMismatch", err)
	}
	if files := storeFiles(t, s); len(files) != 0 {
		t.Errorf("store holds %v after a refused upload", files)
	}
	// The right claim, in upper case as some clients send it, is accepted.
	if _, err := s.Add(context.Background(), bytes.NewReader(data), nil, strings.ToUpper(sha(data))); err != nil {
		t.Errorf("Add with the right fingerprint: %v", err)
	}
}

func TestAddRefusesInvalidImages(t *testing.T) {
	cases := map[string]struct{ meta, rootfs []byte }{
		"no metadata.yaml":      {meta: tarball(t, dir("rootfs/"), file("rootfs/a", "a"))},
		"no architecture":       {meta: tarball(t, file("metadata.yaml", "creation_date: 1\n"))},
		"metadata not yaml":     {meta: tarball(t, file("metadata.yaml", "architecture: [x86_64\n"))},
		"not a tarball":         {meta: []byte("this is not an image at all, just some text that is long enough")},
		"truncated xz":          {meta: compress(t, formatXz, unifiedImage(t))[:40]},
		"squashfs as metadata":  {meta: []byte("hsqs and then garbage")},
		"rootfs not a tarball":  {meta: tarball(t, file("metadata.yaml", testMetadata)), rootfs: []byte("garbage garbage garbage garbage")},
		"metadata.yaml symlink": {meta: tarball(t, entry{name: "metadata.yaml", typ: '2', link: "/etc/passwd"})},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			var rootfs io.Reader
			if c.rootfs != nil {
				rootfs = bytes.NewReader(c.rootfs)
			}
			_, err := s.Add(context.Background(), bytes.NewReader(c.meta), rootfs, "")
			if !errors.Is(err, ErrInvalidImage) {
				t.Errorf("Add: %v, want ErrInvalidImage", err)
			}
			if files := storeFiles(t, s); len(files) != 0 {
				t.Errorf("store holds %v after a refused upload", files)
			}
		})
	}
}

// cancelReader cancels its context after the first read, as a client that
// goes away in the middle of an upload.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 100)])
	c.cancel()
	return n, err
}

func TestAddCancelledLeavesNothing(t *testing.T) {
	s := newStore(t)
	meta := tarball(t, file("metadata.yaml", testMetadata))
	rootfs := tarball(t, file("big", strings.Repeat("x", 1<<16)))
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Add(ctx, bytes.NewReader(meta), &cancelReader{r: bytes.NewReader(rootfs), cancel: cancel}, "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Add: %v, want context.Canceled", err)
	}
	if files := storeFiles(t, s); len(files) != 0 {
		t.Errorf("store holds %v after a cancelled upload", files)
	}
}

func TestAddDuplicateAndDelete(t *testing.T) {
	s := newStore(t)
	meta := tarball(t, file("metadata.yaml", testMetadata))
	rootfs := tarball(t, file("a", "a"))
	add := func() (Info, error) {
		return s.Add(context.Background(), bytes.NewReader(meta), bytes.NewReader(rootfs), "")
	}
	info, err := add()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := add(); !errors.Is(err, ErrExists) {
		t.Errorf("second Add: %v, want ErrExists", err)
	}
	if files := storeFiles(t, s); len(files) != 2 {
		t.Errorf("store holds %v, want the metadata and rootfs files only", files)
	}

	if err := s.Delete(info.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if files := storeFiles(t, s); len(files) != 0 {
		t.Errorf("store holds %v after Delete", files)
	}
	if _, err := s.Info(context.Background(), info.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Errorf("Info after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(info.Fingerprint); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete twice: %v, want ErrNotFound", err)
	}
}

func TestFingerprintIsNeverAPath(t *testing.T) {
	s := newStore(t)
	// A file next to the store that a path-like fingerprint would reach.
	outside := filepath.Join(filepath.Dir(s.dir), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, fp := range []string{"../victim", "", "abc", strings.Repeat("A", 64), strings.Repeat("0", 63) + "/"} {
		if _, _, err := s.Open(fp); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q): %v, want ErrNotFound", fp, err)
		}
		if err := s.Delete(fp); !errors.Is(err, ErrNotFound) {
			t.Errorf("Delete(%q): %v, want ErrNotFound", fp, err)
		}
	}
	if readFile(t, outside) != "keep" {
		t.Error("file outside the store was changed")
	}
}

func TestNewStoreRemovesStaleUploads(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, tmpPrefix+"123")
	if err := os.WriteFile(stale, []byte("half an upload"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A download the daemon died in the middle of.
	f, err := s.TempFile("0123456789ab-rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("half a download"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := NewStore(dir); err != nil {
		t.Fatal(err)
	}
	assertAbsent(t, stale)
	assertAbsent(t, f.Name())
}

func TestParseMetadata(t *testing.T) {
	md, err := ParseMetadata(strings.NewReader(`architecture: aarch64
creation_date: 1700000000
properties:
  description: Debian bookworm
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
    create_only: true
    properties:
      default: cell
`))
	if err != nil {
		t.Fatal(err)
	}
	tpl := md.Templates["/etc/hostname"]
	if md.Architecture != "aarch64" || md.CreationDate != 1700000000 || md.Properties["description"] != "Debian bookworm" ||
		tpl == nil || tpl.Template != "hostname.tpl" || !tpl.CreateOnly || len(tpl.When) != 2 || tpl.Properties["default"] != "cell" {
		t.Errorf("parsed %+v (template %+v)", md, tpl)
	}
	for name, bad := range map[string]string{
		"no architecture":  "creation_date: 1\n",
		"not yaml":         "architecture: [\n",
		"template no file": "architecture: x86_64\ntemplates:\n  /etc/hostname:\n    when: [create]\n",
	} {
		if _, err := ParseMetadata(strings.NewReader(bad)); !errors.Is(err, ErrInvalidImage) {
			t.Errorf("%s: %v, want ErrInvalidImage", name, err)
		}
	}
}
