package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"cell/shared/api"
)

// Store keeps image files under one directory: <fingerprint> is the unified
// tarball or the split metadata tarball, <fingerprint>.rootfs the split
// rootfs (tarball or squashfs). Uploads land in hidden temporary files in the
// same directory first, so that putting them in place is a rename.
type Store struct {
	dir string
	// mu makes "is it there yet? then rename" atomic between concurrent
	// uploads of the same image.
	mu sync.Mutex
}

// Info describes a stored image.
type Info struct {
	Fingerprint string
	// Size is the total size of the image files, as LXD reports it.
	Size int64
	// Split is true for a metadata tarball plus a separate rootfs file.
	Split bool
	// RootfsType is "tar" or "squashfs" (a unified image is "tar").
	RootfsType string
	Metadata   api.ImageMetadata
}

const (
	rootfsSuffix = ".rootfs"
	tmpPrefix    = ".upload-"
)

// NewStore opens (and creates if needed) an image store in dir. Temporary
// files that a crash left behind are removed.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create image store: %w", err)
	}
	stale, err := filepath.Glob(filepath.Join(dir, tmpPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("list image store: %w", err)
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove stale upload: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

// validFingerprint accepts only a full lower-case sha256 in hex. It is the
// only thing that keeps a fingerprint from the API from being a path.
func validFingerprint(fp string) bool {
	if len(fp) != sha256.Size*2 {
		return false
	}
	for _, c := range fp {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (s *Store) metaPath(fp string) string   { return filepath.Join(s.dir, fp) }
func (s *Store) rootfsPath(fp string) string { return filepath.Join(s.dir, fp+rootfsSuffix) }

// Add streams an upload into the store. meta is the unified tarball, or the
// metadata tarball of a split image whose rootfs (tarball or squashfs) is
// rootfs; rootfs is nil for a unified image. expectFingerprint, if not
// empty, is what the client claimed: an upload that hashes differently is
// refused. The image is checked (metadata.yaml parses and names an
// architecture) before it appears in the store, and on any error, including
// a cancelled ctx, nothing of it is left behind.
func (s *Store) Add(ctx context.Context, meta io.Reader, rootfs io.Reader, expectFingerprint string) (Info, error) {
	expect := strings.ToLower(strings.TrimSpace(expectFingerprint))
	if expect != "" && !validFingerprint(expect) {
		return Info{}, fmt.Errorf("%w: expected fingerprint %q is not a sha256 in hex", ErrFingerprintMismatch, expectFingerprint)
	}

	var tmps []*os.File
	defer func() {
		// Renamed files have already been taken out of this list.
		for _, f := range tmps {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	h := sha256.New()
	metaTmp, metaSize, err := s.receive(ctx, meta, h)
	if err != nil {
		return Info{}, fmt.Errorf("receive image: %w", err)
	}
	tmps = append(tmps, metaTmp)
	info := Info{Size: metaSize, RootfsType: formatTar}
	var rootfsTmp *os.File
	if rootfs != nil {
		var rootfsSize int64
		rootfsTmp, rootfsSize, err = s.receive(ctx, rootfs, h)
		if err != nil {
			return Info{}, fmt.Errorf("receive image rootfs: %w", err)
		}
		tmps = append(tmps, rootfsTmp)
		info.Size += rootfsSize
		info.Split = true
	}
	info.Fingerprint = hex.EncodeToString(h.Sum(nil))
	if expect != "" && expect != info.Fingerprint {
		return Info{}, fmt.Errorf("%w: the upload's sha256 is %s, not %s", ErrFingerprintMismatch, info.Fingerprint, expect)
	}

	info.Metadata, err = findMetadata(ctx, metaTmp)
	if err != nil {
		return Info{}, err
	}
	if rootfsTmp != nil {
		if info.RootfsType, err = checkRootfs(ctx, rootfsTmp); err != nil {
			return Info{}, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	fp := info.Fingerprint
	if _, err := os.Lstat(s.metaPath(fp)); err == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrExists, fp)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("check image store: %w", err)
	}
	// The metadata file is what makes an image exist, so it goes last.
	if rootfsTmp != nil {
		if err := os.Rename(rootfsTmp.Name(), s.rootfsPath(fp)); err != nil {
			return Info{}, fmt.Errorf("store image rootfs: %w", err)
		}
		tmps = tmps[:1]
	}
	if err := os.Rename(metaTmp.Name(), s.metaPath(fp)); err != nil {
		if rootfsTmp != nil {
			os.Remove(s.rootfsPath(fp))
		}
		return Info{}, fmt.Errorf("store image: %w", err)
	}
	tmps = nil
	metaTmp.Close()
	if rootfsTmp != nil {
		rootfsTmp.Close()
	}
	syncDir(s.dir)
	slog.Debug("image added", "fingerprint", fp, "size", info.Size, "split", info.Split)
	return info, nil
}

// TempFile creates a temporary file in the store's directory, for a
// download that is checked before it is added. NewStore removes such files
// that a crash left behind; the caller removes it otherwise.
func (s *Store) TempFile(name string) (*os.File, error) {
	f, err := os.CreateTemp(s.dir, tmpPrefix+name+"-*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	return f, nil
}

// receive copies r into a new temporary file of the store, feeding h too.
// The file is returned open and synced, for checking before the rename.
func (s *Store) receive(ctx context.Context, r io.Reader, h hash.Hash) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return nil, 0, fmt.Errorf("create temporary file: %w", err)
	}
	buf := make([]byte, readBufSize)
	// struct{io.Writer} hides the file's ReadFrom, which would bypass buf.
	n, err := io.CopyBuffer(struct{ io.Writer }{io.MultiWriter(f, h)}, ctxReader{ctx, r}, buf)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncDir makes renames in dir durable. Failure only weakens crash
// safety, so it is logged, not returned.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		slog.Warn("sync image store directory", "dir", dir, "err", err)
	}
}

// findMetadata reads metadata.yaml out of a unified or metadata tarball.
func findMetadata(ctx context.Context, f *os.File) (api.ImageMetadata, error) {
	format, err := detectFormat(f)
	if err != nil {
		return api.ImageMetadata{}, err
	}
	if format == formatSquashfs {
		return api.ImageMetadata{}, fmt.Errorf("%w: the metadata file is a squashfs, it must be a tarball", ErrInvalidImage)
	}
	stream, err := openTarStream(ctx, f)
	if err != nil {
		return api.ImageMetadata{}, err
	}
	defer stream.Close()
	tr := tar.NewReader(stream)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return api.ImageMetadata{}, fmt.Errorf("%w: the image has no metadata.yaml", ErrInvalidImage)
		}
		if err != nil {
			if ctx.Err() != nil {
				return api.ImageMetadata{}, ctx.Err()
			}
			return api.ImageMetadata{}, fmt.Errorf("%w: read image tarball: %v", ErrInvalidImage, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil || name != "metadata.yaml" {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return api.ImageMetadata{}, fmt.Errorf("%w: metadata.yaml is not a regular file", ErrInvalidImage)
		}
		return ParseMetadata(tr)
	}
}

// checkRootfs makes sure a split rootfs file is a squashfs or a tarball
// (reading only its first tar header) and says which.
func checkRootfs(ctx context.Context, f *os.File) (string, error) {
	format, err := detectFormat(f)
	if err != nil {
		return "", err
	}
	if format == formatSquashfs {
		return formatSquashfs, nil
	}
	stream, err := openTarStream(ctx, f)
	if err != nil {
		return "", err
	}
	defer stream.Close()
	if _, err := tar.NewReader(stream).Next(); err != nil {
		return "", fmt.Errorf("%w: the rootfs file is neither a squashfs nor a tarball: %v", ErrInvalidImage, err)
	}
	return formatTar, nil
}

// Info describes a stored image, re-reading its metadata from the files.
func (s *Store) Info(ctx context.Context, fingerprint string) (Info, error) {
	meta, rootfs, err := s.Open(fingerprint)
	if err != nil {
		return Info{}, err
	}
	defer meta.Close()
	info := Info{Fingerprint: fingerprint, RootfsType: formatTar}
	st, err := meta.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("stat image: %w", err)
	}
	info.Size = st.Size()
	if rootfs != nil {
		defer rootfs.Close()
		info.Split = true
		st, err := rootfs.Stat()
		if err != nil {
			return Info{}, fmt.Errorf("stat image rootfs: %w", err)
		}
		info.Size += st.Size()
		if info.RootfsType, err = detectFormat(rootfs); err != nil {
			return Info{}, err
		}
		if info.RootfsType != formatSquashfs {
			info.RootfsType = formatTar
		}
	}
	if info.Metadata, err = findMetadata(ctx, meta); err != nil {
		return Info{}, fmt.Errorf("image %s: %w", fingerprint, err)
	}
	return info, nil
}

// Metadata returns the parsed metadata.yaml of a stored image.
func (s *Store) Metadata(ctx context.Context, fingerprint string) (api.ImageMetadata, error) {
	info, err := s.Info(ctx, fingerprint)
	return info.Metadata, err
}

// Open returns the image files for export: the unified or metadata tarball,
// and the split rootfs (nil for a unified image). The caller closes them.
func (s *Store) Open(fingerprint string) (meta *os.File, rootfs *os.File, err error) {
	if !validFingerprint(fingerprint) {
		return nil, nil, fmt.Errorf("%w: %q is not a full sha256 fingerprint", ErrNotFound, fingerprint)
	}
	meta, err = os.OpenFile(s.metaPath(fingerprint), os.O_RDONLY|noFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, fingerprint)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open image: %w", err)
	}
	rootfs, err = os.OpenFile(s.rootfsPath(fingerprint), os.O_RDONLY|noFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return meta, nil, nil
	}
	if err != nil {
		meta.Close()
		return nil, nil, fmt.Errorf("open image rootfs: %w", err)
	}
	return meta, rootfs, nil
}

// Delete removes an image's files. Readers that already opened them (an
// export, an unpack) keep reading the old files.
func (s *Store) Delete(fingerprint string) error {
	if !validFingerprint(fingerprint) {
		return fmt.Errorf("%w: %q is not a full sha256 fingerprint", ErrNotFound, fingerprint)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Metadata first: once it is gone the image no longer exists, even if
	// removing the rootfs then fails.
	err := os.Remove(s.metaPath(fingerprint))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, fingerprint)
	}
	if err != nil {
		return fmt.Errorf("delete image: %w", err)
	}
	if err := os.Remove(s.rootfsPath(fingerprint)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete image rootfs: %w", err)
	}
	syncDir(s.dir)
	return nil
}

// Fingerprints lists the images in the store.
func (s *Store) Fingerprints() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list image store: %w", err)
	}
	var out []string
	for _, e := range entries {
		if validFingerprint(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
