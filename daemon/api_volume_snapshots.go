package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/shared/api"
)

func volumeSnapshotURL(pool, vol, snap string) string {
	return volumeURL(pool, vol) + "/snapshots/" + snap
}

// loadVolume returns the custom volume the request's URL names.
func (d *Daemon) loadVolume(r *http.Request) (db.Volume, error) {
	if err := customOnly(r); err != nil {
		return db.Volume{}, err
	}
	return d.db.Volume(r.Context(), chi.URLParam(r, "name"), chi.URLParam(r, "volume"))
}

// doneResponse answers with an operation that has already succeeded: the
// work was done before answering, and LXD's clients wait on an operation.
func (d *Daemon) doneResponse(w http.ResponseWriter, ctx context.Context, desc string, resources map[string][]string) error {
	return asyncResponse(w, d.ops.Start(ctx, operations.Spec{
		Description: desc, Resources: resources,
		Run: func(context.Context, *operations.Operation) error { return nil },
	}))
}

func (d *Daemon) listVolumeSnapshots(w http.ResponseWriter, r *http.Request) error {
	v, err := d.loadVolume(r)
	if err != nil {
		return err
	}
	snaps, err := d.db.VolumeSnapshots(r.Context(), v.ID)
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, s := range snaps {
			urls = append(urls, volumeSnapshotURL(v.Pool, v.Name, s.Name))
		}
		return syncResponse(w, urls)
	}
	out := []api.StorageVolumeSnapshot{}
	for _, s := range snaps {
		out = append(out, apiVolumeSnapshot(s))
	}
	return syncResponse(w, out)
}

func apiVolumeSnapshot(s db.VolumeSnapshot) api.StorageVolumeSnapshot {
	return api.StorageVolumeSnapshot{Name: s.Name, Description: s.Description, Config: map[string]string{},
		ContentType: "filesystem", CreatedAt: s.CreatedAt}
}

func (d *Daemon) getVolumeSnapshot(w http.ResponseWriter, r *http.Request) error {
	v, err := d.loadVolume(r)
	if err != nil {
		return err
	}
	s, err := d.db.VolumeSnapshot(r.Context(), v.ID, chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	return syncResponse(w, apiVolumeSnapshot(s))
}

func (d *Daemon) createVolumeSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.StorageVolumeSnapshotsPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	pool, name := chi.URLParam(r, "name"), chi.URLParam(r, "volume")
	defer d.locks.Lock("volume/" + pool + "/" + name)()
	v, err := d.loadVolume(r)
	if err != nil {
		return err
	}
	if req.Name == "" {
		names, err := d.db.VolumeSnapshotNames(ctx, v.ID)
		if err != nil {
			return err
		}
		taken := map[string]bool{}
		for _, n := range names {
			taken[n] = true
		}
		for i := 0; ; i++ {
			if req.Name = fmt.Sprintf("snap%d", i); !taken[req.Name] {
				break
			}
		}
	}
	if err := config.ValidateEntityName("snapshot", req.Name); err != nil {
		return badRequest("%v", err)
	}
	vd, err := d.volumeDriver(pool)
	if err != nil {
		return err
	}
	id, err := d.db.CreateVolumeSnapshot(ctx, db.VolumeSnapshot{VolumeID: v.ID, Name: req.Name, Description: req.Description, CreatedAt: time.Now()})
	if errors.Is(err, db.ErrExists) {
		return conflict("storage volume %q already has a snapshot named %q", name, req.Name)
	}
	if err != nil {
		return err
	}
	err = vd.CreateVolumeSnapshot(ctx, name, req.Name)
	if err == nil {
		err = d.db.SetVolumeSnapshotReady(ctx, id, true)
	}
	if err != nil {
		bg := context.WithoutCancel(ctx)
		_ = vd.DeleteVolumeSnapshot(bg, name, req.Name)
		_ = d.db.DeleteVolumeSnapshot(bg, id)
		return fmt.Errorf("snapshot storage volume %s: %w", name, err)
	}
	u := volumeSnapshotURL(pool, name, req.Name)
	d.events.Lifecycle("storage-volume-snapshot-created", u, nil)
	return d.doneResponse(w, ctx, "Creating storage volume snapshot", map[string][]string{"storage_volume_snapshots": {u}})
}

func (d *Daemon) deleteVolumeSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	pool, name := chi.URLParam(r, "name"), chi.URLParam(r, "volume")
	defer d.locks.Lock("volume/" + pool + "/" + name)()
	v, err := d.loadVolume(r)
	if err != nil {
		return err
	}
	s, err := d.db.VolumeSnapshot(ctx, v.ID, chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	vd, err := d.volumeDriver(pool)
	if err != nil {
		return err
	}
	if err := d.db.SetVolumeSnapshotReady(ctx, s.ID, false); err != nil {
		return err
	}
	if err := vd.DeleteVolumeSnapshot(ctx, name, s.Name); err != nil {
		_ = d.db.SetVolumeSnapshotReady(context.WithoutCancel(ctx), s.ID, true)
		return fmt.Errorf("delete snapshot %s of storage volume %s: %w", s.Name, name, err)
	}
	if err := d.db.DeleteVolumeSnapshot(ctx, s.ID); err != nil {
		return err
	}
	u := volumeSnapshotURL(pool, name, s.Name)
	d.events.Lifecycle("storage-volume-snapshot-deleted", u, nil)
	return d.doneResponse(w, ctx, "Deleting storage volume snapshot", map[string][]string{"storage_volume_snapshots": {u}})
}

// recoverVolumeSnapshots removes the snapshots whose creation or deletion
// a crash interrupted.
func (d *Daemon) recoverVolumeSnapshots(ctx context.Context) {
	unfinished, err := d.db.UnfinishedVolumeSnapshots(ctx)
	if err != nil {
		slog.Error("list unfinished volume snapshots", "err", err)
		return
	}
	for _, s := range unfinished {
		vd, err := d.volumeDriver(s.Pool)
		if err != nil {
			continue
		}
		if err := vd.DeleteVolumeSnapshot(ctx, s.Volume, s.Name); err != nil {
			slog.Error("remove unfinished volume snapshot", "pool", s.Pool, "volume", s.Volume, "snapshot", s.Name, "err", err)
			continue
		}
		_ = d.db.DeleteVolumeSnapshot(ctx, s.ID)
	}
}
