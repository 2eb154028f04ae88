package simplestreams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// Download streams the image's metadata tarball into meta and its rootfs
// into rootfs, reporting progress (bytes written so far, total of both
// files) after every chunk when progress is not nil. It checks each file's
// size and sha256 against the index and the combined sha256 of both against
// the fingerprint, and fails on any mismatch.
//
// The writers receive the bytes before the checks end: on error, what they
// got must be thrown away (write into temporary files, rename on success).
func (c *Client) Download(ctx context.Context, img Image, meta, rootfs io.Writer, progress func(done, total int64)) error {
	if meta == nil || rootfs == nil {
		return errors.New("download: both a metadata and a rootfs writer are needed")
	}
	if img.Meta.Path == "" || img.Rootfs.Path == "" {
		return fmt.Errorf("download image %s: it has no metadata or rootfs file", short(img.Fingerprint))
	}
	combined := sha256.New()
	pw := &progressWriter{total: img.Meta.Size + img.Rootfs.Size, progress: progress}
	if err := c.downloadFile(ctx, img.Meta, meta, combined, pw); err != nil {
		return err
	}
	if err := c.downloadFile(ctx, img.Rootfs, rootfs, combined, pw); err != nil {
		return err
	}
	if got := hex.EncodeToString(combined.Sum(nil)); got != img.Fingerprint {
		return fmt.Errorf("image from %s does not match its fingerprint: the sha256 of %s followed by %s is %s, the index says %s",
			c.URL(), img.Meta.Path, img.Rootfs.Path, got, img.Fingerprint)
	}
	return nil
}

// downloadFile streams one file into w and combined, checking its size and
// sha256.
func (c *Client) downloadFile(ctx context.Context, f File, w io.Writer, combined hash.Hash, pw *progressWriter) error {
	u := c.fileURL(f.Path)
	resp, err := c.get(ctx, f.Path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if f.Size > 0 && resp.ContentLength >= 0 && resp.ContentLength != f.Size {
		return fmt.Errorf("download %s: server announces %d bytes, the index says %d", u, resp.ContentLength, f.Size)
	}

	sum := sha256.New()
	var body io.Reader = resp.Body
	if f.Size > 0 {
		// One byte more than announced is enough to tell "too long".
		body = io.LimitReader(resp.Body, f.Size+1)
	}
	n, err := io.Copy(io.MultiWriter(w, sum, combined, pw), body)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("download %s: the server closed the connection after %d of %d bytes", u, n, f.Size)
		}
		return fmt.Errorf("download %s: after %d bytes: %w", u, n, err)
	}
	if f.Size > 0 && n != f.Size {
		return fmt.Errorf("download %s: got %d bytes, the index says %d", u, n, f.Size)
	}
	if f.SHA256 != "" {
		if got := hex.EncodeToString(sum.Sum(nil)); got != f.SHA256 {
			return fmt.Errorf("download %s: sha256 mismatch: got %s, the index says %s", u, got, f.SHA256)
		}
	}
	return nil
}

// progressWriter counts the bytes of both files and reports them.
type progressWriter struct {
	done, total int64
	progress    func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.progress != nil {
		p.progress(p.done, p.total)
	}
	return len(b), nil
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}
