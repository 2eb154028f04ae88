package idmap

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

var unpriv = Map{UID: Range{HostBase: 1000000, Size: 65536}, GID: Range{HostBase: 1000000, Size: 65536}}

func TestParseRoundTrip(t *testing.T) {
	m, err := Parse(unpriv.String())
	if err != nil || m != unpriv {
		t.Fatalf("Parse(%q) = %+v, %v", unpriv.String(), m, err)
	}
	if m, err := Parse(""); err != nil || !m.IsPrivileged() {
		t.Fatalf("empty map is not privileged: %+v %v", m, err)
	}
	for _, bad := range []string{"u:0:1", "x:0:1:2", "u:5:1000:10", "u:0:-1:10", "u:0:1:0"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestShiftTreeKeepsSetuid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "su")
	if err := os.WriteFile(file, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, 1000000, 1000005); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(file, 0o4755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("su", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(dir, "link"), 1000033, 1000033); err != nil {
		t.Fatal(err)
	}
	if err := ShiftTree(context.Background(), dir, unpriv, Map{}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	_ = syscall.Stat(file, &st)
	if st.Uid != 0 || st.Gid != 5 || st.Mode&07777 != 0o4755 {
		t.Fatalf("after unshift: uid %d gid %d mode %o, want 0 5 4755", st.Uid, st.Gid, st.Mode&07777)
	}
	_ = syscall.Lstat(filepath.Join(dir, "link"), &st)
	if st.Uid != 33 {
		t.Fatalf("symlink owner %d, want 33 (lchown, not the target)", st.Uid)
	}
}
