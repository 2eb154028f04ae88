package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"cell/client/simplestreams"
	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/images"
	"cell/shared/api"
)

// Images from remote image servers. The daemon resolves the alias or
// fingerprint on the server, downloads the image once into the store
// (verifying every byte against the index), and records it as cached.

// remoteSource is what a request names on a remote image server.
type remoteSource struct {
	Server, Protocol, Alias, Fingerprint string
	// Certificate is the PEM certificate an LXD-protocol server must
	// present (it is pinned); empty means the system's CAs.
	Certificate string
	// Secret is an LXD-protocol server's download secret for a private
	// image; it is used once and not recorded.
	Secret     string
	AutoUpdate bool
}

// imageFetcher downloads a resolved image from its server: a
// simplestreams client, or an LXD-protocol server (image_lxd.go). Both
// write the metadata (or unified tarball) to meta and the root filesystem
// of a split image to rootfs; downloadImage checks and stores the result.
type imageFetcher interface {
	URL() string
	Download(ctx context.Context, img simplestreams.Image, meta, rootfs io.Writer, progress func(done, total int64)) error
}

// ssClients are the simplestreams clients, one per server URL, so that
// their index caches are shared between requests.
var ssClients sync.Map // URL -> *simplestreams.Client

func simplestreamsClient(server string) (*simplestreams.Client, error) {
	key := strings.TrimRight(server, "/")
	if c, ok := ssClients.Load(key); ok {
		return c.(*simplestreams.Client), nil
	}
	c, err := simplestreams.New(key, nil)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	actual, _ := ssClients.LoadOrStore(key, c)
	return actual.(*simplestreams.Client), nil
}

// resolveRemote finds the image a remote source names. A name that the
// server does not know is the client's mistake (404), a server that cannot
// be read is a 400 naming it.
func resolveRemote(ctx context.Context, src remoteSource) (imageFetcher, simplestreams.Image, error) {
	switch src.Protocol {
	case "simplestreams":
	case "", "lxd":
		// As LXD: a source without a protocol is another LXD.
		srv, img, err := resolveLXDImage(ctx, src)
		if err != nil {
			return nil, img, err
		}
		if _, err := supportedArchitecture(img.Architecture); err != nil {
			return nil, img, badRequest("image %q on %s is for %s only: this host runs %s", img.Fingerprint, src.Server, img.Architecture, hostArchitecture())
		}
		return srv, img, nil
	default:
		return nil, simplestreams.Image{}, badRequest("image server protocol %q is not supported (use simplestreams or lxd)", src.Protocol)
	}
	c, err := simplestreamsClient(src.Server)
	if err != nil {
		return nil, simplestreams.Image{}, err
	}
	name := src.Alias
	if name == "" {
		name = src.Fingerprint
	}
	if name == "" {
		return nil, simplestreams.Image{}, badRequest("image source on %s needs an alias or a fingerprint", src.Server)
	}
	img, err := c.Resolve(ctx, name, hostArchitecture())
	if errors.Is(err, simplestreams.ErrNotFound) {
		return nil, img, notFound("%v", err)
	}
	if err != nil {
		return nil, img, badRequest("image server %s: %v", src.Server, err)
	}
	if _, err := supportedArchitecture(img.Architecture); err != nil {
		return nil, img, badRequest("image %q on %s is for %s only: this host runs %s", name, src.Server, img.Architecture, hostArchitecture())
	}
	return c, img, nil
}

// remoteImage resolves a remote source and returns the image row that an
// instance made from it will use, and a function that makes sure the image
// is in the store (downloading it when it is not) before it is used.
func (d *Daemon) remoteImage(ctx context.Context, src remoteSource) (db.Image, func(context.Context, *operations.Operation) error, error) {
	c, img, err := resolveRemote(ctx, src)
	if err != nil {
		return db.Image{}, nil, err
	}
	if local, err := d.db.Image(ctx, img.Fingerprint); err == nil && local.Fingerprint == img.Fingerprint {
		return local, func(context.Context, *operations.Operation) error { return nil }, nil
	}
	row := db.Image{
		Fingerprint: img.Fingerprint, Architecture: normalizeArch(img.Architecture), Type: "container",
		Properties: img.Properties, Size: img.Size,
	}
	fetch := func(ctx context.Context, op *operations.Operation) error {
		_, err := d.downloadImage(ctx, op, c, img, src, true)
		return err
	}
	return row, fetch, nil
}

// downloadImage puts a remote image into the store and the database once:
// concurrent callers for the same image wait for the first one and then
// find it there. It returns the image's row.
func (d *Daemon) downloadImage(ctx context.Context, op *operations.Operation, c imageFetcher, img simplestreams.Image, src remoteSource, cached bool) (db.Image, error) {
	unlock := d.locks.Lock("image-download/" + img.Fingerprint)
	defer unlock()
	if local, err := d.db.Image(ctx, img.Fingerprint); err == nil && local.Fingerprint == img.Fingerprint {
		return local, nil
	}

	// Temporary files of the store: a daemon that dies during the
	// download finds them removed at its next start (images.NewStore).
	meta, err := d.images.TempFile(img.Fingerprint[:12] + "-meta")
	if err != nil {
		return db.Image{}, err
	}
	defer os.Remove(meta.Name())
	defer meta.Close()
	rootfs, err := d.images.TempFile(img.Fingerprint[:12] + "-rootfs")
	if err != nil {
		return db.Image{}, err
	}
	defer os.Remove(rootfs.Name())
	defer rootfs.Close()

	slog.Info("downloading image", "server", c.URL(), "fingerprint", img.Fingerprint, "size", img.Size)
	start := time.Now()
	var last time.Time
	progress := func(done, total int64) {
		if op == nil || (time.Since(last) < 500*time.Millisecond && done != total) {
			return
		}
		last = time.Now()
		pct := int64(100)
		if total > 0 {
			pct = done * 100 / total
		}
		speed := float64(done) / max(time.Since(start).Seconds(), 0.001)
		op.SetMetadata(map[string]any{"download_progress": fmt.Sprintf("rootfs: %d%% (%s/s)", pct, humanBytes(int64(speed)))})
	}
	if err := c.Download(ctx, img, meta, rootfs, progress); err != nil {
		return db.Image{}, fmt.Errorf("download image %s from %s: %w", img.Fingerprint, c.URL(), err)
	}
	if _, err := meta.Seek(0, 0); err != nil {
		return db.Image{}, err
	}
	// A unified image (only LXD-protocol servers send them) comes as one
	// file: nothing was written to rootfs.
	var rootfsReader io.Reader
	if n, err := rootfs.Seek(0, io.SeekEnd); err != nil {
		return db.Image{}, err
	} else if n > 0 {
		if _, err := rootfs.Seek(0, 0); err != nil {
			return db.Image{}, err
		}
		rootfsReader = rootfs
	}
	info, err := d.images.Add(ctx, meta, rootfsReader, img.Fingerprint)
	if err != nil && !errors.Is(err, images.ErrExists) {
		return db.Image{}, fmt.Errorf("store image %s from %s: %w", img.Fingerprint, c.URL(), err)
	}
	if errors.Is(err, images.ErrExists) {
		if info, err = d.images.Info(ctx, img.Fingerprint); err != nil {
			return db.Image{}, err
		}
	}

	props := map[string]string{}
	for k, v := range img.Properties {
		props[k] = v
	}
	for k, v := range info.Metadata.Properties {
		props[k] = v
	}
	arch := normalizeArch(info.Metadata.Architecture)
	if arch == "" {
		arch = normalizeArch(img.Architecture)
	}
	row := db.Image{
		Fingerprint: img.Fingerprint, Filename: filepath.Base(img.Meta.Path), Size: info.Size,
		AutoUpdate: src.AutoUpdate, Cached: cached, Architecture: arch, Type: "container",
		Properties: props, CreatedAt: img.CreatedAt, UploadedAt: time.Now().UTC(),
	}
	if info.Metadata.CreationDate > 0 {
		row.CreatedAt = time.Unix(info.Metadata.CreationDate, 0).UTC()
	}
	if info.Metadata.ExpiryDate > 0 {
		row.ExpiresAt = time.Unix(info.Metadata.ExpiryDate, 0).UTC()
	}
	if err := d.db.CreateImage(ctx, row); err != nil {
		_ = d.images.Delete(img.Fingerprint)
		return db.Image{}, err
	}
	// Refresh follows the alias; an image asked for by fingerprint has none.
	alias := src.Alias
	if !slices.Contains(img.Aliases, alias) {
		alias = ""
	}
	if err := d.db.SetImageSource(ctx, img.Fingerprint, db.ImageSource{Server: c.URL(), Protocol: protocolOf(c), Alias: alias, Certificate: certificateOf(c, src)}); err != nil {
		_ = d.db.DeleteImage(context.WithoutCancel(ctx), img.Fingerprint)
		_ = d.images.Delete(img.Fingerprint)
		return db.Image{}, err
	}
	d.events.Lifecycle("image-created", "/1.0/images/"+img.Fingerprint, nil)
	slog.Info("image downloaded", "server", c.URL(), "fingerprint", img.Fingerprint, "took", time.Since(start))
	return d.db.Image(ctx, img.Fingerprint)
}

// pullImage serves POST /1.0/images with a remote source in pull mode
// (what `image copy` sends): download the image and add the aliases.
func (d *Daemon) pullImage(ctx context.Context, req api.ImagesPost) (*operations.Operation, error) {
	s := req.Source
	if s.Type != "image" {
		return nil, badRequest("image source type %q is not supported (use image, or upload a file)", s.Type)
	}
	if s.Mode != "" && s.Mode != "pull" {
		return nil, badRequest("image source mode %q is not supported (use pull)", s.Mode)
	}
	if s.Server == "" {
		return nil, badRequest("image source needs a server")
	}
	src := remoteSource{Server: s.Server, Protocol: s.Protocol, Alias: s.Alias, Fingerprint: s.Fingerprint,
		Certificate: s.Certificate, Secret: s.Secret, AutoUpdate: req.AutoUpdate}
	for _, a := range req.Aliases {
		if err := validateAliasName(a.Name); err != nil {
			return nil, err
		}
	}
	c, img, err := resolveRemote(ctx, src)
	if err != nil {
		return nil, err
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Downloading image",
		Resources:   map[string][]string{"images": {"/1.0/images/" + img.Fingerprint}},
		Run: func(ctx context.Context, op *operations.Operation) error {
			row, err := d.downloadImage(ctx, op, c, img, src, false)
			if err != nil {
				return err
			}
			// A copy asked for by name is no longer only a cache entry.
			if row.Cached || row.Public != req.Public || (req.AutoUpdate && !row.AutoUpdate) {
				row.Cached = false
				row.Public = req.Public
				row.AutoUpdate = row.AutoUpdate || req.AutoUpdate
				if err := d.db.UpdateImage(ctx, row); err != nil {
					return err
				}
			}
			for _, a := range req.Aliases {
				err := d.db.CreateImageAlias(ctx, db.ImageAlias{Name: a.Name, Description: a.Description, Fingerprint: row.Fingerprint})
				if errors.Is(err, db.ErrExists) {
					return fmt.Errorf("image alias %q already exists", a.Name)
				}
				if err != nil {
					return err
				}
			}
			op.SetMetadata(map[string]any{"fingerprint": row.Fingerprint, "size": row.Size})
			return nil
		},
	})
	return op, nil
}

// protocolOf names the protocol of an image server, as image sources
// record it.
func protocolOf(c imageFetcher) string {
	if _, ok := c.(*lxdImageServer); ok {
		return "lxd"
	}
	return "simplestreams"
}

// certificateOf is the certificate to record for a download's server: the
// pinned one of an LXD-protocol server, none for simplestreams (the
// system's CAs, as for launches).
func certificateOf(c imageFetcher, src remoteSource) string {
	if protocolOf(c) == "lxd" {
		return src.Certificate
	}
	return ""
}

// humanBytes renders a byte count as LXD's progress does (1.2MB).
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// withUpdateSource adds where a downloaded image came from.
func (d *Daemon) withUpdateSource(ctx context.Context, img api.Image) (api.Image, error) {
	s, ok, err := d.db.ImageSourceOf(ctx, img.Fingerprint)
	if err != nil || !ok {
		return img, err
	}
	img.UpdateSource = &api.ImageSource{Server: s.Server, Protocol: s.Protocol, Alias: s.Alias, ImageType: "container"}
	return img, nil
}
