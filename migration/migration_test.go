package migration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// wsPair returns the two ends of a real websocket connection on loopback.
func wsPair(t *testing.T) (client, server *websocket.Conn) {
	t.Helper()
	got := make(chan *websocket.Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		got <- c
	}))
	t.Cleanup(srv.Close)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (owners, device nodes)")
	}
}

func TestControlMessages(t *testing.T) {
	a, b := wsPair(t)
	fs := MigrationFSType_BTRFS
	criu := CRIUType_CRIU_RSYNC
	hdr := &MigrationHeader{Fs: &fs, Criu: &criu, SnapshotNames: []string{"s1", "s2"},
		RsyncFeatures: &RsyncFeatures{Xattrs: proto.Bool(true), Delete: proto.Bool(true)},
		Snapshots: []*Snapshot{{Name: proto.String("s1"), Ephemeral: proto.Bool(false), Architecture: proto.Int32(2),
			Stateful: proto.Bool(true), LocalConfig: []*Config{{Key: proto.String("k"), Value: proto.String("v")}}}}}
	if err := SendControl(a, hdr); err != nil {
		t.Fatal(err)
	}
	var got MigrationHeader
	if err := RecvControl(b, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(hdr, &got) {
		t.Fatalf("header changed on the way: %v", &got)
	}
	// A text message is not a control message.
	if err := a.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	var ctl MigrationControl
	if err := RecvControl(b, &ctl); err == nil || !strings.Contains(err.Error(), "want binary") {
		t.Fatalf("text message accepted as control: %v", err)
	}
	// A message missing a required field is refused.
	if err := a.WriteMessage(websocket.BinaryMessage, nil); err != nil {
		t.Fatal(err)
	}
	if err := RecvControl(b, &ctl); err == nil {
		t.Fatal("empty MigrationControl (success is required) accepted")
	}
}

// makeTree builds a tree with what a root filesystem holds.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/hosts"), []byte("127.0.0.1 localhost\n"), 0o644))
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	must(os.WriteFile(filepath.Join(dir, "big"), big, 0o600))
	must(os.WriteFile(filepath.Join(dir, "setuid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(dir, "setuid"), 0o4751))
	must(os.Link(filepath.Join(dir, "etc/hosts"), filepath.Join(dir, "etc/sub/hosts-link")))
	must(os.Symlink("../hosts", filepath.Join(dir, "etc/sub/rel")))
	must(os.Symlink("/nonexistent/abs", filepath.Join(dir, "dangling")))
	must(os.Lchown(filepath.Join(dir, "etc/sub"), 1001000, 1001000))
	must(os.Lchown(filepath.Join(dir, "etc/sub/rel"), 1000033, 1000034))
	must(os.Chown(filepath.Join(dir, "big"), 1000000, 1000005))
	must(unix.Lsetxattr(filepath.Join(dir, "big"), "user.test", []byte("value"), 0))
	must(unix.Lsetxattr(filepath.Join(dir, "etc"), "trusted.cell", []byte{0, 1, 2}, 0))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	must(syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "etc/hosts"), old, old))
}

// describeTree lists every entry with its type, mode, owner, size,
// content hash, link target, xattrs and hard-link group.
func describeTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += fmt.Sprintf(" size=%d sha=%s mtime=%d", st.Size, hex.EncodeToString(sum[:8]), st.Mtim.Sec)
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					line += " link-of=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, _ := os.Readlink(path)
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		sz, _ := unix.Llistxattr(path, nil)
		if sz > 0 {
			buf := make([]byte, sz)
			sz, _ = unix.Llistxattr(path, buf)
			names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
			sort.Strings(names)
			for _, n := range names {
				v := make([]byte, 256)
				vn, _ := unix.Lgetxattr(path, n, v)
				line += fmt.Sprintf(" %s=%x", n, v[:max(vn, 0)])
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, want, got string) {
	t.Helper()
	a, b := describeTree(t, want), describeTree(t, got)
	// The top directory itself: only its contents are sent.
	a, b = a[1:], b[1:]
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("trees differ:\nsent:\n%s\nreceived:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// transfer runs send and receive at the two ends of a websocket pair.
func transfer(t *testing.T, send func(Conn) error, recv func(Conn) error) {
	t.Helper()
	a, b := wsPair(t)
	errs := make(chan error, 1)
	go func() { errs <- send(NewStream(a)) }()
	if err := recv(NewStream(b)); err != nil {
		t.Fatalf("receive: %v", err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("send: %v", err)
	}
}

func TestRsyncTreeArrivesExactly(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	src, dst := t.TempDir(), t.TempDir()
	makeTree(t, src)
	var progress []int64
	p := &Progress{Report: func(n int64) { progress = append(progress, n) }}
	transfer(t,
		func(c Conn) error { return RsyncSend(ctx, src, c, FullRsync, p) },
		func(c Conn) error { return RsyncRecv(ctx, dst, c, FullRsync) })
	sameTree(t, src, dst)
	if p.Total() == 0 || len(progress) == 0 || progress[len(progress)-1] != p.Total() {
		t.Fatalf("progress not reported: %v, total %d", progress, p.Total())
	}

	// A second run over the same connection type: an update (a refresh)
	// with a change and a deletion, which --delete carries over.
	if err := os.WriteFile(filepath.Join(src, "etc/new"), []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "big")); err != nil {
		t.Fatal(err)
	}
	transfer(t,
		func(c Conn) error { return RsyncSend(ctx, src, c, FullRsync, nil) },
		func(c Conn) error { return RsyncRecv(ctx, dst, c, FullRsync) })
	sameTree(t, src, dst)
}

func TestRsyncSeveralTransfersOneConnection(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	srcs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	for i, s := range srcs {
		makeTree(t, s)
		if err := os.WriteFile(filepath.Join(s, "which"), []byte{byte('0' + i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dsts := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	transfer(t,
		func(c Conn) error {
			for _, s := range srcs {
				if err := RsyncSend(ctx, s, c, FullRsync, nil); err != nil {
					return err
				}
			}
			return nil
		},
		func(c Conn) error {
			for _, d := range dsts {
				if err := RsyncRecv(ctx, d, c, FullRsync); err != nil {
					return err
				}
			}
			return nil
		})
	for i := range srcs {
		sameTree(t, srcs[i], dsts[i])
	}
}

// btrfsFS mounts a fresh btrfs on a loop file for the test.
func btrfsFS(t *testing.T) string {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("btrfs-progs not installed")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	run(t, "truncate", "-s", "300M", img)
	run(t, "mkfs.btrfs", "-q", img)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	return mnt
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

func TestBtrfsSnapshotsArriveInOrder(t *testing.T) {
	mnt := btrfsFS(t)
	ctx := context.Background()
	src, dst := filepath.Join(mnt, "src"), filepath.Join(mnt, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	vol := filepath.Join(src, "vol")
	run(t, "btrfs", "subvolume", "create", vol)
	makeTree(t, vol)
	var snaps []string
	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(filepath.Join(vol, "gen"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		s := filepath.Join(src, fmt.Sprintf("snap%d", i))
		run(t, "btrfs", "subvolume", "snapshot", "-r", vol, s)
		snaps = append(snaps, s)
	}
	p := &Progress{}
	var got []string
	transfer(t,
		func(c Conn) error { return BtrfsSend(ctx, c, snaps, "", p) },
		func(c Conn) error {
			var err error
			got, err = BtrfsRecv(ctx, c, dst, len(snaps))
			return err
		})
	if len(got) != 3 {
		t.Fatalf("received %v", got)
	}
	for i, g := range got {
		if filepath.Base(g) != filepath.Base(snaps[i]) {
			t.Fatalf("stream %d made %s, want %s", i, g, snaps[i])
		}
		sameTree(t, snaps[i], g)
		data, _ := os.ReadFile(filepath.Join(g, "gen"))
		if string(data) != fmt.Sprint(i+1) {
			t.Fatalf("%s holds generation %q", g, data)
		}
	}
	if p.Total() == 0 {
		t.Fatal("no progress counted")
	}
}

// zfsPool creates a zpool on a file for the test (zfs-fuse or OpenZFS
// must be running already).
func zfsPool(t *testing.T) string {
	t.Helper()
	needRoot(t)
	if err := exec.Command("zpool", "list").Run(); err != nil {
		t.Skip("no zfs daemon or module answering")
	}
	img := filepath.Join(t.TempDir(), "pool.img")
	run(t, "truncate", "-s", "200M", img)
	name := fmt.Sprintf("cellmig%d", os.Getpid())
	run(t, "zpool", "create", "-m", "none", name, img)
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if exec.Command("zpool", "destroy", "-f", name).Run() == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Errorf("zpool %s could not be destroyed", name)
	})
	return name
}

func TestZfsSnapshotsArriveInOrder(t *testing.T) {
	pool := zfsPool(t)
	ctx := context.Background()
	mnt := t.TempDir()
	src := pool + "/src"
	run(t, "zfs", "create", "-o", "mountpoint="+mnt, src)
	t.Cleanup(func() { _ = exec.Command("zfs", "destroy", "-r", src).Run() })
	var snaps []string
	for i := 1; i <= 3; i++ {
		if err := os.WriteFile(filepath.Join(mnt, "gen"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%s@snap%d", src, i)
		run(t, "zfs", "snapshot", s)
		snaps = append(snaps, s)
	}
	dst := pool + "/dst"
	t.Cleanup(func() { _ = exec.Command("zfs", "destroy", "-r", dst).Run() })
	transfer(t,
		func(c Conn) error { return ZfsSend(ctx, c, snaps, "", nil) },
		func(c Conn) error { return ZfsRecv(ctx, c, dst, len(snaps)) })
	out, err := exec.Command("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "creation", "-r", dst).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{dst + "@snap1", dst + "@snap2", dst + "@snap3"}, "\n")
	if strings.TrimSpace(string(out)) != want {
		t.Fatalf("snapshots received:\n%s\nwant:\n%s", out, want)
	}
	dmnt := t.TempDir()
	// Setting the mountpoint mounts it.
	run(t, "zfs", "set", "mountpoint="+dmnt, dst)
	t.Cleanup(func() { _ = exec.Command("zfs", "umount", dst).Run() })
	data, _ := os.ReadFile(filepath.Join(dmnt, "gen"))
	if string(data) != "3" {
		t.Fatalf("received dataset holds generation %q, want 3", data)
	}
}
