// Package rootfs opens paths inside a container's root filesystem without
// ever leaving it.
//
// Every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT): "..",
// absolute symlinks and relative symlinks are all resolved as if the
// container root were "/", so nothing a container (or an image) puts in its
// filesystem can make the host follow a path outside of it.
package rootfs

import (
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is an open container root directory.
type Root struct {
	dir *os.File
}

// Open opens the directory that is the root of a container's filesystem.
func Open(dir string) (*Root, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open container root: %w", err)
	}
	return &Root{dir: f}, nil
}

// Close releases the root.
func (r *Root) Close() error { return r.dir.Close() }

// Clean returns p as a clean absolute path inside the container.
func Clean(p string) string { return path.Clean("/" + p) }

// OpenFile opens p inside the root. Symlinks are followed, but only inside
// the root; with noFollow the last component is not followed (O_NOFOLLOW).
func (r *Root) OpenFile(p string, flags int, mode os.FileMode) (*os.File, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode.Perm() | mode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	if flags&unix.O_CREAT == 0 && flags&unix.O_TMPFILE != unix.O_TMPFILE {
		how.Mode = 0
	}
	rel := strings.TrimPrefix(Clean(p), "/")
	if rel == "" {
		rel = "."
	}
	for {
		fd, err := unix.Openat2(int(r.dir.Fd()), rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: Clean(p), Err: err}
		}
		return os.NewFile(uintptr(fd), Clean(p)), nil
	}
}

// OpenParent opens the directory that holds p (resolved inside the root)
// and returns it with the last path component, for the *at system calls
// (mkdirat, symlinkat, unlinkat, fchownat) that act on a name in a directory.
func (r *Root) OpenParent(p string) (*os.File, string, error) {
	clean := Clean(p)
	if clean == "/" {
		return nil, "", fmt.Errorf("%s: the container root has no parent", clean)
	}
	dir, name := path.Split(clean)
	f, err := r.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, "", err
	}
	return f, name, nil
}
