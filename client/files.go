package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

// File types as the X-LXD-type header names them.
const (
	FileTypeFile      = "file"
	FileTypeDirectory = "directory"
	FileTypeSymlink   = "symlink"
)

// InstanceFile is a file read from an instance.
type InstanceFile struct {
	UID  int64
	GID  int64
	Mode os.FileMode // permission bits, e.g. 0644
	Type string      // FileTypeFile, FileTypeDirectory or FileTypeSymlink
	// Content is the file's data, or a symlink's target. It is nil for a
	// directory. The caller closes it.
	Content io.ReadCloser
	// Entries are the names in a directory.
	Entries []string
}

// GetInstanceFile reads a file, directory or symlink of an instance.
func (c *Client) GetInstanceFile(ctx context.Context, instance, path string) (*InstanceFile, error) {
	resp, err := c.rawDo(ctx, request{
		method: http.MethodGet,
		path:   urlPath("instances", instance, "files"),
		query:  url.Values{"path": {path}},
	})
	if err != nil {
		return nil, err
	}

	f, err := fileHeaders(resp.Header)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	// A directory (and any error) comes back as a JSON envelope; a file or
	// a symlink comes back raw.
	if resp.StatusCode >= 400 || f.Type == FileTypeDirectory || (f.Type == "" && mediaType == "application/json") {
		defer resp.Body.Close()
		env, err := decodeEnvelope(resp)
		if err != nil {
			return nil, err
		}
		f.Type = FileTypeDirectory
		if len(env.Metadata) > 0 {
			if err := json.Unmarshal(env.Metadata, &f.Entries); err != nil {
				return nil, fmt.Errorf("read directory %s: %w", path, err)
			}
		}
		return f, nil
	}
	if f.Type == "" {
		f.Type = FileTypeFile
	}
	f.Content = resp.Body
	return f, nil
}

// fileHeaders parses the X-LXD-uid/gid/mode/type headers.
func fileHeaders(h http.Header) (*InstanceFile, error) {
	f := &InstanceFile{Type: h.Get("X-LXD-type")}
	var err error
	if v := h.Get("X-LXD-uid"); v != "" {
		if f.UID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("bad X-LXD-uid %q", v)
		}
	}
	if v := h.Get("X-LXD-gid"); v != "" {
		if f.GID, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, fmt.Errorf("bad X-LXD-gid %q", v)
		}
	}
	if v := h.Get("X-LXD-mode"); v != "" {
		mode, err := strconv.ParseUint(v, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("bad X-LXD-mode %q", v)
		}
		f.Mode = goMode(uint32(mode))
	}
	return f, nil
}

// NoOwner, as a FileArgs UID or GID, leaves the owner to the server.
const NoOwner = -1

// FileArgs describes a file to write into an instance.
type FileArgs struct {
	// Content is the file's data, or a symlink's target; nil for a
	// directory.
	Content io.Reader
	// Length is Content's size when known (sent as Content-Length).
	Length int64
	// Type is FileTypeFile (the default), FileTypeDirectory or
	// FileTypeSymlink.
	Type string
	// UID and GID own the file; NoOwner lets the server choose. Note that
	// the zero value means root.
	UID, GID int64
	// Mode holds the permission bits; 0 lets the server choose.
	Mode os.FileMode
	// WriteMode is "overwrite" (the default) or "append".
	WriteMode string
}

// CreateInstanceFile writes a file, creates a directory or a symlink in an
// instance.
func (c *Client) CreateInstanceFile(ctx context.Context, instance, path string, args FileArgs) error {
	h := http.Header{}
	typ := args.Type
	if typ == "" {
		typ = FileTypeFile
	}
	h.Set("X-LXD-type", typ)
	if args.UID != NoOwner {
		h.Set("X-LXD-uid", strconv.FormatInt(args.UID, 10))
	}
	if args.GID != NoOwner {
		h.Set("X-LXD-gid", strconv.FormatInt(args.GID, 10))
	}
	if args.Mode != 0 {
		h.Set("X-LXD-mode", fmt.Sprintf("%04o", unixMode(args.Mode)))
	}
	if typ == FileTypeFile {
		wm := args.WriteMode
		if wm == "" {
			wm = "overwrite"
		}
		h.Set("X-LXD-write", wm)
	}

	// The body must be a reader even when empty, so it goes out raw, not
	// as JSON.
	var body io.Reader = args.Content
	if body == nil {
		body = http.NoBody
	}
	resp, err := c.rawDo(ctx, request{
		method:  http.MethodPost,
		path:    urlPath("instances", instance, "files"),
		query:   url.Values{"path": {path}},
		body:    body,
		headers: h,
		length:  args.Length,
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := decodeEnvelope(resp); err != nil {
		return err
	}
	return nil
}

// DeleteInstanceFile removes a file or an empty directory of an instance.
func (c *Client) DeleteInstanceFile(ctx context.Context, instance, path string) error {
	_, _, err := c.do(ctx, request{
		method: http.MethodDelete,
		path:   urlPath("instances", instance, "files"),
		query:  url.Values{"path": {path}},
	})
	return err
}

// unixMode turns Go's file mode bits into the octal bits of chmod(2).
func unixMode(m os.FileMode) uint32 {
	bits := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	return bits
}

// goMode is the inverse of unixMode.
func goMode(bits uint32) os.FileMode {
	m := os.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if bits&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if bits&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}
