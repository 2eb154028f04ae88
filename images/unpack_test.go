package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"cell/shared/idmap"
)

// capNetRaw is a revision 2 security.capability value: cap_net_raw+ep.
func capNetRaw() string {
	v := make([]byte, vfsCapSize2)
	binary.LittleEndian.PutUint32(v, vfsCapRevision2|1) // 1: effective
	binary.LittleEndian.PutUint32(v[4:], 1<<13)         // CAP_NET_RAW permitted
	return string(v)
}

func ownershipImage(t *testing.T) []byte {
	return unifiedImage(t,
		dir("rootfs/etc/"),
		file("rootfs/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		entry{name: "rootfs/var/www/", typ: tar.TypeDir, mode: 0o750, uid: 33, gid: 33},
		entry{name: "rootfs/var/www/index.html", body: "<html>", uid: 33, gid: 33},
		entry{name: "rootfs/tmp/", typ: tar.TypeDir, mode: 0o1777},
		entry{name: "rootfs/bin/busybox", body: "ELF", mode: 0o4755},
		entry{name: "rootfs/usr/bin/wall", body: "ELF", mode: 0o2755, gid: 5},
		entry{name: "rootfs/bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		entry{name: "rootfs/bin/ls", typ: tar.TypeLink, link: "rootfs/bin/busybox"},
		entry{name: "rootfs/usr/bin/ping", body: "ELF", mode: 0o755,
			pax: map[string]string{"SCHILY.xattr." + xattrCapability: capNetRaw()}},
		file("rootfs/implicit/parents/file", "made without directory entries"),
	)
}

func TestUnpackShiftsOwnersKeepsModes(t *testing.T) {
	s := newStore(t)
	info := addUnified(t, s, compress(t, formatGzip, ownershipImage(t)))
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dest, "rootfs")

	assertOwner(t, r, 1000000, 1000000)
	assertOwner(t, filepath.Join(r, "etc/passwd"), 1000000, 1000000)
	assertOwner(t, filepath.Join(r, "var/www"), 1000033, 1000033)
	assertOwner(t, filepath.Join(r, "var/www/index.html"), 1000033, 1000033)
	assertOwner(t, filepath.Join(r, "bin/sh"), 1000000, 1000000) // the symlink itself
	assertOwner(t, filepath.Join(r, "usr/bin/wall"), 1000000, 1000005)
	assertOwner(t, filepath.Join(r, "implicit/parents"), 1000000, 1000000)
	// The daemon's files are not the container's.
	assertOwner(t, filepath.Join(dest, "metadata.yaml"), 0, 0)

	modes := map[string]uint32{
		"bin/busybox":      unix.S_IFREG | 0o4755,
		"usr/bin/wall":     unix.S_IFREG | 0o2755,
		"tmp":              unix.S_IFDIR | 0o1777,
		"var/www":          unix.S_IFDIR | 0o750,
		"etc/passwd":       unix.S_IFREG | 0o644,
		"implicit/parents": unix.S_IFDIR | 0o755,
	}
	for p, want := range modes {
		if got := lstat(t, filepath.Join(r, p)).Mode; got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}

	if target, err := os.Readlink(filepath.Join(r, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q (%v), want busybox", target, err)
	}
	if a, b := lstat(t, filepath.Join(r, "bin/ls")), lstat(t, filepath.Join(r, "bin/busybox")); a.Ino != b.Ino {
		t.Error("bin/ls is not a hard link of bin/busybox")
	}
	for _, p := range []string{"etc/passwd", "etc", "var/www", "bin/sh"} {
		st := lstat(t, filepath.Join(r, p))
		if st.Mtim.Sec != testTime.Unix() {
			t.Errorf("%s mtime %d, want %d from the tarball", p, st.Mtim.Sec, testTime.Unix())
		}
	}

	// ping's capability must name the container's root, or it is ignored
	// inside the user namespace.
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(r, "usr/bin/ping"), xattrCapability, buf)
	if err != nil {
		t.Fatalf("ping has no capability: %v", err)
	}
	if n != vfsCapSize3 || binary.LittleEndian.Uint32(buf)&vfsCapRevisionMask != vfsCapRevision3 ||
		binary.LittleEndian.Uint32(buf[20:]) != 1000000 || binary.LittleEndian.Uint32(buf[4:]) != 1<<13 {
		t.Errorf("ping capability = %x, want revision 3, cap_net_raw, rootid 1000000", buf[:n])
	}
}

func TestUnpackPrivilegedKeepsOwners(t *testing.T) {
	s := newStore(t)
	info := addUnified(t, s, ownershipImage(t))
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, idmap.Map{}); err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dest, "rootfs")
	assertOwner(t, filepath.Join(r, "var/www/index.html"), 33, 33)
	assertOwner(t, filepath.Join(r, "etc/passwd"), 0, 0)
	if got := lstat(t, filepath.Join(r, "bin/busybox")).Mode; got != unix.S_IFREG|0o4755 {
		t.Errorf("setuid busybox mode %o", got)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(r, "usr/bin/ping"), xattrCapability, buf); err != nil || n != vfsCapSize2 {
		t.Errorf("privileged ping capability: %d bytes, %v; want the image's revision 2 value", n, err)
	}
}

func TestUnpackSkipsDeviceNodes(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)

	s := newStore(t)
	info := addUnified(t, s, unifiedImage(t,
		dir("rootfs/dev/"),
		entry{name: "rootfs/dev/null", typ: tar.TypeChar, mode: 0o666},
		entry{name: "rootfs/dev/sda", typ: tar.TypeBlock, mode: 0o660},
		entry{name: "rootfs/run/initctl", typ: tar.TypeFifo, mode: 0o600},
		file("rootfs/etc/hostname", "box"),
	))
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dev/null", "dev/sda", "run/initctl"} {
		assertAbsent(t, filepath.Join(dest, "rootfs", p))
	}
	if readFile(t, filepath.Join(dest, "rootfs/etc/hostname")) != "box" {
		t.Error("regular file next to device nodes not unpacked")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "count=3") {
		t.Errorf("want one warning counting 3 skipped nodes, log:\n%s", logs.String())
	}
}

// TestUnpackHostileTarballs feeds tarballs made to write outside the volume.
// Each either fails, leaving no volume, or puts everything inside it.
func TestUnpackHostileTarballs(t *testing.T) {
	hostEtcEvil := "/etc/cell-images-test-evil"
	if _, err := os.Lstat(hostEtcEvil); err == nil {
		t.Fatalf("%s exists before the test", hostEtcEvil)
	}
	t.Cleanup(func() { os.Remove(hostEtcEvil) })

	type hostile struct {
		entries []entry
		// inside is where the write lands in the volume; "" means the
		// image must be refused.
		inside string
	}
	cases := map[string]func(base string) hostile{
		"dotdot": func(string) hostile {
			return hostile{entries: []entry{file("../evil", "x")}}
		},
		"absolute": func(base string) hostile {
			return hostile{entries: []entry{file(base+"/evil", "x")}}
		},
		"rootfs dotdot": func(string) hostile {
			return hostile{entries: []entry{file("rootfs/../../evil", "x")}}
		},
		"templates dotdot": func(string) hostile {
			return hostile{entries: []entry{file("templates/../../evil", "x")}}
		},
		"symlink to slash then write": func(string) hostile {
			return hostile{entries: []entry{
				dir("rootfs/etc/"),
				{name: "rootfs/link", typ: tar.TypeSymlink, link: "/"},
				file("rootfs/link/etc/cell-images-test-evil", "x"),
			}, inside: "rootfs/etc/cell-images-test-evil"}
		},
		"symlink up then write": func(string) hostile {
			return hostile{entries: []entry{
				{name: "rootfs/link", typ: tar.TypeSymlink, link: "../../.."},
				file("rootfs/link/evil", "x"),
			}, inside: "rootfs/evil"}
		},
		"symlink to host dir then write": func(base string) hostile {
			// base exists on the host, not in the rootfs: refused.
			return hostile{entries: []entry{
				{name: "rootfs/link", typ: tar.TypeSymlink, link: base},
				file("rootfs/link/evil", "x"),
			}}
		},
		"symlink to host dir then mkdir and write": func(base string) hostile {
			return hostile{entries: []entry{
				{name: "rootfs/link", typ: tar.TypeSymlink, link: base},
				dir("rootfs/link/"),
				file("rootfs/link/evil", "x"),
			}, inside: "rootfs/link/evil"}
		},
		"rootfs is a symlink": func(base string) hostile {
			return hostile{entries: []entry{
				{name: "rootfs", typ: tar.TypeSymlink, link: base},
				file("rootfs/evil", "x"),
			}}
		},
		"hardlink to host passwd": func(string) hostile {
			return hostile{entries: []entry{{name: "rootfs/pw", typ: tar.TypeLink, link: "/etc/passwd"}}}
		},
		"hardlink up": func(string) hostile {
			return hostile{entries: []entry{{name: "rootfs/x", typ: tar.TypeLink, link: "../../x"}}}
		},
		"hardlink through symlink": func(base string) hostile {
			return hostile{entries: []entry{
				{name: "rootfs/link", typ: tar.TypeSymlink, link: base},
				{name: "rootfs/x", typ: tar.TypeLink, link: "rootfs/link/x"},
			}}
		},
		"hardlink through symlink resolves inside": func(base string) hostile {
			// The same path exists inside the rootfs: that is what gets
			// linked, not the host's victim file (which says "host").
			return hostile{entries: []entry{
				file("rootfs"+base+"/x", "x"),
				{name: "rootfs/link", typ: tar.TypeSymlink, link: base},
				{name: "rootfs/h", typ: tar.TypeLink, link: "rootfs/link/x"},
			}, inside: "rootfs/h"}
		},
		"hardlink to metadata": func(string) hostile {
			return hostile{entries: []entry{{name: "rootfs/m", typ: tar.TypeLink, link: "metadata.yaml"}}}
		},
	}
	passwdLinks := lstat(t, "/etc/passwd").Nlink

	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			vol := filepath.Join(base, "vol")
			if err := os.Mkdir(vol, 0o700); err != nil {
				t.Fatal(err)
			}
			// A host file that hard links try to reach.
			victim := filepath.Join(base, "x")
			if err := os.WriteFile(victim, []byte("host"), 0o600); err != nil {
				t.Fatal(err)
			}
			h := mk(base)
			s := newStore(t)
			info := addUnified(t, s, unifiedImage(t, h.entries...))
			dest := filepath.Join(vol, "dest")
			err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap)
			t.Logf("Unpack: %v", err)

			for _, p := range []string{filepath.Join(base, "evil"), filepath.Join(vol, "evil"), hostEtcEvil} {
				assertAbsent(t, p)
			}
			if st := lstat(t, victim); st.Nlink != 1 {
				t.Errorf("host file %s got %d links", victim, st.Nlink)
			}
			if st := lstat(t, "/etc/passwd"); st.Nlink != passwdLinks {
				t.Errorf("/etc/passwd link count changed to %d", st.Nlink)
			}
			if h.inside == "" {
				if err == nil {
					t.Fatal("hostile image unpacked without error")
				}
				assertAbsent(t, dest)
				return
			}
			if err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if readFile(t, filepath.Join(dest, h.inside)) != "x" {
				t.Errorf("write did not land at %s inside the volume", h.inside)
			}
		})
	}
}

func TestUnpackSplitRootfsRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	s := newStore(t)
	meta := tarball(t, file("metadata.yaml", testMetadata))
	for _, name := range []string{"../evil", "./../evil", base + "/evil"} {
		rootfs := tarball(t, dir("./"), file(name, "x"))
		info, err := s.Add(context.Background(), bytes.NewReader(meta), bytes.NewReader(rootfs), "")
		if err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(base, "vol")
		if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); !errors.Is(err, ErrInvalidImage) {
			t.Errorf("%s: Unpack: %v, want ErrInvalidImage", name, err)
		}
		assertAbsent(t, dest)
		assertAbsent(t, filepath.Join(base, "evil"))
	}
}

func TestUnpackIntoExistingDirectory(t *testing.T) {
	s := newStore(t)
	good := addUnified(t, s, unifiedImage(t, file("rootfs/a", "a")))
	bad := addUnified(t, s, unifiedImage(t, file("rootfs/a", "a"), file("rootfs/../../evil", "x")))

	// A storage driver's empty volume is filled, and kept on failure.
	dest := t.TempDir()
	if err := s.Unpack(context.Background(), bad.Fingerprint, dest, shiftMap); err == nil {
		t.Fatal("hostile image unpacked")
	}
	if entries, err := os.ReadDir(dest); err != nil || len(entries) != 0 {
		t.Fatalf("volume after a failed unpack: %v entries, %v; want it kept and empty", len(entries), err)
	}
	if err := s.Unpack(context.Background(), good.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dest, "rootfs/a")) != "a" {
		t.Error("not unpacked into the existing directory")
	}

	// A volume with something in it is refused and left as it was.
	if err := s.Unpack(context.Background(), good.Fingerprint, dest, shiftMap); err == nil {
		t.Error("unpacked into a non-empty directory")
	}
	if readFile(t, filepath.Join(dest, "rootfs/a")) != "a" {
		t.Error("refused unpack changed the existing volume")
	}
}

func TestUnpackCancelledRemovesVolume(t *testing.T) {
	s := newStore(t)
	info := addUnified(t, s, unifiedImage(t, file("rootfs/a", "a")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(ctx, info.Fingerprint, dest, shiftMap); !errors.Is(err, context.Canceled) {
		t.Errorf("Unpack: %v, want context.Canceled", err)
	}
	assertAbsent(t, dest)
}

func TestUnpackRefusesImageWithoutMetadata(t *testing.T) {
	s := newStore(t)
	info := addUnified(t, s, unifiedImage(t, file("rootfs/a", "a")))
	// Swap the stored file for one without metadata.yaml, as a corrupted
	// or tampered store would have.
	if err := os.WriteFile(s.metaPath(info.Fingerprint), tarball(t, dir("rootfs/"), file("rootfs/a", "a")), 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "vol")
	err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap)
	if err == nil || !strings.Contains(err.Error(), "metadata.yaml") {
		t.Errorf("Unpack: %v, want an error about metadata.yaml", err)
	}
	assertAbsent(t, dest)
}

func TestUnpackSquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed (package squashfs-tools): cannot build a squashfs image")
	}
	src := filepath.Join(t.TempDir(), "src")
	mustRun := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustRun(os.MkdirAll(filepath.Join(src, "etc"), 0o755))
	mustRun(os.MkdirAll(filepath.Join(src, "var/www"), 0o750))
	mustRun(os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("ID=sq\n"), 0o644))
	mustRun(os.WriteFile(filepath.Join(src, "var/www/index.html"), []byte("<html>"), 0o640))
	mustRun(os.WriteFile(filepath.Join(src, "su"), []byte("ELF"), 0o755))
	mustRun(os.Symlink("/etc/os-release", filepath.Join(src, "link")))
	mustRun(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	mustRun(os.Lchown(filepath.Join(src, "var/www"), 33, 33))
	mustRun(os.Lchown(filepath.Join(src, "var/www/index.html"), 33, 33))
	mustRun(unix.Setxattr(filepath.Join(src, "su"), xattrCapability, []byte(capNetRaw()), 0))
	// os.Chmod ignores unix setuid bits in a plain number: use unix.Chmod.
	mustRun(unix.Chmod(filepath.Join(src, "su"), 0o4755))

	sqfs := filepath.Join(t.TempDir(), "rootfs.squashfs")
	if out, err := exec.Command("mksquashfs", src, sqfs, "-noappend", "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, out)
	}
	rootfs, err := os.ReadFile(sqfs)
	mustRun(err)
	meta := compress(t, formatXz, tarball(t, file("metadata.yaml", testMetadata)))

	s := newStore(t)
	info, err := s.Add(context.Background(), bytes.NewReader(meta), bytes.NewReader(rootfs), sha(meta, rootfs))
	if err != nil {
		t.Fatal(err)
	}
	if !info.Split || info.RootfsType != "squashfs" {
		t.Errorf("info = %+v, want a split squashfs image", info)
	}
	if again, err := s.Info(context.Background(), info.Fingerprint); err != nil || again.RootfsType != "squashfs" {
		t.Errorf("Info: %+v, %v", again, err)
	}

	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	r := filepath.Join(dest, "rootfs")
	if readFile(t, filepath.Join(r, "etc/os-release")) != "ID=sq\n" {
		t.Error("squashfs content not unpacked")
	}
	assertOwner(t, r, 1000000, 1000000)
	assertOwner(t, filepath.Join(r, "etc/os-release"), 1000000, 1000000)
	assertOwner(t, filepath.Join(r, "var/www"), 1000033, 1000033)
	assertOwner(t, filepath.Join(r, "var/www/index.html"), 1000033, 1000033)
	assertOwner(t, filepath.Join(r, "link"), 1000000, 1000000)
	if got := lstat(t, filepath.Join(r, "su")).Mode; got != unix.S_IFREG|0o4755 {
		t.Errorf("su mode %o after shifting, want setuid 4755", got)
	}
	if got := lstat(t, filepath.Join(r, "var/www")).Mode; got != unix.S_IFDIR|0o750 {
		t.Errorf("var/www mode %o", got)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(r, "su"), xattrCapability, buf); err != nil || n != vfsCapSize3 ||
		binary.LittleEndian.Uint32(buf[20:]) != 1000000 {
		t.Errorf("su capability after shifting: %x, %v; want revision 3 with rootid 1000000", buf[:max(n, 0)], err)
	}
	assertAbsent(t, filepath.Join(r, "fifo"))
	if readFile(t, filepath.Join(dest, "metadata.yaml")) != testMetadata {
		t.Error("metadata.yaml not unpacked")
	}
	// The temporary unsquashfs directory is gone.
	entries, _ := os.ReadDir(dest)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}
