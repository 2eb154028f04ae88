package images

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// unsquash unpacks a squashfs rootfs with unsquashfs into a temporary
// directory inside dest (so that moving it into place is a rename on the
// same filesystem, even when dest is a mounted volume), shifts owners and
// drops special files, then renames it to dest/rootfs.
//
// unsquashfs (>= 4.5.1, Debian 12 has it) refuses names with "/" or ".."
// and writing through symlinks it made itself; everything it makes stays
// under a 0700 directory that nothing else writes to until we are done.
func (x *extractor) unsquash(f *os.File) error {
	bin, err := exec.LookPath("unsquashfs")
	if err != nil {
		return fmt.Errorf("a squashfs image needs unsquashfs (package squashfs-tools): %w", err)
	}
	tmp, err := os.MkdirTemp(x.dest, ".unsquashfs-")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	target := filepath.Join(tmp, "rootfs")

	// The image is passed as an inherited descriptor: it is the file Unpack
	// opened, even if the image is deleted from the store meanwhile.
	cmd := exec.CommandContext(x.ctx, bin, "-no-progress", "-quiet", "-dest", target, "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{f}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if x.ctx.Err() != nil {
			return x.ctx.Err()
		}
		return fmt.Errorf("%w: unsquashfs: %v: %s", ErrInvalidImage, err, lastLines(out.String(), 5))
	}
	if err := x.shiftTree(target); err != nil {
		return err
	}
	if err := os.Rename(target, filepath.Join(x.dest, "rootfs")); err != nil {
		return fmt.Errorf("move rootfs into place: %w", err)
	}
	return nil
}

// shiftTree walks an unsquashed tree: it removes device nodes, fifos and
// sockets, and shifts every owner through the idmap, putting back what
// chown clears (setuid/setgid bits, file capabilities) and shifting ACLs.
// Paths are safe to use here: WalkDir never follows symlinks, and no one
// else writes into the tree.
func (x *extractor) shiftTree(dir string) error {
	shift := !x.m.IsPrivileged()
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := x.ctx.Err(); err != nil {
			return err
		}
		t := d.Type()
		if t&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			x.special++
			return os.Remove(p)
		}
		if !shift {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		isLink := t&fs.ModeSymlink != 0
		var saved map[string][]byte
		if !isLink {
			if saved, err = readIDXattrs(p); err != nil {
				return err
			}
		}
		uid, gid, err := x.shift(int64(st.Uid), int64(st.Gid))
		if err != nil {
			return err
		}
		if err := unix.Lchown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		if isLink {
			return nil
		}
		if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
		for name, v := range saved {
			v, err := shiftXattr(name, v, x.m)
			if err == nil {
				err = unix.Lsetxattr(p, name, v, 0)
			}
			if err != nil {
				x.xattrFailed++
			}
		}
		return nil
	})
}

// readIDXattrs reads the xattrs that hold ids (see shiftXattr).
func readIDXattrs(p string) (map[string][]byte, error) {
	var saved map[string][]byte
	for _, name := range []string{xattrCapability, xattrACLAccess, xattrACLDefault} {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.EOPNOTSUPP) {
			continue
		}
		if errors.Is(err, unix.ERANGE) {
			// Bigger than any capability; a very long ACL.
			if n, err = unix.Lgetxattr(p, name, nil); err == nil {
				buf = make([]byte, n)
				n, err = unix.Lgetxattr(p, name, buf)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", name, p, err)
		}
		if saved == nil {
			saved = map[string][]byte{}
		}
		saved[name] = buf[:n]
	}
	return saved, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
