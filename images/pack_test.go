package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"

	"cell/shared/api"
)

// hostileVolume makes an instance volume, shifted with shiftMap, whose
// rootfs holds what a container may leave to trip up a publish: symlinks
// out of it, a device node, a fifo, a socket, hard links.
func hostileVolume(t *testing.T, secret string) string {
	t.Helper()
	vol := filepath.Join(t.TempDir(), "vol")
	r := filepath.Join(vol, "rootfs")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(r, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(vol, "templates"), 0o755))
	must(os.WriteFile(filepath.Join(vol, "templates", "hostname.tpl"), []byte("{{ container.name }}\n"), 0o644))
	must(os.WriteFile(filepath.Join(r, "etc", "hostname"), []byte("published\n"), 0o640))
	must(os.Chown(filepath.Join(r, "etc", "hostname"), 1000033, 1000034))
	must(os.Chown(r, 1000000, 1000000))
	must(os.Link(filepath.Join(r, "etc", "hostname"), filepath.Join(r, "etc", "hostname.bak")))
	outside := filepath.Join(filepath.Dir(vol), "host-secret")
	must(os.WriteFile(outside, []byte(secret), 0o600))
	must(os.Symlink(outside, filepath.Join(r, "etc", "shadow")))
	must(os.Symlink("../../..", filepath.Join(r, "up")))
	must(unix.Mkfifo(filepath.Join(r, "fifo"), 0o600))
	l, err := net.Listen("unix", filepath.Join(r, "sock"))
	must(err)
	t.Cleanup(func() { l.Close() })
	if os.Geteuid() == 0 {
		must(unix.Mknod(filepath.Join(r, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	}
	return vol
}

func TestPackUnshiftsAndNeverFollowsLinks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown the volume's files")
	}
	const secret = "the host's secret"
	vol := hostileVolume(t, secret)
	md := api.ImageMetadata{Architecture: "x86_64", CreationDate: 1700000000, Properties: map[string]string{"os": "busybox"},
		Templates: map[string]*api.ImageMetadataTemplate{"/etc/hostname": {When: []string{TriggerCreate}, Template: "hostname.tpl"}}}
	var out bytes.Buffer
	if err := Pack(context.Background(), &out, vol, PackOptions{Metadata: md, Idmap: shiftMap}); err != nil {
		t.Fatal(err)
	}

	zr, err := gzip.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if strings.Contains(string(body), secret) {
			t.Errorf("%s holds the host's file", hdr.Name)
		}
		got[hdr.Name] = hdr
	}
	for name, want := range map[string]byte{
		"metadata.yaml": tar.TypeReg, "templates/hostname.tpl": tar.TypeReg, "rootfs/": tar.TypeDir,
		"rootfs/etc/hostname": tar.TypeReg, "rootfs/etc/hostname.bak": tar.TypeLink,
		"rootfs/etc/shadow": tar.TypeSymlink, "rootfs/up": tar.TypeSymlink, "rootfs/fifo": tar.TypeFifo,
		"rootfs/null": tar.TypeChar,
	} {
		if got[name] == nil || got[name].Typeflag != want {
			t.Errorf("%s: %+v, want type %c", name, got[name], want)
		}
	}
	if got["rootfs/sock"] != nil {
		t.Errorf("a socket was packed")
	}
	if h := got["rootfs/etc/hostname"]; h != nil && (h.Uid != 33 || h.Gid != 34 || h.Mode != 0o640) {
		t.Errorf("rootfs/etc/hostname: %d:%d %o, want 33:34 640 (unshifted)", h.Uid, h.Gid, h.Mode)
	}
	if h := got["rootfs/"]; h != nil && (h.Uid != 0 || h.Gid != 0) {
		t.Errorf("rootfs/ owned by %d:%d, want 0:0", h.Uid, h.Gid)
	}

	// The result is an image: it stores, and unpacks to the same files.
	s := newStore(t)
	info := addUnified(t, s, out.Bytes())
	if info.Metadata.Properties["os"] != "busybox" || info.Metadata.Templates["/etc/hostname"] == nil {
		t.Errorf("metadata of the packed image: %+v", info.Metadata)
	}
	dest := filepath.Join(t.TempDir(), "vol2")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dest, "rootfs", "etc", "hostname")) != "published\n" {
		t.Error("file contents changed through publish")
	}
	assertOwner(t, filepath.Join(dest, "rootfs", "etc", "hostname"), 1000033, 1000034)
	if target, _ := os.Readlink(filepath.Join(dest, "rootfs", "etc", "shadow")); !strings.HasSuffix(target, "host-secret") {
		t.Errorf("symlink not kept as a symlink: %q", target)
	}
}

func TestPackCompressions(t *testing.T) {
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.MkdirAll(filepath.Join(vol, "rootfs", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	for _, c := range Compressions {
		if err := os.WriteFile(filepath.Join(vol, "rootfs", "etc", "c"), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Pack(context.Background(), &out, vol, PackOptions{Metadata: api.ImageMetadata{Architecture: "x86_64"}, Compression: c}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		addUnified(t, s, out.Bytes())
	}
	err := Pack(context.Background(), io.Discard, vol, PackOptions{Compression: "lz4"})
	if !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("unknown compression: %v, want ErrInvalidImage naming the allowed ones", err)
	}
}

func TestSplitUnified(t *testing.T) {
	s := newStore(t)
	unified := addUnified(t, s, compress(t, formatGzip, unifiedImage(t,
		dir("rootfs/etc/"), file("rootfs/etc/hostname", "split\n"),
		entry{name: "rootfs/etc/hostname.bak", typ: tar.TypeLink, link: "rootfs/etc/hostname"},
		dir("templates/"), file("templates/hostname.tpl", "{{ container.name }}\n"))))
	meta, rootfs, err := s.Open(unified.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	if rootfs != nil {
		t.Fatal("a unified image has no rootfs file")
	}
	var metaOut, rootOut bytes.Buffer
	if err := SplitUnified(context.Background(), meta, &metaOut, &rootOut); err != nil {
		t.Fatal(err)
	}
	info, err := s.Add(context.Background(), bytes.NewReader(metaOut.Bytes()), bytes.NewReader(rootOut.Bytes()), "")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Split || info.Fingerprint == unified.Fingerprint {
		t.Fatalf("split image: %+v", info)
	}
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"rootfs/etc/hostname": "split\n", "rootfs/etc/hostname.bak": "split\n",
		"templates/hostname.tpl": "{{ container.name }}\n"} {
		if got := readFile(t, filepath.Join(dest, p)); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}

// Unpack then Pack gives back the image's ownership, modes and file
// capabilities (in the container's view), whatever the volume's shift.
func TestPackRoundTripsUnpack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own files as the container's ids")
	}
	s := newStore(t)
	info := addUnified(t, s, compress(t, formatGzip, ownershipImage(t)))
	vol := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, vol, shiftMap); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Pack(context.Background(), &out, vol, PackOptions{Metadata: api.ImageMetadata{Architecture: "x86_64"}, Idmap: shiftMap, Compression: "none"}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	got := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = hdr
	}
	for name, want := range map[string][3]int64{
		"rootfs/var/www/": {33, 33, 0o750}, "rootfs/var/www/index.html": {33, 33, 0o644},
		"rootfs/bin/busybox": {0, 0, 0o4755}, "rootfs/usr/bin/wall": {0, 5, 0o2755}, "rootfs/tmp/": {0, 0, 0o1777},
	} {
		h := got[name]
		if h == nil || int64(h.Uid) != want[0] || int64(h.Gid) != want[1] || h.Mode != want[2] {
			t.Errorf("%s: %+v, want %d:%d %o", name, h, want[0], want[1], want[2])
		}
	}
	if h := got["rootfs/usr/bin/ping"]; h == nil || h.PAXRecords["SCHILY.xattr."+xattrCapability] != capNetRaw() {
		t.Errorf("ping's capability did not come back as the image had it: %+v", h)
	}
}
