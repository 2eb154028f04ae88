package rootfs

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The container root holds links that point out of it in every way; each
// open must land inside the root.
func TestOpenNeverLeavesRoot(t *testing.T) {
	outside := t.TempDir()
	marker := filepath.Join(outside, "host-secret")
	if err := os.WriteFile(marker, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(os.Symlink(marker, filepath.Join(dir, "etc", "abs")))
	must(os.Symlink("../../../../../../../.."+marker, filepath.Join(dir, "etc", "rel")))
	must(os.Symlink("/", filepath.Join(dir, "up")))

	root, err := Open(dir)
	must(err)
	defer root.Close()
	for _, p := range []string{"/etc/abs", "/etc/rel", "/up" + marker, "../../.." + marker} {
		f, err := root.OpenFile(p, unix.O_RDONLY, 0)
		if err == nil {
			data := make([]byte, 16)
			n, _ := f.Read(data)
			f.Close()
			if string(data[:n]) == "host" {
				t.Errorf("%s read the host file", p)
			}
		}
	}
	// Writing through the absolute link creates the target inside the root
	// (where the same directories exist, as they would in a real rootfs).
	must(os.MkdirAll(filepath.Join(dir, outside), 0o755))
	f, err := root.OpenFile("/etc/abs", unix.O_WRONLY|unix.O_CREAT, 0o644)
	must(err)
	_, _ = f.WriteString("inside")
	f.Close()
	if data, _ := os.ReadFile(marker); string(data) != "host" {
		t.Fatalf("host file changed: %q", data)
	}
	if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
		t.Fatalf("write through the link did not land inside the root: %v", err)
	}
}
