package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/shared/api"
	"cell/storage"
)

func volumeURL(pool, name string) string {
	return "/1.0/storage-pools/" + pool + "/volumes/custom/" + name
}

// volumeDriver returns a pool's driver as one that stores custom volumes.
func (d *Daemon) volumeDriver(pool string) (storage.VolumeDriver, error) {
	drv, err := d.pool(pool)
	if err != nil {
		return nil, err
	}
	vd, ok := drv.(storage.VolumeDriver)
	if !ok {
		return nil, badRequest("storage pool %q (driver %s) does not support custom volumes yet", pool, drv.Name())
	}
	return vd, nil
}

// volumeUsers returns the URLs of the instances and profiles whose disk
// devices use a custom volume.
func (d *Daemon) volumeUsers(ctx context.Context, pool, name string) ([]string, error) {
	instances, profiles, err := d.db.VolumeUsers(ctx, pool, name)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, i := range instances {
		out = append(out, instanceURL(i))
	}
	for _, p := range profiles {
		out = append(out, "/1.0/profiles/"+p)
	}
	return out, nil
}

func (d *Daemon) apiVolume(ctx context.Context, v db.Volume) (api.StorageVolume, error) {
	usedBy, err := d.volumeUsers(ctx, v.Pool, v.Name)
	if err != nil {
		return api.StorageVolume{}, err
	}
	return api.StorageVolume{Name: v.Name, Type: "custom", Pool: v.Pool, ContentType: "filesystem",
		UsedBy: usedBy, Location: "none", CreatedAt: v.CreatedAt,
		StorageVolumePut: api.StorageVolumePut{Config: v.Config, Description: v.Description}}, nil
}

// listStorageVolumes answers GET /volumes and /volumes/{type}: custom
// volumes, and (on /volumes and /volumes/container) the instance volumes.
func (d *Daemon) listStorageVolumes(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	pool := chi.URLParam(r, "name")
	typ := chi.URLParam(r, "type")
	if _, err := d.db.StoragePool(ctx, pool); err != nil {
		return err
	}
	if typ != "" && typ != "custom" && typ != "container" {
		return badRequest("volume type %q is not supported (custom, container)", typ)
	}
	var vols []db.Volume
	var instances []string
	var err error
	if typ == "" || typ == "custom" {
		if vols, err = d.db.Volumes(ctx, pool); err != nil {
			return err
		}
	}
	if typ == "" || typ == "container" {
		if instances, err = d.db.InstancesInPool(ctx, pool); err != nil {
			return err
		}
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, i := range instances {
			urls = append(urls, "/1.0/storage-pools/"+pool+"/volumes/container/"+i)
		}
		for _, v := range vols {
			urls = append(urls, volumeURL(pool, v.Name))
		}
		return syncResponse(w, urls)
	}
	out := []api.StorageVolume{}
	for _, i := range instances {
		out = append(out, api.StorageVolume{Name: i, Type: "container", Pool: pool, ContentType: "filesystem",
			UsedBy: []string{instanceURL(i)}, Location: "none",
			StorageVolumePut: api.StorageVolumePut{Config: map[string]string{}}})
	}
	for _, v := range vols {
		av, err := d.apiVolume(ctx, v)
		if err != nil {
			return err
		}
		out = append(out, av)
	}
	return syncResponse(w, out)
}

func customOnly(r *http.Request) error {
	if t := chi.URLParam(r, "type"); t != "custom" {
		return badRequest("only custom volumes can be managed here (not %q)", t)
	}
	return nil
}

func (d *Daemon) getStorageVolume(w http.ResponseWriter, r *http.Request) error {
	if err := customOnly(r); err != nil {
		return err
	}
	v, err := d.db.Volume(r.Context(), chi.URLParam(r, "name"), chi.URLParam(r, "volume"))
	if err != nil {
		return err
	}
	av, err := d.apiVolume(r.Context(), v)
	if err != nil {
		return err
	}
	return syncResponse(w, av)
}

// validateVolumeConfig refuses every key: custom volumes take none yet
// (size comes with quotas), apart from user.* keys.
func validateVolumeConfig(cfg map[string]string) error {
	for k := range cfg {
		if !strings.HasPrefix(k, "user.") {
			return badRequest("unknown storage volume config key %q (only user.* keys are supported)", k)
		}
	}
	return nil
}

// createStorageVolume makes an empty custom volume, or a copy of another
// on the same pool (source type copy).
func (d *Daemon) createStorageVolume(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	pool := chi.URLParam(r, "name")
	// source.volume_only is LXD's: a copy without the snapshots.
	var req struct {
		api.StorageVolumesPost
		Source struct {
			api.StorageVolumeSource
			VolumeOnly bool `json:"volume_only"`
		} `json:"source"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if t := chi.URLParam(r, "type"); t != "" {
		req.Type = t
	}
	if req.Type == "" {
		req.Type = "custom"
	}
	if req.Type != "custom" {
		return badRequest("only custom volumes can be created (not %q)", req.Type)
	}
	if req.ContentType != "" && req.ContentType != "filesystem" {
		return badRequest("content_type %q is not supported (filesystem)", req.ContentType)
	}
	if err := config.ValidateEntityName("storage volume", req.Name); err != nil {
		return badRequest("%v", err)
	}
	if err := validateVolumeConfig(req.Config); err != nil {
		return err
	}
	switch req.Source.Type {
	case "", "none":
	case "copy":
		if req.Source.Pool == "" {
			req.Source.Pool = pool
		}
		if err := config.ValidateEntityName("storage volume", req.Source.Name); err != nil {
			return badRequest("source: %v", err)
		}
	default:
		return badRequest("source type %q is not supported (none, copy)", req.Source.Type)
	}
	if _, err := d.db.StoragePool(ctx, pool); err != nil {
		return err
	}
	vd, err := d.volumeDriver(pool)
	if err != nil {
		return err
	}
	defer d.locks.Lock("volume/" + pool + "/" + req.Name)()
	cfg := req.Config
	var srcVD storage.VolumeDriver
	var srcSnaps []db.VolumeSnapshot
	if req.Source.Type == "copy" {
		if _, err := d.db.StoragePool(ctx, req.Source.Pool); err != nil {
			return err
		}
		src, err := d.db.Volume(ctx, req.Source.Pool, req.Source.Name)
		if err != nil {
			return err
		}
		if cfg == nil {
			cfg = maps.Clone(src.Config)
		}
		if srcVD, err = d.volumeDriver(req.Source.Pool); err != nil {
			return err
		}
		if !req.Source.VolumeOnly {
			if srcSnaps, err = d.db.VolumeSnapshots(ctx, src.ID); err != nil {
				return err
			}
		}
	}
	if cfg == nil {
		cfg = map[string]string{}
	}
	id, err := d.db.CreateVolume(ctx, db.Volume{Pool: pool, Name: req.Name, Description: req.Description, Config: cfg, CreatedAt: time.Now()})
	if errors.Is(err, db.ErrExists) {
		return conflict("storage volume %q already exists on pool %q", req.Name, pool)
	}
	if err != nil {
		return err
	}
	if req.Source.Type == "copy" {
		unlock := d.locks.Lock("volume/" + req.Source.Pool + "/" + req.Source.Name)
		err = d.copyVolume(ctx, srcVD, req.Source.Name, vd, id, req.Name, req.Source.Pool == pool, srcSnaps)
		unlock()
	} else {
		err = vd.CreateVolume(ctx, req.Name)
	}
	if err == nil {
		err = d.db.SetVolumeReady(ctx, id, true)
	}
	if err != nil {
		bg := context.WithoutCancel(ctx)
		if derr := vd.DeleteVolume(bg, req.Name); derr != nil {
			slog.Error("remove volume after failed create", "pool", pool, "volume", req.Name, "err", derr)
		}
		_ = d.db.DeleteVolume(bg, id)
		return fmt.Errorf("create storage volume %s: %w", req.Name, err)
	}
	d.events.Lifecycle("storage-volume-created", volumeURL(pool, req.Name), nil)
	if req.Source.Type == "copy" {
		// LXD answers a copy with an operation, which its client waits on.
		return d.doneResponse(w, ctx, "Copying storage volume", map[string][]string{"storage_volumes": {volumeURL(pool, req.Name)}})
	}
	return createdResponse(w, volumeURL(pool, req.Name))
}

// copyVolume fills new volume dst (row id) from volume src: on the same
// pool without snapshots, by the driver's own copy (a clone on btrfs);
// otherwise by storage.CopyVolumeBetween, which works between any two
// drivers, with the snapshots' rows hidden until the copy is whole.
func (d *Daemon) copyVolume(ctx context.Context, srcVD storage.VolumeDriver, src string, dstVD storage.VolumeDriver, id int64, dst string, samePool bool, snaps []db.VolumeSnapshot) error {
	if samePool && len(snaps) == 0 {
		return dstVD.CopyVolume(ctx, src, dst)
	}
	var ids []int64
	var names []string
	for _, s := range snaps {
		sid, err := d.db.CreateVolumeSnapshot(ctx, db.VolumeSnapshot{VolumeID: id, Name: s.Name, Description: s.Description, CreatedAt: s.CreatedAt})
		if err != nil {
			return err
		}
		ids, names = append(ids, sid), append(names, s.Name)
	}
	if err := storage.CopyVolumeBetween(ctx, srcVD, src, dstVD, dst, names); err != nil {
		for _, sid := range ids {
			_ = d.db.DeleteVolumeSnapshot(context.WithoutCancel(ctx), sid)
		}
		return err
	}
	for _, sid := range ids {
		if err := d.db.SetVolumeSnapshotReady(ctx, sid, true); err != nil {
			return err
		}
	}
	return nil
}

func (d *Daemon) putStorageVolume(w http.ResponseWriter, r *http.Request) error {
	return d.updateStorageVolume(w, r, false)
}

func (d *Daemon) patchStorageVolume(w http.ResponseWriter, r *http.Request) error {
	return d.updateStorageVolume(w, r, true)
}

func (d *Daemon) updateStorageVolume(w http.ResponseWriter, r *http.Request, patch bool) error {
	if err := customOnly(r); err != nil {
		return err
	}
	ctx := r.Context()
	pool, name := chi.URLParam(r, "name"), chi.URLParam(r, "volume")
	defer d.locks.Lock("volume/" + pool + "/" + name)()
	v, err := d.db.Volume(ctx, pool, name)
	if err != nil {
		return err
	}
	// restore is LXD's: a PUT that names a snapshot restores it, and
	// nothing else changes.
	var req struct {
		api.StorageVolumePut
		Restore string `json:"restore"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Restore != "" {
		return d.restoreStorageVolume(w, r, v, req.Restore)
	}
	cfg := req.Config
	if patch {
		cfg = maps.Clone(v.Config)
		maps.Copy(cfg, req.Config)
		if req.Description == "" {
			req.Description = v.Description
		}
	}
	if cfg == nil {
		cfg = map[string]string{}
	}
	for k, val := range cfg {
		if val == "" {
			delete(cfg, k)
		}
	}
	if err := validateVolumeConfig(cfg); err != nil {
		return err
	}
	if err := d.db.UpdateVolume(ctx, v.ID, req.Description, cfg); err != nil {
		return err
	}
	d.events.Lifecycle("storage-volume-updated", volumeURL(pool, name), nil)
	return syncResponse(w, nil)
}

// restoreStorageVolume puts a custom volume's snapshot back as its
// content. The volume must not be mounted in a running instance (its
// files would change under it); attached to stopped ones is fine.
func (d *Daemon) restoreStorageVolume(w http.ResponseWriter, r *http.Request, v db.Volume, snap string) error {
	ctx := r.Context()
	if _, err := d.db.VolumeSnapshot(ctx, v.ID, snap); err != nil {
		return err
	}
	vd, err := d.volumeDriver(v.Pool)
	if err != nil {
		return err
	}
	running, err := d.runningMounts(ctx, vd.VolumePath(v.Name))
	if err != nil {
		return err
	}
	if len(running) > 0 {
		return badRequest("storage volume %q cannot be restored: running instances %s have it mounted (stop them first)", v.Name, strings.Join(running, ", "))
	}
	if err := vd.RestoreVolumeSnapshot(ctx, v.Name, snap); err != nil {
		if errors.Is(err, storage.ErrInvalidConfig) {
			return badRequest("%v", err)
		}
		return fmt.Errorf("restore snapshot %s of storage volume %s: %w", snap, v.Name, err)
	}
	d.events.Lifecycle("storage-volume-restored", volumeURL(v.Pool, v.Name), nil)
	return syncResponse(w, nil)
}

// checkVolumeUnused refuses an operation on a volume that disk devices
// use, or that running instances still have mounted.
func (d *Daemon) checkVolumeUnused(ctx context.Context, pool, name, what string) error {
	instances, profiles, err := d.db.VolumeUsers(ctx, pool, name)
	if err != nil {
		return err
	}
	if len(instances)+len(profiles) == 0 {
		vd, err := d.volumeDriver(pool)
		if err != nil {
			return err
		}
		running, err := d.runningMounts(ctx, vd.VolumePath(name))
		if err != nil {
			return err
		}
		if len(running) > 0 {
			return badRequest("storage volume %q cannot be %s: running instances %s still have it mounted (restart or stop them first)",
				name, what, strings.Join(running, ", "))
		}
		return nil
	}
	var users []string
	if len(instances) > 0 {
		users = append(users, "instances "+strings.Join(instances, ", "))
	}
	if len(profiles) > 0 {
		users = append(users, "profiles "+strings.Join(profiles, ", "))
	}
	return badRequest("storage volume %q cannot be %s: it is attached to %s (detach it first)", name, what, strings.Join(users, " and "))
}

func (d *Daemon) renameStorageVolume(w http.ResponseWriter, r *http.Request) error {
	if err := customOnly(r); err != nil {
		return err
	}
	ctx := r.Context()
	pool, name := chi.URLParam(r, "name"), chi.URLParam(r, "volume")
	var req api.StorageVolumePost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Pool != "" && req.Pool != pool {
		return badRequest("moving a volume to another pool is not supported yet")
	}
	if err := config.ValidateEntityName("storage volume", req.Name); err != nil {
		return badRequest("%v", err)
	}
	defer d.locks.Lock("volume/" + pool + "/" + name)()
	defer d.locks.Lock("volume/" + pool + "/" + req.Name)()
	v, err := d.db.Volume(ctx, pool, name)
	if err != nil {
		return err
	}
	if err := d.checkVolumeUnused(ctx, pool, name, "renamed"); err != nil {
		return err
	}
	vd, err := d.volumeDriver(pool)
	if err != nil {
		return err
	}
	if err := d.db.RenameVolume(ctx, v.ID, req.Name); err != nil {
		if errors.Is(err, db.ErrExists) {
			return conflict("storage volume %q already exists on pool %q", req.Name, pool)
		}
		return err
	}
	if err := vd.RenameVolume(ctx, name, req.Name); err != nil {
		_ = d.db.RenameVolume(context.WithoutCancel(ctx), v.ID, name)
		return err
	}
	d.events.Lifecycle("storage-volume-renamed", volumeURL(pool, req.Name), nil)
	return createdResponse(w, volumeURL(pool, req.Name))
}

func (d *Daemon) deleteStorageVolume(w http.ResponseWriter, r *http.Request) error {
	if err := customOnly(r); err != nil {
		return err
	}
	ctx := r.Context()
	pool, name := chi.URLParam(r, "name"), chi.URLParam(r, "volume")
	defer d.locks.Lock("volume/" + pool + "/" + name)()
	v, err := d.db.Volume(ctx, pool, name)
	if err != nil {
		return err
	}
	if err := d.checkVolumeUnused(ctx, pool, name, "deleted"); err != nil {
		return err
	}
	vd, err := d.volumeDriver(pool)
	if err != nil {
		return err
	}
	// Hidden first: a crash during the removal is finished by the next start.
	if err := d.db.SetVolumeReady(ctx, v.ID, false); err != nil {
		return err
	}
	if err := vd.DeleteVolume(ctx, name); err != nil {
		_ = d.db.SetVolumeReady(context.WithoutCancel(ctx), v.ID, true)
		return fmt.Errorf("delete storage volume %s: %w", name, err)
	}
	if err := d.db.DeleteVolume(ctx, v.ID); err != nil {
		return err
	}
	d.events.Lifecycle("storage-volume-deleted", volumeURL(pool, name), nil)
	return syncResponse(w, nil)
}

// recoverVolumes finishes the creations and deletions of custom volumes
// that a crash interrupted: their volumes and rows are removed.
func (d *Daemon) recoverVolumes(ctx context.Context) {
	d.recoverVolumeSnapshots(ctx)
	unfinished, err := d.db.UnfinishedVolumes(ctx)
	if err != nil {
		slog.Error("list unfinished volumes", "err", err)
		return
	}
	for _, v := range unfinished {
		vd, err := d.volumeDriver(v.Pool)
		if err != nil {
			slog.Warn("unfinished volume on an unavailable pool", "pool", v.Pool, "volume", v.Name, "err", err)
			continue
		}
		if err := vd.DeleteVolume(ctx, v.Name); err != nil {
			slog.Error("remove unfinished volume", "pool", v.Pool, "volume", v.Name, "err", err)
			continue
		}
		if err := d.db.DeleteVolume(ctx, v.ID); err != nil {
			slog.Error("remove unfinished volume's row", "pool", v.Pool, "volume", v.Name, "err", err)
		}
	}
}
