package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/images"
	"cell/shared/api"
)

// normalizeArch maps the names images use for an architecture to the
// kernel's, which LXD reports.
func normalizeArch(a string) string {
	switch a {
	case "amd64", "x86_64":
		return "x86_64"
	case "arm64", "aarch64":
		return "aarch64"
	case "i386", "i686":
		return "i686"
	case "armhf", "armv7l":
		return "armv7l"
	}
	return a
}

func hostArchitecture() string {
	return normalizeArch(unameMachine())
}

// supportedArchitecture checks an architecture a client asked for and
// returns its kernel name. Only the host's own runs here: containers get
// the 64-bit personality (lxc.arch = linux64).
func supportedArchitecture(a string) (string, error) {
	if n := normalizeArch(a); n == hostArchitecture() {
		return n, nil
	}
	return "", badRequest("architecture %q is not supported by this host (use %s)", a, hostArchitecture())
}

func apiImage(i db.Image) api.Image {
	out := api.Image{
		ImagePut: api.ImagePut{
			AutoUpdate: i.AutoUpdate, Properties: i.Properties, Public: i.Public, ExpiresAt: i.ExpiresAt, Profiles: []string{"default"},
		},
		Aliases: []api.ImageAlias{}, Architecture: i.Architecture, Cached: i.Cached, Filename: i.Filename,
		Fingerprint: i.Fingerprint, Size: i.Size, Type: i.Type, CreatedAt: i.CreatedAt, LastUsedAt: i.LastUsedAt,
		UploadedAt: i.UploadedAt,
	}
	for _, a := range i.Aliases {
		out.Aliases = append(out.Aliases, api.ImageAlias{Name: a.Name, Description: a.Description})
	}
	return out
}

func (d *Daemon) listImages(w http.ResponseWriter, r *http.Request) error {
	list, err := d.db.Images(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, i := range list {
			urls = append(urls, "/1.0/images/"+i.Fingerprint)
		}
		return syncResponse(w, urls)
	}
	out := []api.Image{}
	for _, i := range list {
		ai, err := d.withUpdateSource(r.Context(), apiImage(i))
		if err != nil {
			return err
		}
		out = append(out, ai)
	}
	return syncResponse(w, out)
}

func (d *Daemon) findImage(ctx context.Context, prefix string) (db.Image, error) {
	img, err := d.db.Image(ctx, prefix)
	if errors.Is(err, db.ErrAmbiguous) {
		return img, badRequest("fingerprint prefix %q matches more than one image", prefix)
	}
	if err != nil {
		return img, notFound("image %q not found", prefix)
	}
	return img, nil
}

// resolveImage finds the local image an instance source names, by alias
// or fingerprint (prefix).
func (d *Daemon) resolveImage(ctx context.Context, src api.InstanceSource) (db.Image, error) {
	if src.Server != "" {
		return db.Image{}, badRequest("images from remote servers need a download: use remoteImage")
	}
	switch {
	case src.Fingerprint != "":
		return d.findImage(ctx, src.Fingerprint)
	case src.Alias != "":
		a, err := d.db.ImageAlias(ctx, src.Alias)
		if err != nil {
			return db.Image{}, notFound("image alias %q not found", src.Alias)
		}
		return d.findImage(ctx, a.Fingerprint)
	}
	return db.Image{}, badRequest("image source needs an alias or a fingerprint")
}

func (d *Daemon) getImage(w http.ResponseWriter, r *http.Request) error {
	img, err := d.findImage(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	ai, err := d.withUpdateSource(r.Context(), apiImage(img))
	if err != nil {
		return err
	}
	return syncResponse(w, ai)
}

// lazyPart reads the next multipart part only when first read, so that
// the store can consume the metadata part before the rootfs part arrives.
type lazyPart struct {
	mr   *multipart.Reader
	part *multipart.Part
}

func (l *lazyPart) Read(p []byte) (int, error) {
	if l.part == nil {
		// Both are the client's mistake (ErrInvalidImage: a 400), not a
		// failure of the server.
		part, err := l.mr.NextPart()
		if err != nil {
			return 0, fmt.Errorf("%w: split image: missing rootfs part: %v", images.ErrInvalidImage, err)
		}
		if n := part.FormName(); n != "rootfs" && n != "rootfs.img" {
			return 0, fmt.Errorf("%w: split image: unexpected part %q after metadata (want rootfs or rootfs.img)", images.ErrInvalidImage, n)
		}
		l.part = part
	}
	return l.part.Read(p)
}

// createImage receives an image upload: a unified tarball as the raw body,
// or a split image as multipart/form-data with "metadata" and "rootfs"
// (or "rootfs.img" for squashfs) parts.
func (d *Daemon) createImage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ctype, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ctype == "" {
		// Like LXD, a request without a type is JSON if it looks like
		// it: no image file starts with "{" (compressed ones start with
		// their magic, tarballs with a file name).
		br := bufio.NewReader(r.Body)
		if first, err := br.Peek(1); err == nil && first[0] == '{' {
			ctype = "application/json"
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{br, r.Body}
	}
	if ctype == "application/json" {
		var req imagesPost
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.Source == nil {
			return badRequest("image source missing: upload an image file, or give a source of type image, instance or snapshot")
		}
		var op *operations.Operation
		var err error
		switch req.Source.Type {
		case "instance", "container", "snapshot":
			op, err = d.publishImage(ctx, req)
		case "image":
			op, err = d.pullImage(ctx, req.ImagesPost)
		default:
			return badRequest("image source type %q is not supported (use image, instance or snapshot)", req.Source.Type)
		}
		if err != nil {
			return err
		}
		return asyncResponse(w, op)
	}
	var meta io.Reader = r.Body
	var rootfs io.Reader
	if ctype == "multipart/form-data" {
		mr := multipart.NewReader(r.Body, params["boundary"])
		part, err := mr.NextPart()
		if err != nil {
			return badRequest("split image upload: %v", err)
		}
		if part.FormName() != "metadata" {
			return badRequest("split image upload: first part is %q, want metadata", part.FormName())
		}
		meta, rootfs = part, &lazyPart{mr: mr}
	}
	info, err := d.images.Add(ctx, meta, rootfs, fileHeader(r, "fingerprint"))
	switch {
	case errors.Is(err, images.ErrExists):
		return conflict("%v", err)
	case errors.Is(err, images.ErrFingerprintMismatch):
		return badRequest("%v", err)
	case errors.Is(err, images.ErrInvalidImage):
		return badRequest("%v", err)
	case err != nil:
		return fmt.Errorf("store image: %w", err)
	}
	props := map[string]string{}
	if raw := fileHeader(r, "properties"); raw != "" {
		q, err := url.ParseQuery(raw)
		if err != nil {
			_ = d.images.Delete(info.Fingerprint)
			return badRequest("X-LXD-properties: %v", err)
		}
		for k := range q {
			props[k] = q.Get(k)
		}
	}
	var aliases []api.ImageAlias
	for _, alias := range splitComma(fileHeader(r, "aliases")) {
		aliases = append(aliases, api.ImageAlias{Name: alias})
	}
	img, err := d.recordImage(ctx, info, fileHeader(r, "filename"), config.IsTrue(fileHeader(r, "public")), props, aliases)
	if err != nil {
		return err
	}
	// The upload is done; the operation reports its result the way LXD
	// clients expect.
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Downloading image",
		Resources:   map[string][]string{"images": {"/1.0/images/" + img.Fingerprint}},
		Run: func(ctx context.Context, op *operations.Operation) error {
			op.SetMetadata(map[string]any{"fingerprint": img.Fingerprint, "size": img.Size})
			return nil
		},
	})
	return asyncResponse(w, op)
}

// recordImage adds the database row of an image just put in the store,
// with its aliases; props override the properties of its metadata.yaml. On
// error nothing of the image is left, files included.
func (d *Daemon) recordImage(ctx context.Context, info images.Info, filename string, public bool, props map[string]string, aliases []api.ImageAlias) (db.Image, error) {
	all := map[string]string{}
	for k, v := range info.Metadata.Properties {
		all[k] = v
	}
	for k, v := range props {
		all[k] = v
	}
	img := db.Image{
		Fingerprint: info.Fingerprint, Filename: filename, Size: info.Size,
		Public: public, Architecture: normalizeArch(info.Metadata.Architecture),
		Type: "container", Properties: all, UploadedAt: time.Now().UTC(),
	}
	if info.Metadata.CreationDate > 0 {
		img.CreatedAt = time.Unix(info.Metadata.CreationDate, 0).UTC()
	}
	if info.Metadata.ExpiryDate > 0 {
		img.ExpiresAt = time.Unix(info.Metadata.ExpiryDate, 0).UTC()
	}
	if err := d.db.CreateImage(ctx, img); err != nil {
		_ = d.images.Delete(info.Fingerprint)
		return img, err
	}
	for _, a := range aliases {
		err := d.db.CreateImageAlias(ctx, db.ImageAlias{Name: a.Name, Description: a.Description, Fingerprint: img.Fingerprint})
		if err != nil {
			ctx := context.WithoutCancel(ctx)
			_ = d.db.DeleteImage(ctx, img.Fingerprint)
			_ = d.images.Delete(img.Fingerprint)
			if errors.Is(err, db.ErrExists) {
				return img, conflict("image alias %q already exists", a.Name)
			}
			return img, err
		}
	}
	d.events.Lifecycle("image-created", "/1.0/images/"+img.Fingerprint, nil)
	return img, nil
}

func (d *Daemon) putImage(w http.ResponseWriter, r *http.Request) error {
	return d.updateImage(w, r, false)
}

func (d *Daemon) patchImage(w http.ResponseWriter, r *http.Request) error {
	return d.updateImage(w, r, true)
}

func (d *Daemon) updateImage(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	img, err := d.findImage(ctx, chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	var req map[string]any
	if err := readJSON(r, &req); err != nil {
		return err
	}
	var put api.ImagePut
	if err := remarshal(req, &put); err != nil {
		return badRequest("%v", err)
	}
	if !patch {
		img.Public, img.AutoUpdate, img.Properties, img.ExpiresAt = put.Public, put.AutoUpdate, put.Properties, put.ExpiresAt
	} else {
		if _, ok := req["public"]; ok {
			img.Public = put.Public
		}
		if _, ok := req["auto_update"]; ok {
			img.AutoUpdate = put.AutoUpdate
		}
		if _, ok := req["expires_at"]; ok {
			img.ExpiresAt = put.ExpiresAt
		}
		for k, v := range put.Properties {
			img.Properties[k] = v
		}
	}
	if img.Properties == nil {
		img.Properties = map[string]string{}
	}
	if err := d.db.UpdateImage(ctx, img); err != nil {
		return err
	}
	return syncResponse(w, nil)
}

func (d *Daemon) deleteImage(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	img, err := d.findImage(ctx, chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Deleting image",
		Resources:   map[string][]string{"images": {"/1.0/images/" + img.Fingerprint}},
		Run: func(ctx context.Context, op *operations.Operation) error {
			return d.removeImage(ctx, img.Fingerprint)
		},
	})
	return asyncResponse(w, op)
}

// removeImage deletes an image: its row and aliases, its volume in every
// pool and its files. Instances made from it keep their own copies.
func (d *Daemon) removeImage(ctx context.Context, fp string) error {
	unlock := d.locks.Lock("image/" + fp)
	defer unlock()
	if err := d.db.DeleteImage(ctx, fp); err != nil {
		return err
	}
	d.poolsMu.RLock()
	defer d.poolsMu.RUnlock()
	for _, p := range d.pools {
		if err := p.DeleteImage(ctx, fp); err != nil {
			return err
		}
	}
	if err := d.images.Delete(fp); err != nil {
		return err
	}
	d.events.Lifecycle("image-deleted", "/1.0/images/"+fp, nil)
	return nil
}

// exportImage sends the image files: the unified tarball as is, or the
// split files as multipart/form-data (metadata, rootfs or rootfs.img).
func (d *Daemon) exportImage(w http.ResponseWriter, r *http.Request) error {
	img, err := d.findImage(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	meta, rootfs, err := d.images.Open(img.Fingerprint)
	if err != nil {
		return err
	}
	defer meta.Close()
	name := img.Filename
	if name == "" {
		name = img.Fingerprint + ".tar"
	}
	if rootfs == nil {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		_, _ = io.Copy(w, meta)
		return nil
	}
	defer rootfs.Close()
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", mw.FormDataContentType())
	part, err := mw.CreateFormFile("metadata", name)
	if err == nil {
		_, err = io.Copy(part, meta)
	}
	if err == nil {
		info, ierr := d.images.Info(r.Context(), img.Fingerprint)
		field := "rootfs"
		if ierr == nil && info.RootfsType == "squashfs" {
			field = "rootfs.img"
		}
		part, err = mw.CreateFormFile(field, img.Fingerprint+".rootfs")
		if err == nil {
			_, err = io.Copy(part, rootfs)
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		// Headers are gone already; all that is left is to cut the stream.
		return nil
	}
	return nil
}

// Aliases.

func aliasName(r *http.Request) (string, error) {
	name, err := url.PathUnescape(chi.URLParam(r, "*"))
	if err != nil || name == "" {
		return "", badRequest("invalid alias name in URL")
	}
	return name, nil
}

func validateAliasName(name string) error {
	if name == "" || strings.ContainsAny(name, ":\n\r\x00") || strings.HasPrefix(name, "/") || len(name) > 255 {
		return badRequest("image alias name %q is not allowed: it must be 1-255 characters without colons or control characters", name)
	}
	return nil
}

func apiAlias(a db.ImageAlias) api.ImageAliasesEntry {
	return api.ImageAliasesEntry{Name: a.Name, Type: "container",
		ImageAliasesEntryPut: api.ImageAliasesEntryPut{Description: a.Description, Target: a.Fingerprint}}
}

func (d *Daemon) listImageAliases(w http.ResponseWriter, r *http.Request) error {
	list, err := d.db.ImageAliases(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, a := range list {
			urls = append(urls, "/1.0/images/aliases/"+url.PathEscape(a.Name))
		}
		return syncResponse(w, urls)
	}
	out := []api.ImageAliasesEntry{}
	for _, a := range list {
		out = append(out, apiAlias(a))
	}
	return syncResponse(w, out)
}

func (d *Daemon) createImageAlias(w http.ResponseWriter, r *http.Request) error {
	var req api.ImageAliasesPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := validateAliasName(req.Name); err != nil {
		return err
	}
	img, err := d.findImage(r.Context(), req.Target)
	if err != nil {
		return err
	}
	err = d.db.CreateImageAlias(r.Context(), db.ImageAlias{Name: req.Name, Description: req.Description, Fingerprint: img.Fingerprint})
	if errors.Is(err, db.ErrExists) {
		return conflict("image alias %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	return createdResponse(w, "/1.0/images/aliases/"+url.PathEscape(req.Name))
}

func (d *Daemon) getImageAlias(w http.ResponseWriter, r *http.Request) error {
	name, err := aliasName(r)
	if err != nil {
		return err
	}
	a, err := d.db.ImageAlias(r.Context(), name)
	if err != nil {
		return notFound("image alias %q not found", name)
	}
	return syncResponse(w, apiAlias(a))
}

func (d *Daemon) putImageAlias(w http.ResponseWriter, r *http.Request) error {
	return d.updateImageAlias(w, r, false)
}

func (d *Daemon) patchImageAlias(w http.ResponseWriter, r *http.Request) error {
	return d.updateImageAlias(w, r, true)
}

func (d *Daemon) updateImageAlias(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	name, err := aliasName(r)
	if err != nil {
		return err
	}
	a, err := d.db.ImageAlias(ctx, name)
	if err != nil {
		return notFound("image alias %q not found", name)
	}
	var req api.ImageAliasesEntryPut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if !patch || req.Description != "" {
		a.Description = req.Description
	}
	if !patch || req.Target != "" {
		img, err := d.findImage(ctx, req.Target)
		if err != nil {
			return err
		}
		a.Fingerprint = img.Fingerprint
	}
	if err := d.db.UpdateImageAlias(ctx, a); err != nil {
		return err
	}
	return syncResponse(w, nil)
}

func (d *Daemon) renameImageAlias(w http.ResponseWriter, r *http.Request) error {
	name, err := aliasName(r)
	if err != nil {
		return err
	}
	var req api.ImageAliasesEntryPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := validateAliasName(req.Name); err != nil {
		return err
	}
	err = d.db.RenameImageAlias(r.Context(), name, req.Name)
	if errors.Is(err, db.ErrExists) {
		return conflict("image alias %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	return createdResponse(w, "/1.0/images/aliases/"+url.PathEscape(req.Name))
}

func (d *Daemon) deleteImageAlias(w http.ResponseWriter, r *http.Request) error {
	name, err := aliasName(r)
	if err != nil {
		return err
	}
	if err := d.db.DeleteImageAlias(r.Context(), name); err != nil {
		return err
	}
	return syncResponse(w, nil)
}
