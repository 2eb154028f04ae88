package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"cell/shared/api"
	"cell/shared/idmap"
	"cell/shared/rootfs"
)

// Compressions Pack can write, as LXD names them.
var Compressions = []string{"gzip", "xz", "zstd", "none"}

// PackOptions describe an image made from an instance volume.
type PackOptions struct {
	// Metadata becomes metadata.yaml. Its templates must exist in the
	// volume's templates directory, which is copied.
	Metadata api.ImageMetadata
	// Idmap is the map the volume's files are shifted with; the tarball
	// holds container ids (root is 0), as an image does.
	Idmap idmap.Map
	// Compression is one of Compressions ("" is gzip).
	Compression string
	// Progress, when not nil, is called with the bytes of file contents
	// packed so far.
	Progress func(done int64)
}

// Pack writes a unified image tarball of the instance volume dir (the
// layout Unpack makes: rootfs/ and templates/) to w.
//
// The volume is the container's, so everything in it is hostile: the walk
// never follows a symlink (a symlink is stored as one), files are opened
// inside the volume with openat2(RESOLVE_IN_ROOT) and O_NOFOLLOW, and only
// regular files are read: device nodes and fifos are stored as such,
// sockets are left out. Ids the map does not cover become 0 (root), as the
// container saw them ("nobody" would be a lie about files it cannot own).
func Pack(ctx context.Context, w io.Writer, dir string, opts PackOptions) error {
	cw, err := compressor(w, opts.Compression)
	if err != nil {
		return err
	}
	root, err := rootfs.Open(dir)
	if err != nil {
		return fmt.Errorf("open instance volume: %w", err)
	}
	defer root.Close()
	p := &packer{ctx: ctx, tw: tar.NewWriter(cw), root: root, m: opts.Idmap, progress: opts.Progress,
		links: map[[2]uint64]string{}}

	md, err := yaml.Marshal(opts.Metadata)
	if err != nil {
		return fmt.Errorf("encode metadata.yaml: %w", err)
	}
	now := time.Now()
	if err := p.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "metadata.yaml", Mode: 0o644,
		Size: int64(len(md)), ModTime: now, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("write metadata.yaml: %w", err)
	}
	if _, err := p.tw.Write(md); err != nil {
		return fmt.Errorf("write metadata.yaml: %w", err)
	}
	if len(opts.Metadata.Templates) > 0 {
		if err := p.walk("templates"); err != nil {
			return err
		}
	}
	if err := p.walk("rootfs"); err != nil {
		return err
	}
	if err := p.tw.Close(); err != nil {
		return fmt.Errorf("finish image tarball: %w", err)
	}
	return cw.Close()
}

// nopCloser is an uncompressed stream: closing it must not close w.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func compressor(w io.Writer, name string) (io.WriteCloser, error) {
	switch name {
	case "", "gzip":
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case "xz":
		return xz.NewWriter(w)
	case "zstd":
		return zstd.NewWriter(w)
	case "none":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("%w: compression %q is not supported (use one of %v)", ErrInvalidImage, name, Compressions)
}

type packer struct {
	ctx      context.Context
	tw       *tar.Writer
	root     *rootfs.Root
	m        idmap.Map
	progress func(int64)
	done     int64
	// links maps a (device, inode) with several names to the first name
	// packed, for hard links.
	links map[[2]uint64]string
}

// walk packs the tree at rel (relative to the volume), in name order.
func (p *packer) walk(rel string) error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	// An O_PATH handle on the entry itself (never what a symlink points
	// to) gives its attributes.
	f, err := p.root.OpenFile(rel, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) && rel == "templates" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pack %s: %w", rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("pack %s: %w", rel, err)
	}
	err = p.entry(rel, &st, f)
	f.Close()
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	names, err := p.list(rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := p.walk(path.Join(rel, n)); err != nil {
			return err
		}
	}
	return nil
}

func (p *packer) list(rel string) ([]string, error) {
	f, err := p.root.OpenFile(rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", rel, err)
	}
	sort.Strings(names)
	return names, nil
}

func (p *packer) id(v int64, unshift func(int64) int64) int {
	if c := unshift(v); c >= 0 {
		return int(c)
	}
	return 0
}

// xattrs reads the extended attributes of a file or directory (through
// its O_PATH handle's /proc/self/fd link, which names that inode and
// nothing else) as tar PAX records, unshifted.
func (p *packer) xattrs(f *os.File) (map[string]string, error) {
	link := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	buf := make([]byte, 64<<10)
	n, err := unix.Listxattr(link, buf)
	if errors.Is(err, unix.ENOTSUP) || (err == nil && n == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs: %w", err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		val := make([]byte, 64<<10)
		vn, err := unix.Getxattr(link, name, val)
		if err != nil {
			return nil, fmt.Errorf("read xattr %s: %w", name, err)
		}
		v, err := unshiftXattr(name, val[:vn], p.m)
		if err != nil {
			return nil, fmt.Errorf("xattr %s: %w", name, err)
		}
		out["SCHILY.xattr."+name] = string(v)
	}
	return out, nil
}

// entry writes the header (and the contents) of one entry; f is its
// O_PATH handle.
func (p *packer) entry(rel string, st *unix.Stat_t, f *os.File) error {
	hdr := &tar.Header{
		Name: rel, Mode: int64(st.Mode & 0o7777), Format: tar.FormatPAX,
		Uid: p.id(int64(st.Uid), p.m.UnshiftUID), Gid: p.id(int64(st.Gid), p.m.UnshiftGID),
		ModTime: time.Unix(st.Mtim.Unix()),
	}
	key := [2]uint64{st.Dev, st.Ino}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFREG:
		if first, ok := p.links[key]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			break
		}
		if st.Nlink > 1 {
			p.links[key] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		target, err := p.readlink(rel)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets are recreated by whoever listens
	}
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeDir {
		var err error
		if hdr.PAXRecords, err = p.xattrs(f); err != nil {
			return fmt.Errorf("pack %s: %w", rel, err)
		}
	}
	if err := p.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("pack %s: %w", rel, err)
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
		return p.contents(rel, hdr.Size)
	}
	return nil
}

func (p *packer) readlink(rel string) (string, error) {
	parent, name, err := p.root.OpenParent(rel)
	if err != nil {
		return "", fmt.Errorf("pack %s: %w", rel, err)
	}
	defer parent.Close()
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(int(parent.Fd()), name, buf)
	if err != nil {
		return "", fmt.Errorf("pack %s: read link: %w", rel, err)
	}
	return string(buf[:n]), nil
}

// contents copies a regular file, exactly size bytes: a file that changed
// size since the stat is an error rather than a corrupt tarball.
func (p *packer) contents(rel string, size int64) error {
	f, err := p.root.OpenFile(rel, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("pack %s: %w", rel, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("pack %s: no longer a regular file", rel)
	}
	n, err := io.Copy(p.tw, io.LimitReader(ctxReader{p.ctx, f}, size))
	if err == nil && n != size {
		err = fmt.Errorf("file shrank from %d to %d bytes while packing", size, n)
	}
	if err != nil {
		return fmt.Errorf("pack %s: %w", rel, err)
	}
	p.done += n
	if p.progress != nil {
		p.progress(p.done)
	}
	return nil
}

// VolumeTemplates reads the templates section of a volume's metadata.yaml
// (none when there is no such file), to carry them into a published image.
func VolumeTemplates(dir string) (map[string]*api.ImageMetadataTemplate, error) {
	md, err := ReadVolumeMetadata(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return md.Templates, nil
}
