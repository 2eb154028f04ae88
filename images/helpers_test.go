package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"cell/shared/idmap"
)

// shiftMap is the usual unprivileged container map.
var shiftMap = idmap.Map{
	UID: idmap.Range{HostBase: 1000000, Size: 65536},
	GID: idmap.Range{HostBase: 1000000, Size: 65536},
}

var testTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

const testMetadata = "architecture: x86_64\ncreation_date: 1600000000\nproperties:\n  os: busybox\n"

// entry is one tar entry of a test image.
type entry struct {
	name     string
	typ      byte // tar.TypeReg when zero
	body     string
	mode     int64 // 0644 / 0755 when zero
	uid, gid int
	link     string
	pax      map[string]string
}

func file(name, body string) entry { return entry{name: name, body: body} }
func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir} }

func tarball(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:       e.name,
			Typeflag:   e.typ,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			Linkname:   e.link,
			ModTime:    testTime,
			PAXRecords: e.pax,
			Format:     tar.FormatPAX,
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// unifiedImage is a unified tarball: metadata.yaml, rootfs/, then entries.
func unifiedImage(t *testing.T, entries ...entry) []byte {
	t.Helper()
	all := append([]entry{file("metadata.yaml", testMetadata), dir("rootfs/")}, entries...)
	return tarball(t, all...)
}

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch format {
	case formatTar:
		return data
	case formatGzip:
		w := gzip.NewWriter(&buf)
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case formatXz:
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case formatZstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case formatBzip2:
		// No bzip2 writer in Go's standard library.
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("bzip2 not installed: cannot make a bzip2 test image")
		}
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	default:
		t.Fatalf("unknown format %s", format)
	}
	return buf.Bytes()
}

func sha(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addUnified(t *testing.T, s *Store, data []byte) Info {
	t.Helper()
	info, err := s.Add(context.Background(), bytes.NewReader(data), nil, "")
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return info
}

// storeFiles lists every file in the store directory, hidden ones included.
func storeFiles(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func assertOwner(t *testing.T, p string, uid, gid uint32) {
	t.Helper()
	st := lstat(t, p)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

func assertAbsent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Errorf("%s exists, it must not", p)
	} else if !os.IsNotExist(err) {
		t.Errorf("lstat %s: %v", p, err)
	}
}

// findString reports the files under dir whose content contains s.
func findString(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), s) {
				hits = append(hits, p)
			}
		}
		return nil
	})
	return hits
}

// idmap0 is the privileged (identity) map.
var idmap0 idmap.Map
