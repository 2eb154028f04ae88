package client

import (
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"

	"cell/shared/api"
)

// GetImageFingerprints lists the fingerprints of the images.
func (c *Client) GetImageFingerprints(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.get(ctx, "/1.0/images", nil, &urls); err != nil {
		return nil, err
	}
	return namesFromURLs(urls), nil
}

// GetImages lists the images.
func (c *Client) GetImages(ctx context.Context) ([]api.Image, error) {
	var images []api.Image
	if _, err := c.get(ctx, "/1.0/images", recursion(1), &images); err != nil {
		return nil, err
	}
	return images, nil
}

// GetImage returns one image and its ETag.
func (c *Client) GetImage(ctx context.Context, fingerprint string) (*api.Image, string, error) {
	var img api.Image
	etag, err := c.get(ctx, urlPath("images", fingerprint), nil, &img)
	if err != nil {
		return nil, "", err
	}
	return &img, etag, nil
}

// GetPrivateImage returns an image that the server shows to an untrusted
// client because of a download secret (see GetImageSecret).
func (c *Client) GetPrivateImage(ctx context.Context, fingerprint, secret string) (*api.Image, error) {
	var img api.Image
	if _, err := c.get(ctx, urlPath("images", fingerprint), secretQuery(secret), &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// GetImageSecret asks for a one-time secret with which another server may
// download the image: the secret is in the metadata ("secret") of the
// operation returned, which runs until the secret is used or cancelled.
func (c *Client) GetImageSecret(ctx context.Context, fingerprint string) (string, error) {
	op, err := c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("images", fingerprint, "secret")})
	if err != nil {
		return "", err
	}
	secret, _ := op.Metadata["secret"].(string)
	if secret == "" {
		return "", fmt.Errorf("the server gave no secret for image %s", fingerprint)
	}
	return secret, nil
}

func secretQuery(secret string) url.Values {
	if secret == "" {
		return nil
	}
	return url.Values{"secret": {secret}}
}

// UpdateImage replaces an image's writable fields (PUT).
func (c *Client) UpdateImage(ctx context.Context, fingerprint string, put api.ImagePut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("images", fingerprint), put, etag)
}

// PatchImage merges fields into an image (PATCH).
func (c *Client) PatchImage(ctx context.Context, fingerprint string, put api.ImagePut, etag string) error {
	return c.sync(ctx, http.MethodPatch, urlPath("images", fingerprint), put, etag)
}

// DeleteImage deletes an image.
func (c *Client) DeleteImage(ctx context.Context, fingerprint string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodDelete, path: urlPath("images", fingerprint)})
}

// ImageExport describes what ExportImage wrote.
type ImageExport struct {
	// MetaName and RootfsName are the file names the server suggested.
	// RootfsName is empty for a unified image, whose tarball went to the
	// meta writer.
	MetaName   string
	MetaSize   int64
	RootfsName string
	RootfsSize int64
}

// ExportImage downloads an image. A unified image's tarball goes to meta;
// a split image's metadata tarball goes to meta and its root filesystem to
// rootfs. progress, when not nil, is called with the bytes received so far.
func (c *Client) ExportImage(ctx context.Context, fingerprint string, meta, rootfs io.Writer, progress func(int64)) (*ImageExport, error) {
	return c.ExportPrivateImage(ctx, fingerprint, "", meta, rootfs, progress)
}

// ExportPrivateImage is ExportImage with a download secret (see
// GetImageSecret); an empty secret is none.
func (c *Client) ExportPrivateImage(ctx context.Context, fingerprint, secret string, meta, rootfs io.Writer, progress func(int64)) (*ImageExport, error) {
	resp, err := c.rawDo(ctx, request{method: http.MethodGet, path: urlPath("images", fingerprint, "export"), query: secretQuery(secret)})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		_, err := decodeEnvelope(resp)
		return nil, err
	}

	body := io.Reader(resp.Body)
	if progress != nil {
		body = &countingReader{r: body, report: progress}
	}
	mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	out := &ImageExport{}

	if mediaType != "multipart/form-data" {
		out.MetaName = dispositionFilename(resp.Header.Get("Content-Disposition"))
		if out.MetaSize, err = io.Copy(meta, body); err != nil {
			return nil, fmt.Errorf("download image %s: %w", fingerprint, err)
		}
		return out, nil
	}

	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("download image %s: %w", fingerprint, err)
		}
		switch part.FormName() {
		case "metadata":
			out.MetaName = part.FileName()
			out.MetaSize, err = io.Copy(meta, part)
		case "rootfs", "rootfs.img":
			if rootfs == nil {
				return nil, fmt.Errorf("image %s is a split image: a root filesystem writer is needed", fingerprint)
			}
			out.RootfsName = part.FileName()
			out.RootfsSize, err = io.Copy(rootfs, part)
		default:
			_, err = io.Copy(io.Discard, part)
		}
		if err != nil {
			return nil, fmt.Errorf("download image %s part %s: %w", fingerprint, part.FormName(), err)
		}
	}
	return out, nil
}

func dispositionFilename(h string) string {
	_, params, err := mime.ParseMediaType(h)
	if err != nil {
		return ""
	}
	return params["filename"]
}

// ImageUpload is an image file (or pair of files) to add to the store.
type ImageUpload struct {
	// Meta is the unified tarball, or the metadata tarball of a split
	// image; MetaName its file name.
	Meta     io.Reader
	MetaName string
	// MetaSize is Meta's size when known, for a unified upload's
	// Content-Length.
	MetaSize int64
	// Rootfs is a split image's root filesystem (a tarball or squashfs),
	// nil for a unified image.
	Rootfs     io.Reader
	RootfsName string
	// Type is "container" (the default) or "virtual-machine". It names the
	// root filesystem's part: "rootfs" for a container, "rootfs.img" for a
	// VM disk, as LXD does.
	Type string

	Fingerprint string // expected fingerprint, checked by the server
	Public      bool
	Properties  map[string]string
	// Progress, when not nil, is called with the bytes sent so far.
	Progress func(sent int64)
}

// CreateImage uploads an image. On success the operation's metadata has
// the image's "fingerprint".
func (c *Client) CreateImage(ctx context.Context, up ImageUpload) (*Operation, error) {
	if up.Meta == nil {
		return nil, fmt.Errorf("upload image: no image file")
	}
	h := http.Header{}
	if up.Fingerprint != "" {
		h.Set("X-LXD-fingerprint", up.Fingerprint)
	}
	// LXD reads X-LXD-public as a number.
	if up.Public {
		h.Set("X-LXD-public", "1")
	}
	if len(up.Properties) > 0 {
		props := url.Values{}
		for k, v := range up.Properties {
			props.Set(k, v)
		}
		h.Set("X-LXD-properties", props.Encode())
	}

	r := request{method: http.MethodPost, path: "/1.0/images", headers: h}
	if up.Rootfs == nil {
		h.Set("X-LXD-filename", up.MetaName)
		r.body = up.Meta
		r.length = up.MetaSize
		if up.Progress != nil {
			r.body = &countingReader{r: up.Meta, report: up.Progress}
		}
		return c.doOperation(ctx, r)
	}

	// A split image goes as multipart/form-data, streamed through a pipe so
	// neither file is held in memory.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	rootfsPart := "rootfs"
	if up.Type == "virtual-machine" {
		rootfsPart = "rootfs.img"
	}
	go func() {
		err := writeParts(mw, []formFile{
			{field: "metadata", name: up.MetaName, r: up.Meta},
			{field: rootfsPart, name: up.RootfsName, r: up.Rootfs},
		})
		pw.CloseWithError(err)
	}()
	r.body = io.Reader(pr)
	if up.Progress != nil {
		r.body = &countingReader{r: pr, report: up.Progress}
	}
	h.Set("Content-Type", mw.FormDataContentType())
	op, err := c.doOperation(ctx, r)
	// Unblock the writer if the server stopped reading early.
	pr.CloseWithError(io.ErrClosedPipe)
	return op, err
}

type formFile struct {
	field, name string
	r           io.Reader
}

func writeParts(mw *multipart.Writer, files []formFile) error {
	for _, f := range files {
		w, err := mw.CreateFormFile(f.field, f.name)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, f.r); err != nil {
			return fmt.Errorf("read %s: %w", f.name, err)
		}
	}
	return mw.Close()
}

// countingReader reports how many bytes went through it.
type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.report(c.n)
	}
	return n, err
}

// ImageFingerprintFromOperation returns the fingerprint that a finished
// upload operation reports.
func ImageFingerprintFromOperation(op *api.Operation) string {
	fp, _ := op.Metadata["fingerprint"].(string)
	return fp
}

// GetImageAliasNames lists the names of the image aliases.
func (c *Client) GetImageAliasNames(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.get(ctx, "/1.0/images/aliases", nil, &urls); err != nil {
		return nil, err
	}
	return namesFromURLs(urls), nil
}

// GetImageAliases lists the image aliases.
func (c *Client) GetImageAliases(ctx context.Context) ([]api.ImageAliasesEntry, error) {
	var aliases []api.ImageAliasesEntry
	if _, err := c.get(ctx, "/1.0/images/aliases", recursion(1), &aliases); err != nil {
		return nil, err
	}
	return aliases, nil
}

// GetImageAlias returns one alias and its ETag.
func (c *Client) GetImageAlias(ctx context.Context, name string) (*api.ImageAliasesEntry, string, error) {
	var alias api.ImageAliasesEntry
	etag, err := c.get(ctx, urlPath("images", "aliases", name), nil, &alias)
	if err != nil {
		return nil, "", err
	}
	return &alias, etag, nil
}

// CreateImageAlias creates an alias.
func (c *Client) CreateImageAlias(ctx context.Context, alias api.ImageAliasesPost) error {
	return c.sync(ctx, http.MethodPost, "/1.0/images/aliases", alias, "")
}

// UpdateImageAlias replaces an alias's target and description.
func (c *Client) UpdateImageAlias(ctx context.Context, name string, put api.ImageAliasesEntryPut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("images", "aliases", name), put, etag)
}

// RenameImageAlias renames an alias.
func (c *Client) RenameImageAlias(ctx context.Context, name, newName string) error {
	return c.sync(ctx, http.MethodPost, urlPath("images", "aliases", name), api.ImageAliasesEntryPost{Name: newName}, "")
}

// DeleteImageAlias deletes an alias.
func (c *Client) DeleteImageAlias(ctx context.Context, name string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("images", "aliases", name), nil, "")
}

// CopyImage asks the server to create an image from a source other than an
// upload (POST /1.0/images with JSON), such as a pull from an image server.
func (c *Client) CopyImage(ctx context.Context, req api.ImagesPost) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: "/1.0/images", body: req})
}

// RefreshImage asks the server to look for a newer version of an image
// that came from an image server. After the operation, its metadata
// "refreshed" says whether one was found.
func (c *Client) RefreshImage(ctx context.Context, fingerprint string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("images", fingerprint, "refresh")})
}

// PublishRequest is POST /1.0/images from an instance or a snapshot
// (source type "instance" or "snapshot", name "c1" or "c1/snap0"), with
// LXD's compression_algorithm ("gzip", "xz", "zstd", "none").
type PublishRequest struct {
	api.ImagesPost
	CompressionAlgorithm string `json:"compression_algorithm,omitempty"`
}

// PublishImage makes an image from an instance or a snapshot; the
// operation's metadata names the new image's fingerprint.
func (c *Client) PublishImage(ctx context.Context, req PublishRequest) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: "/1.0/images", body: req})
}
