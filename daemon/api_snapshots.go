package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/go-chi/chi/v5"

	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/shared/api"
	"cell/snapshots"
	"cell/storage"
)

func snapshotURL(instance, snap string) string {
	return instanceURL(instance) + "/snapshots/" + snap
}

func snapshotResources(instance, snap string) map[string][]string {
	res := instanceResources(instance)
	res["instances_snapshots"] = []string{snapshotURL(instance, snap)}
	return res
}

// validateSnapshotName checks a snapshot name: it becomes a directory
// name on the pool and the last part of a URL.
func validateSnapshotName(name string) error {
	switch {
	case name == "":
		return errors.New("snapshot name must not be empty")
	case len(name) > 63:
		return fmt.Errorf("snapshot name %q is too long: at most 63 characters", name)
	case strings.Contains(name, "/"):
		return fmt.Errorf("snapshot name %q must not contain \"/\"", name)
	case strings.HasPrefix(name, "."):
		return fmt.Errorf("snapshot name %q must not start with \".\"", name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("snapshot name %q must not contain spaces or control characters", name)
		}
	}
	return nil
}

// apiSnapshot shows a snapshot as LXD does: the instance's config as it
// was, expanded with the profiles as they are now.
func (d *Daemon) apiSnapshot(s db.Snapshot, profiles map[string]db.Profile) api.InstanceSnapshot {
	inst := expand(db.Instance{Config: s.Config, Devices: s.Devices, Profiles: s.Profiles}, profiles)
	return api.InstanceSnapshot{
		InstancePut: api.InstancePut{
			Architecture: s.Architecture, Config: s.Config, Devices: s.Devices, Ephemeral: s.Ephemeral,
			Profiles: s.Profiles, Stateful: s.Stateful, Description: s.Description,
		},
		CreatedAt: s.CreatedAt, ExpandedConfig: inst.expandedConfig, ExpandedDevices: inst.expandedDevices,
		Name: s.Name, ExpiresAt: s.ExpiresAt,
	}
}

// instanceSnapshots returns an instance's snapshots as the API shows them.
func (d *Daemon) instanceSnapshots(ctx context.Context, inst *instance, profiles map[string]db.Profile) ([]api.InstanceSnapshot, error) {
	list, err := d.db.Snapshots(ctx, inst.ID)
	if err != nil {
		return nil, err
	}
	out := []api.InstanceSnapshot{}
	for _, s := range list {
		out = append(out, d.apiSnapshot(s, profiles))
	}
	return out, nil
}

func (d *Daemon) listInstanceSnapshots(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	inst, err := d.loadInstance(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	if recursion(r) > 0 {
		profiles, err := d.profileMap(ctx)
		if err != nil {
			return err
		}
		list, err := d.instanceSnapshots(ctx, inst, profiles)
		if err != nil {
			return err
		}
		return syncResponse(w, list)
	}
	list, err := d.db.Snapshots(ctx, inst.ID)
	if err != nil {
		return err
	}
	urls := []string{}
	for _, s := range list {
		urls = append(urls, snapshotURL(inst.Name, s.Name))
	}
	return syncResponse(w, urls)
}

// loadSnapshot returns an instance and one of its ready snapshots.
func (d *Daemon) loadSnapshot(ctx context.Context, name, snap string) (*instance, db.Snapshot, error) {
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return nil, db.Snapshot{}, err
	}
	s, err := d.db.Snapshot(ctx, inst.ID, snap)
	if errors.Is(err, db.ErrNotFound) {
		return nil, db.Snapshot{}, notFound("snapshot %q of instance %q not found", snap, name)
	}
	return inst, s, err
}

func (d *Daemon) getInstanceSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	_, s, err := d.loadSnapshot(ctx, chi.URLParam(r, "name"), chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	return syncResponse(w, d.apiSnapshot(s, profiles))
}

// nextSnapshotName is the first snapN not taken.
func nextSnapshotName(taken []string) string {
	name, _ := snapshots.Name(snapshots.DefaultPattern, time.Time{}, taken)
	return name
}

func (d *Daemon) createInstanceSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.InstanceSnapshotsPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	inst, err := d.loadInstance(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	if req.Stateful && d.runtimeState(inst.Name) != liblxc.Running {
		return badRequest("instance %q is not running: a stateful snapshot saves a running state", inst.Name)
	}
	op, err := d.startSnapshotState(ctx, inst, req.Name, req.ExpiresAt, req.Stateful)
	if err != nil {
		return err
	}
	return asyncResponse(w, op)
}

// startSnapshot starts the operation that snapshots an instance, for the
// API and for the scheduled task. An empty name is made from
// snapshots.pattern; a nil expiresAt comes from snapshots.expiry (a zero
// one is "never", as LXD's --no-expiry sends).
func (d *Daemon) startSnapshot(ctx context.Context, inst *instance, name string, expiresAt *time.Time) (*operations.Operation, error) {
	return d.startSnapshotState(ctx, inst, name, expiresAt, false)
}

// startSnapshotState is startSnapshot; stateful also saves the running
// state of the instance in the snapshot (stateful.go).
func (d *Daemon) startSnapshotState(ctx context.Context, inst *instance, name string, expiresAt *time.Time, stateful bool) (*operations.Operation, error) {
	now := time.Now().UTC()
	if name == "" {
		taken, err := d.db.SnapshotNames(ctx, inst.ID)
		if err != nil {
			return nil, err
		}
		name, err = snapshots.Name(inst.expandedConfig["snapshots.pattern"], now, taken)
		if err != nil {
			return nil, badRequest("snapshots.pattern: %v", err)
		}
	}
	if err := validateSnapshotName(name); err != nil {
		return nil, badRequest("%v", err)
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return nil, err
	}
	row := db.Snapshot{
		InstanceID: inst.ID, Name: name, Description: inst.Description, Architecture: inst.Architecture,
		Ephemeral: inst.Ephemeral, Config: inst.Config, Devices: inst.Devices, Profiles: inst.Profiles,
		CreatedAt: now, Stateful: stateful,
	}
	if expiresAt != nil {
		row.ExpiresAt = expiresAt.UTC()
	} else {
		exp, err := snapshots.ParseExpiry(inst.expandedConfig["snapshots.expiry"])
		if err != nil {
			return nil, badRequest("snapshots.expiry: %v", err)
		}
		row.ExpiresAt = exp.From(now)
	}
	// The row exists, hidden, before anything is made on disk: a name
	// clash is refused here, and a crash from now on is cleaned up at the
	// next start.
	id, err := d.db.CreateSnapshot(ctx, row)
	if errors.Is(err, db.ErrExists) {
		return nil, conflict("instance %q already has a snapshot named %q", inst.Name, name)
	}
	if err != nil {
		return nil, err
	}
	return d.ops.Start(ctx, operations.Spec{
		Description: "Snapshotting instance",
		Resources:   snapshotResources(inst.Name, name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			unlock := d.locks.Lock("instance/" + inst.Name)
			defer unlock()
			if stateful {
				cleanup, err := d.checkpointForSnapshot(ctx, inst)
				if err != nil {
					_ = d.db.DeleteSnapshot(context.WithoutCancel(ctx), id)
					return err
				}
				// The checkpoint belongs to the snapshot, not the instance.
				defer cleanup()
			}
			err := pool.CreateSnapshot(ctx, inst.Name, name)
			if err == nil {
				err = d.db.SetSnapshotReady(ctx, id, true)
			}
			if err != nil {
				slog.Error("create snapshot", "instance", inst.Name, "snapshot", name, "err", err)
				_ = pool.DeleteSnapshot(context.WithoutCancel(ctx), inst.Name, name)
				_ = d.db.DeleteSnapshot(context.WithoutCancel(ctx), id)
				return err
			}
			d.events.Lifecycle("instance-snapshot-created", snapshotURL(inst.Name, name), nil)
			return nil
		},
	}), nil
}

func (d *Daemon) deleteInstanceSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	inst, s, err := d.loadSnapshot(ctx, chi.URLParam(r, "name"), chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	op, err := d.startDeleteSnapshot(ctx, inst, s)
	if err != nil {
		return err
	}
	return asyncResponse(w, op)
}

// startDeleteSnapshot starts the operation that deletes a snapshot, for
// the API and for the expiry task.
func (d *Daemon) startDeleteSnapshot(ctx context.Context, inst *instance, s db.Snapshot) (*operations.Operation, error) {
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return nil, err
	}
	return d.ops.Start(ctx, operations.Spec{
		Description: "Deleting snapshot",
		Resources:   snapshotResources(inst.Name, s.Name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			unlock := d.locks.Lock("instance/" + inst.Name)
			defer unlock()
			// Hidden first: a crash half way is finished at the next start.
			if err := d.db.SetSnapshotReady(ctx, s.ID, false); err != nil {
				return err
			}
			if err := pool.DeleteSnapshot(ctx, inst.Name, s.Name); err != nil {
				return err
			}
			if err := d.db.DeleteSnapshot(ctx, s.ID); err != nil {
				return err
			}
			d.events.Lifecycle("instance-snapshot-deleted", snapshotURL(inst.Name, s.Name), nil)
			return nil
		},
	}), nil
}

// postInstanceSnapshot renames a snapshot.
func (d *Daemon) postInstanceSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.InstanceSnapshotPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Migration {
		return badRequest("copying snapshots to another server is not supported yet")
	}
	if err := validateSnapshotName(req.Name); err != nil {
		return badRequest("%v", err)
	}
	inst, s, err := d.loadSnapshot(ctx, chi.URLParam(r, "name"), chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	taken, err := d.db.SnapshotNames(ctx, inst.ID)
	if err != nil {
		return err
	}
	for _, n := range taken {
		if n == req.Name {
			return conflict("instance %q already has a snapshot named %q", inst.Name, req.Name)
		}
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Renaming snapshot",
		Resources:   snapshotResources(inst.Name, s.Name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			unlock := d.locks.Lock("instance/" + inst.Name)
			defer unlock()
			// As for instances: the rename is recorded before anything
			// moves, so that a crash half way is finished at the next start.
			marker := map[string]string{keySnapshotRename: s.Name + "/" + req.Name}
			if err := d.db.SetInstanceConfig(ctx, inst.ID, marker); err != nil {
				return err
			}
			unmark := map[string]string{keySnapshotRename: ""}
			if err := d.db.RenameSnapshot(ctx, s.ID, req.Name); err != nil {
				_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, unmark)
				return err
			}
			if err := pool.RenameSnapshot(ctx, inst.Name, s.Name, req.Name); err != nil {
				_ = d.db.RenameSnapshot(context.WithoutCancel(ctx), s.ID, s.Name)
				_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, unmark)
				return err
			}
			if err := d.db.SetInstanceConfig(ctx, inst.ID, unmark); err != nil {
				return err
			}
			d.events.Lifecycle("instance-snapshot-renamed", snapshotURL(inst.Name, req.Name), map[string]any{"old_name": s.Name})
			return nil
		},
	})
	return asyncResponse(w, op)
}

// putInstanceSnapshot changes a snapshot's expiry.
func (d *Daemon) putInstanceSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.InstanceSnapshotPut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	inst, s, err := d.loadSnapshot(ctx, chi.URLParam(r, "name"), chi.URLParam(r, "snap"))
	if err != nil {
		return err
	}
	if err := d.db.SetSnapshotExpiry(ctx, s.ID, req.ExpiresAt); err != nil {
		return err
	}
	d.events.Lifecycle("instance-snapshot-updated", snapshotURL(inst.Name, s.Name), nil)
	return asyncResponse(w, d.ops.Start(ctx, operations.Spec{
		Description: "Updating snapshot",
		Resources:   snapshotResources(inst.Name, s.Name),
		Run:         func(context.Context, *operations.Operation) error { return nil },
	}))
}

// restoreInstance answers PUT /1.0/instances/NAME {"restore": SNAP}: the
// volume gets the snapshot's content and the instance its config, devices
// and profiles. A running instance is stopped first and started again
// afterwards, as LXD does.
func (d *Daemon) restoreInstance(w http.ResponseWriter, r *http.Request, inst *instance, req api.InstancePut) error {
	ctx := r.Context()
	snap := req.Restore
	if owner, name, ok := strings.Cut(snap, "/"); ok {
		if owner != inst.Name {
			return badRequest("snapshot %q belongs to instance %q: only a snapshot of %q can be restored into it", snap, owner, inst.Name)
		}
		snap = name
	}
	s, err := d.db.Snapshot(ctx, inst.ID, snap)
	if errors.Is(err, db.ErrNotFound) {
		return notFound("snapshot %q of instance %q not found", snap, inst.Name)
	}
	if err != nil {
		return err
	}
	if req.Stateful && !s.Stateful {
		return badRequest("snapshot %q holds no running state: restore it without --stateful", snap)
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	for _, p := range s.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("snapshot %q uses profile %q, which no longer exists", snap, p)
		}
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	if rc, ok := pool.(storage.RestoreChecker); ok {
		if _, err := rc.CheckRestore(ctx, inst.Name, s.Name); err != nil {
			return poolError(err)
		}
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Restoring snapshot",
		Resources:   snapshotResources(inst.Name, s.Name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			wasRunning := d.runtimeState(inst.Name) != liblxc.Stopped
			if wasRunning {
				// A stateful restore replaces the running state: no need
				// for a clean shutdown of the one being dropped.
				if err := d.stopInstance(ctx, inst.Name, req.Stateful, -1, false); err != nil {
					return fmt.Errorf("stop before restore: %w", err)
				}
			}
			if err := d.restoreLocked(ctx, inst, s, pool); err != nil {
				return err
			}
			if err := d.restoredSnapshotState(ctx, inst, s.Stateful, req.Stateful); err != nil {
				return err
			}
			d.events.Lifecycle("instance-restored", instanceURL(inst.Name), map[string]any{"snapshot": s.Name})
			if req.Stateful {
				if err := d.startInstanceState(ctx, inst.Name, true); err != nil {
					return fmt.Errorf("resume the snapshot's running state: %w", err)
				}
			} else if wasRunning {
				if err := d.startInstance(ctx, inst.Name); err != nil {
					return fmt.Errorf("start after restore: %w", err)
				}
			}
			return nil
		},
	})
	return asyncResponse(w, op)
}

// restoreLocked swaps the snapshot's content in and brings back its
// config, under the instance's lock.
func (d *Daemon) restoreLocked(ctx context.Context, inst *instance, s db.Snapshot, pool storage.Driver) error {
	unlock := d.locks.Lock("instance/" + inst.Name)
	defer unlock()
	if d.runtimeState(inst.Name) != liblxc.Stopped {
		return fmt.Errorf("instance %q was started again: not restoring it", inst.Name)
	}
	cur, err := d.db.Instance(ctx, inst.Name)
	if err != nil {
		return err
	}
	var removed []string
	if rc, ok := pool.(storage.RestoreChecker); ok {
		if removed, err = rc.CheckRestore(ctx, inst.Name, s.Name); err != nil {
			return err
		}
	}
	if err := pool.RestoreSnapshot(ctx, inst.Name, s.Name); err != nil {
		return err
	}
	// A zfs restore to an older snapshot removed the newer ones.
	for _, name := range removed {
		if gone, err := d.db.Snapshot(ctx, inst.ID, name); err == nil {
			if err := d.db.DeleteSnapshot(ctx, gone.ID); err != nil {
				return err
			}
		}
	}
	row := cur
	row.Architecture, row.Ephemeral, row.Description = s.Architecture, s.Ephemeral, s.Description
	row.Config, row.Devices, row.Profiles = s.Config, s.Devices, s.Profiles
	// The volume now holds the snapshot's files, shifted as they were
	// then: its idmap record comes back with them.
	if err := d.db.UpdateInstance(ctx, row); err != nil {
		return err
	}
	// The restored volume gets the restored root disk size (a size
	// below what the snapshot holds is left unapplied, not the restore).
	if err := d.applyRootSize(ctx, row, pool, true); err != nil {
		slog.Warn("root disk size after restore", "instance", inst.Name, "err", err)
	}
	return nil
}
