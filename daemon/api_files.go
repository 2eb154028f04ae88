package daemon

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sys/unix"

	"cell/shared/idmap"
	"cell/shared/rootfs"
)

// fileHeader reads a file API header under LXD's name (X-LXD-uid) or
// Incus's (X-Incus-uid).
func fileHeader(r *http.Request, name string) string {
	if v := r.Header.Get("X-LXD-" + name); v != "" {
		return v
	}
	return r.Header.Get("X-Incus-" + name)
}

// openInstanceRoot opens an instance's root filesystem for the file API,
// with the id map its files currently have.
func (d *Daemon) openInstanceRoot(r *http.Request) (*rootfs.Root, idmap.Map, string, error) {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return nil, idmap.Map{}, "", err
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		return nil, idmap.Map{}, "", badRequest("missing path parameter")
	}
	var m idmap.Map
	if last := inst.Config[keyLastIdmap]; last != "" && last != "privileged" {
		if m, err = idmap.Parse(last); err != nil {
			return nil, m, "", err
		}
	}
	volume, _, err := d.volumePath(inst)
	if err != nil {
		return nil, m, "", err
	}
	root, err := rootfs.Open(filepath.Join(volume, "rootfs"))
	if err != nil {
		return nil, m, "", err
	}
	return root, m, rootfs.Clean(p), nil
}

// fileError maps a system call failure on a container path to an answer.
func fileError(p string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return notFound("%s: no such file or directory in the instance", p)
	case errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EISDIR), errors.Is(err, unix.ELOOP),
		errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST), errors.Is(err, unix.EXDEV):
		return badRequest("%s: %v", p, unwrapErrno(err))
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return &apiError{http.StatusInsufficientStorage, fmt.Sprintf("%s: %v", p, unwrapErrno(err))}
	}
	return fmt.Errorf("%s: %w", p, err)
}

func unwrapErrno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

func setFileHeaders(w http.ResponseWriter, st *unix.Stat_t, m idmap.Map, kind string) {
	w.Header().Set("X-LXD-uid", strconv.FormatInt(m.UnshiftUID(int64(st.Uid)), 10))
	w.Header().Set("X-LXD-gid", strconv.FormatInt(m.UnshiftGID(int64(st.Gid)), 10))
	w.Header().Set("X-LXD-mode", fmt.Sprintf("%04o", st.Mode&07777))
	w.Header().Set("X-LXD-type", kind)
}

func (d *Daemon) getInstanceFile(w http.ResponseWriter, r *http.Request) error {
	root, m, p, err := d.openInstanceRoot(r)
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := root.OpenFile(p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fileError(p, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fileError(p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil {
			return fileError(p, err)
		}
		setFileHeaders(w, &st, m, "symlink")
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(buf[:n])
		return nil
	case unix.S_IFDIR:
		dir, err := root.OpenFile(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fileError(p, err)
		}
		defer dir.Close()
		names, err := dir.Readdirnames(-1)
		if err != nil {
			return fileError(p, err)
		}
		setFileHeaders(w, &st, m, "directory")
		return syncResponse(w, names)
	case unix.S_IFREG:
		file, err := root.OpenFile(p, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fileError(p, err)
		}
		defer file.Close()
		setFileHeaders(w, &st, m, "file")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
		if r.Method == http.MethodHead {
			return nil
		}
		_, _ = io.Copy(w, file)
		return nil
	default:
		return badRequest("%s is not a regular file, directory or symlink", p)
	}
}

// fileOwner reads the uid, gid and mode headers; ok is false for the ones
// the client did not send.
func fileOwner(r *http.Request) (uid, gid int64, mode uint32, hasOwner, hasMode bool, err error) {
	u, g, md := fileHeader(r, "uid"), fileHeader(r, "gid"), fileHeader(r, "mode")
	uid, gid = 0, 0
	if u != "" || g != "" {
		hasOwner = true
		if u != "" {
			if uid, err = strconv.ParseInt(u, 10, 64); err != nil || uid < 0 {
				return 0, 0, 0, false, false, badRequest("X-LXD-uid %q is not a user id", u)
			}
		}
		if g != "" {
			if gid, err = strconv.ParseInt(g, 10, 64); err != nil || gid < 0 {
				return 0, 0, 0, false, false, badRequest("X-LXD-gid %q is not a group id", g)
			}
		}
	}
	if md != "" {
		v, perr := strconv.ParseUint(md, 8, 32)
		if perr != nil || v > 07777 {
			return 0, 0, 0, false, false, badRequest("X-LXD-mode %q is not an octal file mode", md)
		}
		mode, hasMode = uint32(v), true
	}
	return uid, gid, mode, hasOwner, hasMode, nil
}

// shiftOwner turns the container uid and gid of a push into host ids. Ids
// the instance does not have are refused: shifted, they would name a user
// of another range, or wrap around uid_t to the host's root (and 2^32-1 is
// -1, which chown takes as "leave the owner alone": root again), leaving a
// root-owned file, perhaps setuid, in the rootfs.
func shiftOwner(m idmap.Map, uid, gid int64) (int, int, error) {
	check := func(header string, id, size int64) error {
		if size == 0 {
			size = math.MaxUint32 // privileged: every uid_t but -1
		}
		if id < 0 || id >= size {
			return badRequest("%s %d is outside the instance's ids (0 to %d)", header, id, size-1)
		}
		return nil
	}
	if err := check("X-LXD-uid", uid, m.UID.Size); err != nil {
		return 0, 0, err
	}
	if err := check("X-LXD-gid", gid, m.GID.Size); err != nil {
		return 0, 0, err
	}
	return int(m.ShiftUID(uid)), int(m.ShiftGID(gid)), nil
}

// maxSymlinkTarget bounds a pushed symlink's target.
const maxSymlinkTarget = 4096

func (d *Daemon) postInstanceFile(w http.ResponseWriter, r *http.Request) error {
	root, m, p, err := d.openInstanceRoot(r)
	if err != nil {
		return err
	}
	defer root.Close()
	if p == "/" {
		return badRequest("cannot write the instance's root directory")
	}
	uid, gid, mode, hasOwner, hasMode, err := fileOwner(r)
	if err != nil {
		return err
	}
	hostUID, hostGID, err := shiftOwner(m, uid, gid)
	if err != nil {
		return err
	}
	switch kind := fileHeader(r, "type"); kind {
	case "", "file":
		write := fileHeader(r, "write")
		if write != "" && write != "overwrite" && write != "append" {
			return badRequest("X-LXD-write %q: use overwrite or append", write)
		}
		return pushFile(root, p, r.Body, write == "append", hostUID, hostGID, mode, hasOwner, hasMode, w)
	case "directory":
		if !hasMode {
			mode = 0o755
		}
		parent, name, err := root.OpenParent(p)
		if err != nil {
			return fileError(p, err)
		}
		defer parent.Close()
		if err := unix.Mkdirat(int(parent.Fd()), name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			return fileError(p, err)
		}
		dir, err := root.OpenFile(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return fileError(p, err)
		}
		defer dir.Close()
		if err := errors.Join(dir.Chown(hostUID, hostGID), unix.Fchmod(int(dir.Fd()), mode)); err != nil {
			return fileError(p, err)
		}
		return syncResponse(w, nil)
	case "symlink":
		target, err := io.ReadAll(io.LimitReader(r.Body, maxSymlinkTarget+1))
		if err != nil {
			return badRequest("read symlink target: %v", err)
		}
		if len(target) == 0 || len(target) > maxSymlinkTarget {
			return badRequest("symlink target must be 1 to %d bytes", maxSymlinkTarget)
		}
		parent, name, err := root.OpenParent(p)
		if err != nil {
			return fileError(p, err)
		}
		defer parent.Close()
		// Replace an existing file or link; never a directory.
		if err := unix.Unlinkat(int(parent.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fileError(p, err)
		}
		if err := unix.Symlinkat(string(target), int(parent.Fd()), name); err != nil {
			return fileError(p, err)
		}
		if err := unix.Fchownat(int(parent.Fd()), name, hostUID, hostGID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fileError(p, err)
		}
		return syncResponse(w, nil)
	default:
		return badRequest("X-LXD-type %q: use file, directory or symlink", kind)
	}
}

// pushFile writes a regular file. A symlink on the way (or at the end) is
// followed only inside the container; a device node or fifo is refused
// rather than opened, since opening one can act on the host's hardware.
func pushFile(root *rootfs.Root, p string, body io.Reader, appendTo bool, uid, gid int, mode uint32, hasOwner, hasMode bool, w http.ResponseWriter) error {
	existing, err := root.OpenFile(p, unix.O_PATH, 0)
	created := errors.Is(err, os.ErrNotExist)
	if err == nil {
		var st unix.Stat_t
		err = unix.Fstat(int(existing.Fd()), &st)
		existing.Close()
		if err != nil {
			return fileError(p, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return badRequest("%s exists and is not a regular file", p)
		}
	} else if !created {
		return fileError(p, err)
	}
	if !hasMode {
		mode = 0o644
	}
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NONBLOCK
	if appendTo {
		flags |= unix.O_APPEND
	} else {
		flags |= unix.O_TRUNC
	}
	f, err := root.OpenFile(p, flags, os.FileMode(mode))
	if err != nil {
		return fileError(p, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return badRequest("%s is not a regular file", p)
	}
	if created || hasOwner {
		if err := f.Chown(uid, gid); err != nil {
			return fileError(p, err)
		}
	}
	if created || hasMode {
		// After chown, which clears setuid bits.
		if err := unix.Fchmod(int(f.Fd()), mode); err != nil {
			return fileError(p, err)
		}
	}
	if _, err := io.Copy(f, body); err != nil {
		if created {
			if parent, name, perr := root.OpenParent(p); perr == nil {
				_ = unix.Unlinkat(int(parent.Fd()), name, 0)
				parent.Close()
			}
		}
		return fileError(p, err)
	}
	if err := f.Close(); err != nil {
		return fileError(p, err)
	}
	return syncResponse(w, nil)
}

func (d *Daemon) deleteInstanceFile(w http.ResponseWriter, r *http.Request) error {
	root, _, p, err := d.openInstanceRoot(r)
	if err != nil {
		return err
	}
	defer root.Close()
	if p == "/" {
		return badRequest("cannot delete the instance's root directory")
	}
	parent, name, err := root.OpenParent(p)
	if err != nil {
		return fileError(p, err)
	}
	defer parent.Close()
	err = unix.Unlinkat(int(parent.Fd()), name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(int(parent.Fd()), name, unix.AT_REMOVEDIR)
	}
	if err != nil {
		return fileError(p, err)
	}
	return syncResponse(w, nil)
}
