package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// SplitUnified turns a unified image into the split form image servers
// publish: the metadata tarball (metadata.yaml, templates/) into meta and
// the root file system, relative to rootfs/, into rootfs; both
// xz-compressed, as their simplestreams names (lxd.tar.xz, root.tar.xz)
// say. The result is another image (another fingerprint) with the same
// contents.
func SplitUnified(ctx context.Context, unified *os.File, meta, rootfs io.Writer) error {
	stream, err := openTarStream(ctx, unified)
	if err != nil {
		return err
	}
	defer stream.Close()
	mz, err := compressor(meta, "xz")
	if err != nil {
		return err
	}
	rz, err := compressor(rootfs, "xz")
	if err != nil {
		return err
	}
	mt, rt := tar.NewWriter(mz), tar.NewWriter(rz)
	tr := tar.NewReader(stream)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: read image tarball: %v", ErrInvalidImage, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		out := mt
		if top, rest, _ := strings.Cut(name, "/"); top == "rootfs" {
			out, hdr.Name = rt, "./"+rest
			if hdr.Typeflag == tar.TypeLink {
				link, err := cleanName(hdr.Linkname)
				if err != nil {
					return err
				}
				hdr.Linkname = "./" + strings.TrimPrefix(link, "rootfs/")
			}
		}
		if err := out.WriteHeader(hdr); err != nil {
			return fmt.Errorf("split image: %s: %w", name, err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			return fmt.Errorf("split image: %s: %w", name, err)
		}
	}
	for _, c := range []io.Closer{mt, rt, mz, rz} {
		if err := c.Close(); err != nil {
			return fmt.Errorf("split image: %w", err)
		}
	}
	return nil
}
