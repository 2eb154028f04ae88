// Package images is the local image store and everything that turns an
// image into an instance volume: the unified and split image formats,
// unpacking with uid/gid shifting, and metadata.yaml templates.
//
// Everything in an image is hostile input: paths are resolved inside the
// volume with openat2(RESOLVE_IN_ROOT) through the shared/rootfs package, so
// no entry of a tarball and no template can write outside of it.
package images

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"cell/shared/api"
)

// Errors that callers map to HTTP status codes. They are wrapped, so test
// with errors.Is.
var (
	// ErrNotFound: no image with that fingerprint in the store.
	ErrNotFound = errors.New("image not found")
	// ErrExists: an image with that fingerprint is already in the store.
	ErrExists = errors.New("image already exists")
	// ErrFingerprintMismatch: the upload does not hash to what the client claimed.
	ErrFingerprintMismatch = errors.New("image fingerprint mismatch")
	// ErrInvalidImage: the upload is not an image Cell can use (a user error).
	ErrInvalidImage = errors.New("invalid image")
)

// maxMetadataSize bounds metadata.yaml: it is read into memory, and a real
// one is a few kilobytes even with many templates.
const maxMetadataSize = 8 << 20

// Template triggers, as in LXD's metadata.yaml.
const (
	TriggerCreate = "create"
	TriggerCopy   = "copy"
	TriggerStart  = "start"
)

// ParseMetadata reads a metadata.yaml. An image without an architecture is
// refused: the daemon needs it to know where the image can run.
func ParseMetadata(r io.Reader) (api.ImageMetadata, error) {
	var md api.ImageMetadata
	data, err := io.ReadAll(io.LimitReader(r, maxMetadataSize+1))
	if err != nil {
		return md, fmt.Errorf("read metadata.yaml: %w", err)
	}
	if len(data) > maxMetadataSize {
		return md, fmt.Errorf("%w: metadata.yaml is larger than %d bytes", ErrInvalidImage, maxMetadataSize)
	}
	if err := yaml.Unmarshal(data, &md); err != nil {
		return api.ImageMetadata{}, fmt.Errorf("%w: metadata.yaml: %v", ErrInvalidImage, err)
	}
	if md.Architecture == "" {
		return api.ImageMetadata{}, fmt.Errorf("%w: metadata.yaml has no architecture", ErrInvalidImage)
	}
	for path, t := range md.Templates {
		if t == nil || t.Template == "" {
			return api.ImageMetadata{}, fmt.Errorf("%w: metadata.yaml: template for %q names no template file", ErrInvalidImage, path)
		}
	}
	return md, nil
}

// ReadVolumeMetadata reads dir/metadata.yaml of an unpacked instance volume
// (the layout Unpack makes). The file is opened without following a symlink:
// the volume's top level belongs to the daemon, not to the container.
func ReadVolumeMetadata(dir string) (api.ImageMetadata, error) {
	f, err := os.OpenFile(filepath.Join(dir, "metadata.yaml"), os.O_RDONLY|noFollow, 0)
	if err != nil {
		return api.ImageMetadata{}, fmt.Errorf("open instance metadata: %w", err)
	}
	defer f.Close()
	return ParseMetadata(f)
}
