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

// TestShiftTreeResumes: shifting a privileged tree that is already partly
// shifted (a crash interrupted the first run) shifts only the rest.
func TestShiftTreeResumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	owners := map[string][2]int{"done": {1000033, 1000033}, "todo": {33, 33}, "big": {70000, 70000}}
	for name, o := range owners {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := ShiftTree(context.Background(), dir, Map{}, unpriv); err != nil {
		t.Fatal(err)
	}
	// "big" cannot be mapped into the container: it is left alone.
	want := map[string]uint32{".": 1000000, "done": 1000033, "todo": 1000033, "big": 70000}
	for name, uid := range want {
		var st syscall.Stat_t
		_ = syscall.Lstat(filepath.Join(dir, name), &st)
		if st.Uid != uid {
			t.Errorf("%s: uid %d, want %d", name, st.Uid, uid)
		}
	}
}
