package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"cell/shared/idmap"
	"cell/shared/rootfs"
)

// Unpack lays out an instance volume from a stored image:
// dest/metadata.yaml, dest/templates/... and dest/rootfs/....
//
// Owners in the rootfs are shifted through m (a zero Map shifts nothing);
// modes including setuid/setgid/sticky, mtimes, symlinks, hard links and
// xattrs are kept. metadata.yaml and templates/ stay owned by the host's
// root: the daemon reads them, the container never sees them.
//
// Every entry is created relative to a directory opened with
// RESOLVE_IN_ROOT, so neither ".." nor a symlink planted by an earlier
// entry can send a write outside dest. Entries with absolute or ".." paths,
// and hard links to outside the rootfs, make the whole image refused.
// Device nodes and fifos are skipped (lxc makes /dev).
//
// dest must not exist or be an empty directory. On error, what Unpack
// created is removed: dest itself if it made it, else dest's contents.
func (s *Store) Unpack(ctx context.Context, fingerprint, dest string, m idmap.Map) (err error) {
	meta, rootfsFile, err := s.Open(fingerprint)
	if err != nil {
		return err
	}
	defer meta.Close()
	if rootfsFile != nil {
		defer rootfsFile.Close()
	}

	created, err := prepareDest(dest)
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		if rmErr := clearDest(dest, created); rmErr != nil {
			slog.Error("remove partly unpacked image", "dest", dest, "err", rmErr)
		}
	}()

	start := time.Now()
	x, err := newExtractor(ctx, dest, m)
	if err != nil {
		return err
	}
	defer x.close()

	if rootfsFile == nil {
		err = x.unified(meta)
	} else {
		err = x.split(meta, rootfsFile)
	}
	if err != nil {
		return fmt.Errorf("unpack image %s: %w", fingerprint, err)
	}
	// The store checked this when the image was added; checking again
	// costs nothing and catches a store file changed behind our back.
	if _, err := ReadVolumeMetadata(dest); err != nil {
		return fmt.Errorf("unpack image %s: %w", fingerprint, err)
	}
	slog.Debug("image unpacked", "fingerprint", fingerprint, "dest", dest, "duration", time.Since(start))
	return nil
}

// prepareDest makes dest, or accepts it if it is an empty directory (a
// storage driver may have created it as a subvolume or dataset).
func prepareDest(dest string) (created bool, err error) {
	err = os.Mkdir(dest, 0o711)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("create instance volume: %w", err)
	}
	st, err := os.Lstat(dest)
	if err != nil {
		return false, fmt.Errorf("instance volume: %w", err)
	}
	if !st.IsDir() {
		return false, fmt.Errorf("instance volume %s is not a directory", dest)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return false, fmt.Errorf("instance volume: %w", err)
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("instance volume %s is not empty", dest)
	}
	return false, nil
}

// clearDest undoes a failed unpack. os.RemoveAll never follows symlinks.
func clearDest(dest string, created bool) error {
	if created {
		return os.RemoveAll(dest)
	}
	entries, err := os.ReadDir(dest)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dest, e.Name())))
	}
	return errors.Join(errs...)
}

// area is one part of the volume that tar entries are written into.
type area struct {
	root *rootfs.Root
	// rootfs is true for the container's filesystem: owners are shifted,
	// and symlinks, hard links and special mode bits are allowed. The
	// other area (metadata.yaml, templates/) only gets plain files and
	// directories owned by the host's root.
	rootfs bool
}

// extractor writes image entries into one instance volume.
type extractor struct {
	ctx  context.Context
	dest string
	m    idmap.Map
	vol  area // dest
	fs   area // dest/rootfs; root is nil until the rootfs dir exists
	buf  []byte

	dirTimes []dirTime
	// Counts reported once at the end rather than once per entry.
	special     int
	xattrFailed int
}

type dirTime struct {
	a            area
	rel          string
	atime, mtime time.Time
}

func newExtractor(ctx context.Context, dest string, m idmap.Map) (*extractor, error) {
	vol, err := rootfs.Open(dest)
	if err != nil {
		return nil, err
	}
	return &extractor{
		ctx:  ctx,
		dest: dest,
		m:    m,
		vol:  area{root: vol},
		fs:   area{rootfs: true},
		buf:  make([]byte, readBufSize),
	}, nil
}

func (x *extractor) close() {
	x.vol.root.Close()
	if x.fs.root != nil {
		x.fs.root.Close()
	}
}

// makeRootfs creates dest/rootfs, owned by the container's root, and holds
// it open: every later rootfs entry resolves against this very directory.
func (x *extractor) makeRootfs() error {
	uid, gid, err := x.shiftedRoot()
	if err != nil {
		return err
	}
	d, created, err := mkdirAt(x.vol.root, "rootfs")
	if err != nil {
		return fmt.Errorf("create rootfs: %w", err)
	}
	defer d.Close()
	if !created {
		return fmt.Errorf("%w: rootfs already exists in the volume", ErrInvalidImage)
	}
	if err := unix.Fchown(int(d.Fd()), uid, gid); err != nil {
		return fmt.Errorf("chown rootfs: %w", err)
	}
	if err := unix.Fchmod(int(d.Fd()), 0o755); err != nil {
		return fmt.Errorf("chmod rootfs: %w", err)
	}
	x.fs.root, err = rootfs.Open(filepath.Join(x.dest, "rootfs"))
	return err
}

func (x *extractor) unified(f *os.File) error {
	if err := x.makeRootfs(); err != nil {
		return err
	}
	if err := x.extractTar(f, layoutUnified); err != nil {
		return err
	}
	return x.finish()
}

func (x *extractor) split(meta, rootfsFile *os.File) error {
	if err := x.extractTar(meta, layoutMetadata); err != nil {
		return fmt.Errorf("metadata tarball: %w", err)
	}
	format, err := detectFormat(rootfsFile)
	if err != nil {
		return err
	}
	if format == formatSquashfs {
		err = x.unsquash(rootfsFile)
	} else if err = x.makeRootfs(); err == nil {
		err = x.extractTar(rootfsFile, layoutRootfs)
	}
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return x.finish()
}

// layout says where the entries of a tarball go.
type layout int

const (
	layoutUnified  layout = iota // metadata.yaml, templates/..., rootfs/...
	layoutMetadata               // split metadata: metadata.yaml, templates/...
	layoutRootfs                 // split rootfs: the container's / at top level
)

// cleanName turns a tar entry name into a relative slash path without "."
// components ("" is the top directory). Absolute names and ".." are
// refused outright: no legitimate image has them, so they mean an attack.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute path %q in image", ErrInvalidImage, name)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: path %q in image leaves its directory", ErrInvalidImage, name)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "/"), nil
}

// route says which area a cleaned entry name belongs to and its path in
// there; ok is false for entries that are not part of an image's layout.
func (x *extractor) route(name string, l layout) (a area, rel string, ok bool) {
	if l == layoutRootfs {
		return x.fs, name, true
	}
	top, rest, _ := strings.Cut(name, "/")
	switch {
	case name == "metadata.yaml" || top == "templates":
		return x.vol, name, true
	case top == "rootfs" && l == layoutUnified:
		return x.fs, rest, true
	}
	return area{}, "", false
}

func (x *extractor) extractTar(f *os.File, l layout) error {
	stream, err := openTarStream(x.ctx, f)
	if err != nil {
		return err
	}
	defer stream.Close()
	tr := tar.NewReader(stream)
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if x.ctx.Err() != nil {
				return x.ctx.Err()
			}
			return fmt.Errorf("%w: read tarball: %v", ErrInvalidImage, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		a, rel, ok := x.route(name, l)
		if !ok {
			slog.Debug("image entry outside the image layout skipped", "name", hdr.Name)
			continue
		}
		if err := x.entry(a, rel, hdr, tr, l); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

func (x *extractor) entry(a area, rel string, hdr *tar.Header, r io.Reader, l layout) error {
	if rel == "" && hdr.Typeflag != tar.TypeDir {
		return fmt.Errorf("%w: the rootfs must be a directory", ErrInvalidImage)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(a, rel, hdr)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return x.file(a, rel, hdr, r)
	case tar.TypeSymlink, tar.TypeLink:
		if !a.rootfs {
			slog.Debug("link outside the image rootfs skipped", "name", hdr.Name)
			return nil
		}
		if hdr.Typeflag == tar.TypeSymlink {
			return x.symlink(a, rel, hdr)
		}
		return x.hardlink(a, rel, hdr, l)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		x.special++
		return nil
	}
	slog.Debug("image entry of unknown type skipped", "name", hdr.Name, "type", hdr.Typeflag)
	return nil
}

// owner is the host uid/gid for an entry.
func (x *extractor) owner(a area, hdr *tar.Header) (int, int, error) {
	if !a.rootfs {
		return 0, 0, nil
	}
	return x.shift(int64(hdr.Uid), int64(hdr.Gid))
}

func (x *extractor) shiftedRoot() (int, int, error) { return x.shift(0, 0) }

func (x *extractor) shift(uid, gid int64) (int, int, error) {
	u, g := x.m.ShiftUID(uid), x.m.ShiftGID(gid)
	// -1 means "leave unchanged" to chown: never let an id become it.
	if uid < 0 || gid < 0 || u < 0 || g < 0 || u >= math.MaxUint32 || g >= math.MaxUint32 {
		return 0, 0, fmt.Errorf("%w: owner %d:%d cannot be mapped", ErrInvalidImage, uid, gid)
	}
	return int(u), int(g), nil
}

// mode is the permission part of an entry's mode. Only the rootfs may
// have setuid/setgid files: the rest belongs to the daemon.
func mode(a area, hdr *tar.Header) uint32 {
	m := uint32(hdr.Mode) & 0o7777
	if !a.rootfs {
		m &^= unix.S_ISUID | unix.S_ISGID | unix.S_ISVTX
	}
	return m
}

func (x *extractor) dir(a area, rel string, hdr *tar.Header) error {
	var d *os.File
	var err error
	if rel == "" {
		d, err = a.root.OpenFile(".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	} else {
		d, err = x.mkdir(a, rel)
	}
	if err != nil {
		return err
	}
	defer d.Close()
	if err := x.setAttrs(a, d, hdr); err != nil {
		return err
	}
	// A directory's mtime changes as entries are made in it: set it last.
	x.dirTimes = append(x.dirTimes, dirTime{a: a, rel: rel, atime: hdr.AccessTime, mtime: hdr.ModTime})
	return nil
}

// mkdir makes the directory rel (replacing a non-directory that an earlier
// entry left there, as tar does) and opens it.
func (x *extractor) mkdir(a area, rel string) (*os.File, error) {
	parent, name, err := x.openParent(a, rel)
	if err != nil {
		return nil, err
	}
	defer parent.Close()
	d, _, err := mkdirIn(parent, name, true)
	return d, err
}

func (x *extractor) file(a area, rel string, hdr *tar.Header, r io.Reader) error {
	parent, name, err := x.openParent(a, rel)
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(pfd, name, flags, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if err = removeEntry(pfd, name); err == nil {
			fd, err = unix.Openat(pfd, name, flags, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	f := os.NewFile(uintptr(fd), rel)
	// struct{io.Writer} hides File.ReadFrom, which would allocate its own
	// buffer for every file instead of using x.buf.
	if _, err := io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{x.ctx, r}, x.buf); err != nil {
		f.Close()
		return fmt.Errorf("write file: %w", err)
	}
	if err := x.setAttrs(a, f, hdr); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write file: %w", err)
	}
	return setTimes(pfd, name, hdr.AccessTime, hdr.ModTime)
}

func (x *extractor) symlink(a area, rel string, hdr *tar.Header) error {
	parent, name, err := x.openParent(a, rel)
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	// The target is stored as is: it is only ever resolved inside the
	// container, or by us with RESOLVE_IN_ROOT.
	err = unix.Symlinkat(hdr.Linkname, pfd, name)
	if errors.Is(err, unix.EEXIST) {
		if err = removeEntry(pfd, name); err == nil {
			err = unix.Symlinkat(hdr.Linkname, pfd, name)
		}
	}
	if err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	uid, gid, err := x.owner(a, hdr)
	if err != nil {
		return err
	}
	if err := unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown symlink: %w", err)
	}
	return setTimes(pfd, name, hdr.AccessTime, hdr.ModTime)
}

// hardlink links rel to an entry already unpacked in the same rootfs. The
// target is opened with RESOLVE_IN_ROOT and linked by file descriptor, so
// what gets linked is whatever the name means inside the rootfs, never a
// host file.
func (x *extractor) hardlink(a area, rel string, hdr *tar.Header, l layout) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	ta, trel, ok := x.route(target, l)
	if !ok || !ta.rootfs || trel == "" {
		return fmt.Errorf("%w: hard link to %q, outside the rootfs", ErrInvalidImage, hdr.Linkname)
	}
	t, err := a.root.OpenFile(trel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("%w: hard link target %q: %v", ErrInvalidImage, hdr.Linkname, err)
	}
	defer t.Close()
	parent, name, err := x.openParent(a, rel)
	if err != nil {
		return err
	}
	defer parent.Close()
	pfd := int(parent.Fd())
	err = unix.Linkat(int(t.Fd()), "", pfd, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EEXIST) {
		if err = removeEntry(pfd, name); err == nil {
			err = unix.Linkat(int(t.Fd()), "", pfd, name, unix.AT_EMPTY_PATH)
		}
	}
	if err != nil {
		return fmt.Errorf("create hard link: %w", err)
	}
	return nil
}

// setAttrs sets owner, mode and xattrs on an open file or directory, in
// that order: chown clears setuid/setgid and security.capability.
func (x *extractor) setAttrs(a area, f *os.File, hdr *tar.Header) error {
	fd := int(f.Fd())
	if a.rootfs {
		uid, gid, err := x.owner(a, hdr)
		if err != nil {
			return err
		}
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, mode(a, hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if !a.rootfs {
		return nil
	}
	for key, value := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(key, "SCHILY.xattr.")
		if !ok {
			continue
		}
		v, err := shiftXattr(name, []byte(value), x.m)
		if err == nil {
			err = unix.Fsetxattr(fd, name, v, 0)
		}
		if err != nil {
			// Not every filesystem takes every xattr (security.selinux,
			// trusted.*): keep going, report once at the end.
			x.xattrFailed++
			slog.Debug("image xattr not set", "name", hdr.Name, "xattr", name, "err", err)
		}
	}
	return nil
}

func setTimes(dirfd int, name string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	// Not UnixNano: it overflows for dates a tarball can hold.
	ts := []unix.Timespec{
		{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.UtimesNanoAt(dirfd, name, ts, flags); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// openParent opens the directory that will hold rel, creating missing
// directories on the way (tarballs may omit them).
func (x *extractor) openParent(a area, rel string) (*os.File, string, error) {
	parent, name, err := a.root.OpenParent(rel)
	if errors.Is(err, unix.ENOENT) {
		if err := x.mkdirAll(a, path.Dir(rel)); err != nil {
			return nil, "", err
		}
		parent, name, err = a.root.OpenParent(rel)
	}
	if err != nil {
		return nil, "", fmt.Errorf("open parent directory: %w", err)
	}
	return parent, name, nil
}

// mkdirAll makes the missing directories of rel, owned by the area's root
// with mode 0755 (what tar does for directories it has no entry for).
func (x *extractor) mkdirAll(a area, rel string) error {
	uid, gid := 0, 0
	if a.rootfs {
		var err error
		if uid, gid, err = x.shiftedRoot(); err != nil {
			return err
		}
	}
	return mkdirAllIn(a.root, rootfs.Clean(rel), uid, gid)
}

// mkdirAt makes the directory name directly in root.
func mkdirAt(root *rootfs.Root, name string) (*os.File, bool, error) {
	top, err := root.OpenFile(".", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, false, err
	}
	defer top.Close()
	return mkdirIn(top, name, true)
}

// mkdirIn makes directory name in parent, mode 0700 until the caller sets
// the real one. If name exists: with replace, a non-directory is removed
// first; without, the existing entry is left alone and (nil, false, nil)
// is returned. The directory is opened with O_NOFOLLOW, so what is
// returned is the directory itself.
func mkdirIn(parent *os.File, name string, replace bool) (*os.File, bool, error) {
	pfd := int(parent.Fd())
	created := true
	err := unix.Mkdirat(pfd, name, 0o700)
	if errors.Is(err, unix.EEXIST) {
		if !replace {
			return nil, false, nil
		}
		created = false
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err = unix.Unlinkat(pfd, name, 0); err == nil {
				err = unix.Mkdirat(pfd, name, 0o700)
				created = true
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("create directory: %w", err)
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("open directory: %w", err)
	}
	return os.NewFile(uintptr(fd), name), created, nil
}

// removeEntry removes what an earlier entry put at name, so that a later
// entry of the same name replaces it (tar semantics). A directory is only
// removed if empty.
func removeEntry(dirfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	flags := 0
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(dirfd, name, flags); err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return nil
}

// finish sets directory times (deepest last-made first does not matter:
// setting a child's times does not touch its parent) and reports skipped
// entries.
func (x *extractor) finish() error {
	for i := len(x.dirTimes) - 1; i >= 0; i-- {
		d := x.dirTimes[i]
		if err := x.ctx.Err(); err != nil {
			return err
		}
		var err error
		if d.rel == "" {
			var f *os.File
			if f, err = d.a.root.OpenFile(".", unix.O_PATH|unix.O_DIRECTORY, 0); err == nil {
				err = setTimes(int(f.Fd()), "", d.atime, d.mtime)
				f.Close()
			}
		} else {
			var parent *os.File
			var name string
			if parent, name, err = d.a.root.OpenParent(d.rel); err == nil {
				err = setTimes(int(parent.Fd()), name, d.atime, d.mtime)
				parent.Close()
			}
		}
		// A directory that a later entry replaced is not an error.
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("%s: %w", d.rel, err)
		}
	}
	x.dirTimes = nil
	if x.special > 0 {
		slog.Warn("image device nodes, fifos and sockets skipped: lxc creates /dev", "count", x.special)
	}
	if x.xattrFailed > 0 {
		slog.Warn("some image xattrs could not be set", "count", x.xattrFailed)
	}
	return nil
}
