package daemon

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/client"
	"cell/client/simplestreams"
	"cell/daemon/operations"
	"cell/shared/api"
)

// Images from another celld or an LXD over HTTPS (protocol "lxd"). The
// daemon is an untrusted client there: it connects pinned to the
// certificate the request carries, presents no client certificate, and so
// sees public images and their aliases only, or a private image whose
// one-time download secret the request carries. What it finds is described as
// a simplestreams.Image so that the download pipeline (lock, store,
// verification against the fingerprint, progress) is the same for both
// protocols.

// lxdImageServer downloads images from an LXD-protocol server.
type lxdImageServer struct {
	c      *client.Client
	url    string
	secret string // the download secret of a private image, if any
}

func (s *lxdImageServer) URL() string { return s.url }

// Download writes the image's export into meta (a unified tarball, or the
// metadata tarball of a split image) and rootfs (a split image's root
// filesystem; left empty for a unified image). The store checks the bytes
// against the fingerprint.
func (s *lxdImageServer) Download(ctx context.Context, img simplestreams.Image, meta, rootfs io.Writer, progress func(done, total int64)) error {
	report := func(done int64) {
		if progress != nil {
			progress(done, img.Size)
		}
	}
	res, err := s.c.ExportPrivateImage(ctx, img.Fingerprint, s.secret, meta, rootfs, report)
	if err != nil {
		return err
	}
	report(res.MetaSize + res.RootfsSize)
	return nil
}

// resolveLXDImage finds the image a source names on an LXD-protocol
// server: the alias, or the fingerprint (a unique prefix is enough, as
// the server resolves it). A private image needs its fingerprint and a
// download secret made on the server (POST /1.0/images/<fp>/secret).
func resolveLXDImage(ctx context.Context, src remoteSource) (*lxdImageServer, simplestreams.Image, error) {
	var cert []byte
	if strings.TrimSpace(src.Certificate) != "" {
		cert = []byte(src.Certificate)
	}
	c, err := client.ConnectHTTPS(src.Server, nil, nil, cert)
	if err != nil {
		return nil, simplestreams.Image{}, badRequest("image server %s: %v", src.Server, err)
	}
	srv := &lxdImageServer{c: c, url: "https://" + strings.TrimSuffix(strings.TrimPrefix(src.Server, "https://"), "/"), secret: src.Secret}

	// As LXD: the name is the fingerprint when given, else the alias,
	// and it is looked up as an alias first (LXD's client sends a public
	// image's alias as its "fingerprint", for auto-update) then as a
	// fingerprint (prefix). A private image's aliases are hidden from
	// untrusted clients, so with a secret the fingerprint is what counts.
	name := src.Fingerprint
	if name == "" {
		name = src.Alias
	}
	if name == "" {
		return nil, simplestreams.Image{}, badRequest("image source on %s needs an alias or a fingerprint", src.Server)
	}
	fp := name
	alias, _, err := c.GetImageAlias(ctx, name)
	switch {
	case err == nil:
		fp = alias.Target
	case !client.IsNotFound(err) || !isHexPrefix(name):
		return nil, simplestreams.Image{}, lxdImageError(err, name, src.Server, src.Secret != "")
	}
	info, err := c.GetPrivateImage(ctx, fp, src.Secret)
	if err != nil {
		return nil, simplestreams.Image{}, lxdImageError(err, name, src.Server, src.Secret != "")
	}
	if info.Type != "" && info.Type != "container" {
		return nil, simplestreams.Image{}, badRequest("image %q on %s is a %s image: only container images are supported", name, src.Server, info.Type)
	}
	if !validFingerprintHex(info.Fingerprint) {
		return nil, simplestreams.Image{}, badRequest("image server %s answered an invalid fingerprint %q for %q", src.Server, info.Fingerprint, name)
	}
	img := simplestreams.Image{
		Fingerprint: info.Fingerprint, Architecture: info.Architecture, Properties: info.Properties,
		Size: info.Size, CreatedAt: info.CreatedAt, Meta: simplestreams.File{Path: info.Filename},
		Aliases: make([]string, 0, len(info.Aliases)),
	}
	if img.Meta.Path == "" {
		img.Meta.Path = info.Fingerprint + ".tar.xz"
	}
	for _, a := range info.Aliases {
		img.Aliases = append(img.Aliases, a.Name)
	}
	return srv, img, nil
}

// lxdImageError turns an image server's answer into the daemon's: an image
// it does not show is a 404 that says why it may be hidden, anything else
// is a 400 naming the server.
func lxdImageError(err error, name, server string, secret bool) error {
	if client.IsNotFound(err) && secret {
		return notFound("image %q not found on %s (or its secret is not valid or was already used)", name, server)
	}
	if client.IsNotFound(err) {
		return notFound("image %q not found on %s (it does not exist, or it is private: copying a private image needs a secret, which `c image copy` asks for when the source is a remote it is trusted by)", name, server)
	}
	return badRequest("image server %s: %v", server, err)
}

// validFingerprintHex reports whether s is a full sha256 in lower-case hex.
func validFingerprintHex(s string) bool {
	return len(s) == 64 && isHexPrefix(s)
}

// isHexPrefix reports whether s could be a fingerprint prefix.
func isHexPrefix(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// imageSecretLifetime bounds how long an unused image download secret
// stays valid: LXD keeps it until it is used or cancelled, but a secret
// that is never used should not open a private image for ever.
const imageSecretLifetime = time.Hour

// createImageSecret serves POST /1.0/images/{fingerprint}/secret: a
// one-time secret with which an untrusted client (another server pulling
// the image) may read and export this image, private or not. As LXD, the
// secret lives in the metadata of a running "token" operation; cancelling
// the operation revokes it, and exporting the image uses it up.
func (d *Daemon) createImageSecret(w http.ResponseWriter, r *http.Request) error {
	img, err := d.findImage(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return fmt.Errorf("make an image secret: %w", err)
	}
	op := d.ops.Start(r.Context(), operations.Spec{
		Class:       api.OperationClassToken,
		Description: "Image download token",
		Resources:   map[string][]string{"images": {"/1.0/images/" + img.Fingerprint}},
		Metadata:    map[string]any{"secret": hex.EncodeToString(buf)},
		MayCancel:   true,
		Run: func(ctx context.Context, op *operations.Operation) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(imageSecretLifetime):
				return errors.New("the image download secret expired unused")
			}
		},
	})
	return asyncResponse(w, op)
}

// imageSecretOp returns the running token operation whose secret opens
// the image, or nil.
func (d *Daemon) imageSecretOp(fingerprint, secret string) *operations.Operation {
	want := "/1.0/images/" + fingerprint
	for _, op := range d.ops.List() {
		info := op.Get()
		if info.Class != api.OperationClassToken || info.StatusCode != api.Running || !slices.Contains(info.Resources["images"], want) {
			continue
		}
		if s, _ := info.Metadata["secret"].(string); s != "" && subtle.ConstantTimeCompare([]byte(s), []byte(secret)) == 1 {
			return op
		}
	}
	return nil
}

// ifPublicOrSecretImage lets an untrusted client read an image that is
// public, or whose download secret it gives in ?secret=. The export uses
// the secret up (LXD's secrets are single-use).
func (d *Daemon) ifPublicOrSecretImage(r *http.Request, prefix, rest string, next http.Handler) http.Handler {
	secret := r.URL.Query().Get("secret")
	if secret == "" {
		return d.ifPublicImage(prefix, next)
	}
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		img, err := d.db.Image(r.Context(), prefix)
		if err != nil {
			return notFound("image %q not found", prefix)
		}
		op := d.imageSecretOp(img.Fingerprint, secret)
		if op == nil && !img.Public {
			return notFound("image %q not found (or the secret is not valid)", prefix)
		}
		if op != nil && rest == "export" {
			_ = op.Cancel()
		}
		next.ServeHTTP(w, r)
		return nil
	})
}
