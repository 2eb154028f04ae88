package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/operations"
)

// Image auto-update and cache expiry: a background task that, every
// images.auto_update_interval hours, looks for a newer version of each
// image that came from an image server (images copied with --auto-update,
// and cached ones when images.auto_update_cached), downloads it and moves
// the aliases to it; and that removes cached images nobody used for
// images.remote_cache_expiry days. POST /1.0/images/{fp}/refresh does the
// update of one image now.

// Server config keys, with LXD's defaults.
const (
	keyImagesAutoUpdateInterval = "images.auto_update_interval" // hours, 0 disables
	keyImagesAutoUpdateCached   = "images.auto_update_cached"   // bool
	keyImagesRemoteCacheExpiry  = "images.remote_cache_expiry"  // days, 0 keeps forever

	defaultAutoUpdateInterval = 6
	defaultRemoteCacheExpiry  = 10
)

// validateImagesConfig checks the value of an images.* server key; other
// keys are not its business.
func validateImagesConfig(key, value string) error {
	if value == "" {
		return nil // unset: back to the default
	}
	switch key {
	case keyImagesAutoUpdateInterval, keyImagesRemoteCacheExpiry:
		unit := "hours (0 disables auto-update)"
		if key == keyImagesRemoteCacheExpiry {
			unit = "days (0 keeps cached images forever)"
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 {
			return badRequest("server config key %q: %q is not allowed: want a whole number of %s", key, value, unit)
		}
	case keyImagesAutoUpdateCached:
		if _, err := config.ParseBool(value); err != nil {
			return badRequest("server config key %q: %q is not allowed: want true or false", key, value)
		}
	}
	return nil
}

// imagesSettings are the images.* server keys, defaults applied.
type imagesSettings struct {
	interval     int // hours
	updateCached bool
	expiry       int // days
}

func (d *Daemon) imagesSettings(ctx context.Context) (imagesSettings, error) {
	cfg, err := d.db.ServerConfig(ctx)
	if err != nil {
		return imagesSettings{}, err
	}
	s := imagesSettings{interval: defaultAutoUpdateInterval, updateCached: true, expiry: defaultRemoteCacheExpiry}
	// Values were validated when set.
	if v, ok := cfg[keyImagesAutoUpdateInterval]; ok {
		s.interval, _ = strconv.Atoi(v)
	}
	if v, ok := cfg[keyImagesAutoUpdateCached]; ok {
		s.updateCached = config.IsTrue(v)
	}
	if v, ok := cfg[keyImagesRemoteCacheExpiry]; ok {
		s.expiry, _ = strconv.Atoi(v)
	}
	return s, nil
}

// envImageTick is a test hook, set only by integration tests; nothing in
// production sets it. Its value is a duration (e.g. "200ms"): the image
// task then runs that often, and its clock advances one hour per run,
// starting from the time celld started. An auto_update_interval of 1 is
// so due at every run and a remote_cache_expiry of 1 day after 24 runs,
// exactly as in production, only faster. Image dates (last_used_at,
// uploaded_at) stay on the real clock.
const envImageTick = "CELL_DEBUG_IMAGE_TICK"

// imageTask runs until ctx ends: every hour it expires unused cached
// images, and when auto_update_interval hours have passed since the last
// check, it refreshes the images that follow their server. The settings
// are read at every run, so a change applies within the hour.
func (d *Daemon) imageTask(ctx context.Context) {
	clock := newTaskClock(time.Hour, false, envImageTick, "image")
	lastUpdate := clock.now()
	for clock.sleep(ctx) {
		now := clock.now()
		s, err := d.imagesSettings(ctx)
		if err != nil {
			if ctx.Err() == nil {
				slog.Error("image task: read server config", "err", err)
			}
			continue
		}
		if s.interval > 0 && now.Sub(lastUpdate) >= time.Duration(s.interval)*time.Hour {
			lastUpdate = now
			d.autoUpdateImages(ctx, s)
		}
		d.pruneImages(ctx, now, s)
	}
}

// autoUpdateImages refreshes every image that follows its server.
func (d *Daemon) autoUpdateImages(ctx context.Context, s imagesSettings) {
	list, err := d.db.Images(ctx)
	if err != nil {
		slog.Error("image auto-update: list images", "err", err)
		return
	}
	flushed := map[string]bool{}
	for _, img := range list {
		if ctx.Err() != nil {
			return
		}
		if !img.AutoUpdate && !(img.Cached && s.updateCached) {
			continue
		}
		// Each server's index is read again once per run, not once
		// per image.
		if src, ok, err := d.db.ImageSourceOf(ctx, img.Fingerprint); err == nil && ok && src.Protocol == "simplestreams" && !flushed[src.Server] {
			if c, err := simplestreamsClient(src.Server); err == nil {
				c.Flush()
			}
			flushed[src.Server] = true
		}
		if _, err := d.refreshImage(ctx, nil, img, false); err != nil {
			// The server may be down: try again at the next interval.
			slog.Warn("image auto-update", "fingerprint", img.Fingerprint, "err", err)
		}
	}
}

// refreshImage looks for a newer version of img on the server it came
// from. When there is one it is downloaded, takes over img's aliases and
// settings, and img is removed unless an instance still uses it (then the
// task removes it later, see pruneImages). It returns the fingerprint of
// the new image, or "" when img is up to date. flush reads the server's
// index again rather than the one cached for launches.
func (d *Daemon) refreshImage(ctx context.Context, op *operations.Operation, img db.Image, flush bool) (string, error) {
	unlock := d.locks.Lock("image-refresh/" + img.Fingerprint)
	defer unlock()
	src, ok, err := d.db.ImageSourceOf(ctx, img.Fingerprint)
	if err != nil {
		return "", err
	}
	if !ok || src.Alias == "" {
		// Uploaded, or asked for by fingerprint: nothing to follow.
		return "", nil
	}
	if flush && src.Protocol == "simplestreams" {
		// A refresh must see what the server publishes now, not the
		// index cached for launches. (An LXD-protocol server is asked
		// afresh every time.)
		c, err := simplestreamsClient(src.Server)
		if err != nil {
			return "", err
		}
		c.Flush()
	}
	// The alias is followed on the server it came from: a newer
	// simplestreams version, or the image another LXD or celld now
	// points the alias at (over the pinned certificate).
	rs := remoteSource{Server: src.Server, Protocol: src.Protocol, Alias: src.Alias, Certificate: src.Certificate, AutoUpdate: img.AutoUpdate}
	fetcher, upstream, err := resolveRemote(ctx, rs)
	if err != nil {
		return "", fmt.Errorf("refresh image %s: %w", img.Fingerprint, err)
	}
	if upstream.Fingerprint == img.Fingerprint {
		return "", nil
	}
	row, err := d.downloadImage(ctx, op, fetcher, upstream, rs, img.Cached)
	if err != nil {
		return "", err
	}
	row.Public, row.AutoUpdate = img.Public, img.AutoUpdate
	if err := d.db.UpdateImage(ctx, row); err != nil {
		return "", err
	}
	for _, a := range img.Aliases {
		a.Fingerprint = row.Fingerprint
		if err := d.db.UpdateImageAlias(ctx, a); err != nil {
			return "", err
		}
	}
	slog.Info("image refreshed", "old", img.Fingerprint, "new", row.Fingerprint, "server", src.Server, "alias", src.Alias)
	d.events.Lifecycle("image-refreshed", "/1.0/images/"+img.Fingerprint, map[string]any{"fingerprint": row.Fingerprint})
	if err := d.removeIfUnused(ctx, img.Fingerprint); err != nil {
		return row.Fingerprint, err
	}
	return row.Fingerprint, nil
}

// imagesInUse are the fingerprints instances were made from, creations
// still under way included.
func (d *Daemon) imagesInUse(ctx context.Context) (map[string]bool, error) {
	ready, err := d.db.Instances(ctx)
	if err != nil {
		return nil, err
	}
	pending, err := d.db.UnfinishedInstances(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, inst := range append(ready, pending...) {
		if fp := inst.Config[keyBaseImage]; fp != "" {
			used[fp] = true
		}
	}
	return used, nil
}

// removeIfUnused removes an image that no instance uses.
func (d *Daemon) removeIfUnused(ctx context.Context, fp string) error {
	used, err := d.imagesInUse(ctx)
	if err != nil || used[fp] {
		return err
	}
	return d.removeImage(ctx, fp)
}

// pruneImages removes, among the images no instance uses and no alias
// names, the cached ones not used for remote_cache_expiry days, and the
// ones that follow their server and were replaced by a newer version
// (another local image came later from the same server and alias: a
// refresh moved their aliases to it).
func (d *Daemon) pruneImages(ctx context.Context, now time.Time, s imagesSettings) {
	list, err := d.db.Images(ctx)
	if err != nil {
		if ctx.Err() == nil {
			slog.Error("image task: list images", "err", err)
		}
		return
	}
	used, err := d.imagesInUse(ctx)
	if err != nil {
		slog.Error("image task: list instances", "err", err)
		return
	}
	type key struct{ server, alias string }
	newest := map[key]db.Image{}
	sources := map[string]key{}
	for _, img := range list {
		src, ok, err := d.db.ImageSourceOf(ctx, img.Fingerprint)
		if err != nil || !ok || src.Alias == "" {
			continue
		}
		k := key{src.Server, src.Alias}
		sources[img.Fingerprint] = k
		if n, ok := newest[k]; !ok || img.UploadedAt.After(n.UploadedAt) {
			newest[k] = img
		}
	}
	for _, img := range list {
		if used[img.Fingerprint] || ctx.Err() != nil {
			continue
		}
		// An alias is a name a user gave: such an image is never
		// removed behind their back.
		if len(img.Aliases) > 0 {
			continue
		}
		reason := ""
		followsServer := img.AutoUpdate || (img.Cached && s.updateCached)
		if k, ok := sources[img.Fingerprint]; ok && followsServer && newest[k].Fingerprint != img.Fingerprint {
			reason = "replaced by a newer version"
		}
		lastUsed := img.LastUsedAt
		if lastUsed.IsZero() {
			lastUsed = img.UploadedAt
		}
		if img.Cached && s.expiry > 0 && now.Sub(lastUsed) >= time.Duration(s.expiry)*24*time.Hour {
			reason = "cache expired"
		}
		if reason == "" {
			continue
		}
		if err := d.removeImage(ctx, img.Fingerprint); err != nil && !errors.Is(err, context.Canceled) {
			slog.Error("image task: remove image", "fingerprint", img.Fingerprint, "err", err)
			continue
		}
		slog.Info("image removed", "fingerprint", img.Fingerprint, "reason", reason, "last_used", lastUsed)
	}
}

// refreshImageHandler serves POST /1.0/images/{fingerprint}/refresh. The
// operation's metadata says whether a newer version was found
// ("refreshed"), as LXD's does.
func (d *Daemon) refreshImageHandler(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	img, err := d.findImage(ctx, chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	if _, ok, err := d.db.ImageSourceOf(ctx, img.Fingerprint); err != nil {
		return err
	} else if !ok {
		return badRequest("image %s did not come from an image server: there is nothing to refresh it from", img.Fingerprint)
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Refreshing image",
		Resources:   map[string][]string{"images": {"/1.0/images/" + img.Fingerprint}},
		Run: func(ctx context.Context, op *operations.Operation) error {
			newFP, err := d.refreshImage(ctx, op, img, true)
			if err != nil {
				return err
			}
			md := map[string]any{"refreshed": newFP != ""}
			if newFP != "" {
				md["fingerprint"] = newFP
			}
			op.SetMetadata(md)
			return nil
		},
	})
	return asyncResponse(w, op)
}
