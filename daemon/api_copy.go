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

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/shared/api"
	"cell/storage"
)

// keepWhenCopying reports whether a source's config key goes to its copy,
// as LXD decides for a local copy: every key but volatile ones, except the
// base image and the idmap the volume's files are shifted to (which the
// copy's files are too).
func keepWhenCopying(key string) bool {
	switch key {
	case keyBaseImage, keyLastIdmap:
		return true
	}
	return !strings.HasPrefix(key, "volatile.")
}

// copySource is what a copy is made from: an instance, or one of its
// snapshots (snap set).
type copySource struct {
	inst *instance
	snap *db.Snapshot
}

// copyInstance answers POST /1.0/instances with source type "copy": a new
// instance (or, with refresh, an existing one brought up to date) from a
// local instance or snapshot, on its pool or another one (the pool of the
// request's root disk). As LXD: the request's
// config and devices win over the source's, its profiles replace the
// source's when given, and the copy renders its "copy" templates at its
// first start.
func (d *Daemon) copyInstance(w http.ResponseWriter, r *http.Request, req api.InstancesPost) error {
	ctx := r.Context()
	srcName, snapName, isSnap := strings.Cut(req.Source.Source, "/")
	if srcName == "" || (isSnap && snapName == "") {
		return badRequest("copy source %q must be an instance name or INSTANCE/SNAPSHOT", req.Source.Source)
	}
	if req.Name == "" {
		req.Name = randomName()
	}
	if err := config.ValidateInstanceName(req.Name); err != nil {
		return badRequest("%v", err)
	}
	if req.Type != "" && req.Type != "container" {
		return badRequest("instance type %q is not supported: celld runs containers only", req.Type)
	}
	src := copySource{}
	var err error
	if isSnap {
		inst, s, err := d.loadSnapshot(ctx, srcName, snapName)
		if err != nil {
			return err
		}
		src.inst, src.snap = inst, &s
	} else if src.inst, err = d.loadInstance(ctx, srcName); err != nil {
		return err
	}
	if req.Name == srcName {
		return conflict("an instance named %q already exists", req.Name)
	}
	if req.Source.ContainerOnly {
		req.Source.InstanceOnly = true
	}

	// The user's config and devices, checked as for a create; volatile
	// keys are celld's and come from the source.
	userConfig := map[string]string{}
	for k, v := range req.Config {
		if !strings.HasPrefix(k, "volatile.") {
			userConfig[k] = v
		}
	}
	if err := config.ValidateInstance(userConfig); err != nil {
		return badRequest("%v", err)
	}
	if req.Devices == nil {
		req.Devices = api.Devices{}
	}
	if err := validateDevices(req.Devices); err != nil {
		return err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}

	base := src.inst.Instance
	if src.snap != nil {
		base.Config, base.Devices, base.Profiles = src.snap.Config, src.snap.Devices, src.snap.Profiles
		base.Architecture, base.Ephemeral, base.Description = src.snap.Architecture, src.snap.Ephemeral, src.snap.Description
	}
	row := db.Instance{
		Name: req.Name, Type: "container", Architecture: base.Architecture, Ephemeral: req.Ephemeral || base.Ephemeral,
		Description: req.Description, Config: userConfig, Devices: maps.Clone(req.Devices), Profiles: req.Profiles,
		CreatedAt: time.Now().UTC(),
	}
	if row.Description == "" {
		row.Description = base.Description
	}
	for k, v := range base.Config {
		if _, set := row.Config[k]; !set && keepWhenCopying(k) {
			row.Config[k] = v
		}
	}
	for k, v := range base.Devices {
		if _, set := row.Devices[k]; !set {
			row.Devices[k] = maps.Clone(v)
		}
	}
	if row.Profiles == nil {
		row.Profiles = base.Profiles
	}
	for _, p := range row.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("profile %q does not exist", p)
		}
	}
	root := expand(row, profiles).expandedDevices["root"]
	if root["type"] != "disk" || root["path"] != "/" || root["pool"] == "" {
		return badRequest("instance has no root disk device: add one with a pool (for example to the default profile)")
	}
	if _, err := d.db.StoragePool(ctx, root["pool"]); err != nil {
		return err
	}
	pool, err := d.pool(root["pool"])
	if err != nil {
		return err
	}
	if _, err := rootSize(root, pool.Name()); err != nil {
		return err
	}
	row.Pool = root["pool"]
	row.Config[keyApplyTemplate] = "copy"

	srcPool := pool
	if row.Pool != src.inst.Pool {
		if srcPool, err = d.pool(src.inst.Pool); err != nil {
			return err
		}
	}
	if req.Source.Refresh {
		if target, err := d.db.Instance(ctx, req.Name); err == nil {
			return d.refreshInstance(w, r, src, target, pool, req.Source.InstanceOnly)
		}
	}

	// As for a create: the row exists, hidden, before anything is made on
	// disk, and a crash from now on is cleaned up at the next start.
	id, err := d.db.CreateInstance(ctx, row)
	if errors.Is(err, db.ErrExists) {
		return conflict("an instance named %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	row.ID = id
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Creating instance",
		Resources:   instanceResources(req.Name, srcName),
		Run: func(ctx context.Context, op *operations.Operation) error {
			err := d.fillCopy(ctx, row, src, srcPool, pool, req.Source.InstanceOnly)
			if err != nil {
				slog.Error("copy instance", "instance", row.Name, "source", req.Source.Source, "err", err)
				_ = pool.DeleteInstance(context.WithoutCancel(ctx), row.Name)
				_ = d.db.DeleteInstance(context.WithoutCancel(ctx), row.ID)
				return err
			}
			d.events.Lifecycle("instance-created", instanceURL(row.Name), nil)
			return nil
		},
	})
	return asyncResponse(w, op)
}

// lockPair locks two instances in name order (as rename does), so that
// two operations on the same pair cannot deadlock.
func (d *Daemon) lockPair(a, b string) func() {
	if b < a {
		a, b = b, a
	}
	ua := d.locks.Lock("instance/" + a)
	ub := d.locks.Lock("instance/" + b)
	return func() { ub(); ua() }
}

// fillCopy copies the source's volume (and, unless instanceOnly, its
// snapshots) from pool srcPool to the new instance on pool, then shows it.
// Within a pool the driver copies as cheaply as it can; between two pools
// the files are copied (storage.Across).
func (d *Daemon) fillCopy(ctx context.Context, row db.Instance, src copySource, srcPool, pool storage.Driver, instanceOnly bool) error {
	defer d.lockPair(row.Name, src.inst.Name)()
	samePool := row.Pool == src.inst.Pool
	var snaps []db.Snapshot
	if src.snap == nil && !instanceOnly {
		var err error
		if snaps, err = d.db.Snapshots(ctx, src.inst.ID); err != nil {
			return err
		}
	}
	sc, withSnapshots := pool.(storage.SnapshotsCopier)
	switch {
	case src.snap != nil && samePool:
		if err := pool.CopySnapshotToInstance(ctx, src.inst.Name, src.snap.Name, row.Name); err != nil {
			return fmt.Errorf("copy snapshot volume: %w", err)
		}
	case src.snap != nil:
		if err := storage.CopySnapshotAcross(ctx, srcPool, src.inst.Name, src.snap.Name, pool, row.Name); err != nil {
			return fmt.Errorf("copy snapshot volume to pool %s: %w", row.Pool, err)
		}
	case !samePool:
		if err := d.copyWithSnapshots(ctx, storage.Across(srcPool, pool), src.inst.Name, row, snaps); err != nil {
			return err
		}
	case withSnapshots && len(snaps) > 0:
		if err := d.copyWithSnapshots(ctx, sc, src.inst.Name, row, snaps); err != nil {
			return err
		}
	default:
		if err := pool.CopyInstance(ctx, src.inst.Name, row.Name); err != nil {
			return fmt.Errorf("copy volume: %w", err)
		}
		for _, s := range snaps {
			if err := d.copySnapshot(ctx, s, row, pool); err != nil {
				return err
			}
		}
	}
	if err := d.applyRootSize(ctx, row, pool, false); err != nil {
		return err
	}
	return d.db.SetInstanceReady(ctx, row.ID, true)
}

// copyWithSnapshots copies a volume with its snapshots in one step (zfs):
// the snapshot rows stay hidden until the volume is made.
func (d *Daemon) copyWithSnapshots(ctx context.Context, sc storage.SnapshotsCopier, src string, target db.Instance, snaps []db.Snapshot) error {
	var ids []int64
	var names []string
	for _, s := range snaps {
		row := s
		row.ID, row.InstanceID, row.Ready = 0, target.ID, false
		id, err := d.db.CreateSnapshot(ctx, row)
		if err != nil {
			return fmt.Errorf("copy snapshot %s: %w", s.Name, err)
		}
		ids, names = append(ids, id), append(names, s.Name)
	}
	if err := sc.CopyInstanceWithSnapshots(ctx, src, target.Name, names); err != nil {
		for _, id := range ids {
			_ = d.db.DeleteSnapshot(context.WithoutCancel(ctx), id)
		}
		return fmt.Errorf("copy volume: %w", err)
	}
	for _, id := range ids {
		if err := d.db.SetSnapshotReady(ctx, id, true); err != nil {
			return err
		}
	}
	return nil
}

// copySnapshot copies snapshot s (row and volume) to instance target:
// hidden while the disk is touched, as a snapshot's creation.
func (d *Daemon) copySnapshot(ctx context.Context, s db.Snapshot, target db.Instance, pool storage.Driver) error {
	row := s
	row.ID, row.InstanceID, row.Ready = 0, target.ID, false
	id, err := d.db.CreateSnapshot(ctx, row)
	if err != nil {
		return fmt.Errorf("copy snapshot %s: %w", s.Name, err)
	}
	if err := pool.CopySnapshot(ctx, s.Instance, s.Name, target.Name); err != nil {
		_ = pool.DeleteSnapshot(context.WithoutCancel(ctx), target.Name, s.Name)
		_ = d.db.DeleteSnapshot(context.WithoutCancel(ctx), id)
		return fmt.Errorf("copy snapshot %s: %w", s.Name, err)
	}
	return d.db.SetSnapshotReady(ctx, id, true)
}

// refreshInstance brings an existing copy up to date: its volume gets the
// source's content (swapped in whole), and unless instanceOnly its
// snapshots follow the source's: missing ones are copied, ones the source
// no longer has (or has re-made under the same name) are removed. The
// target's config is kept.
func (d *Daemon) refreshInstance(w http.ResponseWriter, r *http.Request, src copySource, target db.Instance, pool storage.Driver, instanceOnly bool) error {
	if src.snap != nil {
		return badRequest("refresh copies from an instance, not from a snapshot (%s/%s)", src.inst.Name, src.snap.Name)
	}
	if target.Pool != src.inst.Pool {
		return badRequest("refresh of %q: it is on pool %q and the source %q on pool %q; copies between pools are not supported yet", target.Name, target.Pool, src.inst.Name, src.inst.Pool)
	}
	if d.runtimeState(target.Name) != liblxc.Stopped {
		return badRequest("instance %q is running: stop it before refreshing it", target.Name)
	}
	op := d.ops.Start(r.Context(), operations.Spec{
		Description: "Creating instance",
		Resources:   instanceResources(target.Name, src.inst.Name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			defer d.lockPair(target.Name, src.inst.Name)()
			if d.runtimeState(target.Name) != liblxc.Stopped {
				return fmt.Errorf("instance %q was started: not refreshing it", target.Name)
			}
			if err := d.refreshSnapshots(ctx, src.inst, target, pool, instanceOnly); err != nil {
				return err
			}
			if err := pool.RefreshInstance(ctx, src.inst.Name, target.Name); err != nil {
				return fmt.Errorf("refresh volume: %w", err)
			}
			if err := d.applyRootSize(ctx, target, pool, true); err != nil {
				slog.Warn("root disk size after refresh", "instance", target.Name, "err", err)
			}
			// The volume now holds the source's files, shifted as they are,
			// and with the source's name in them: the copy templates render
			// again at the next start.
			changes := map[string]string{keyLastIdmap: src.inst.Config[keyLastIdmap], keyApplyTemplate: "copy"}
			if err := d.db.SetInstanceConfig(ctx, target.ID, changes); err != nil {
				return err
			}
			d.events.Lifecycle("instance-updated", instanceURL(target.Name), nil)
			return nil
		},
	})
	return asyncResponse(w, op)
}

// refreshSnapshots makes target's snapshots match the source's.
func (d *Daemon) refreshSnapshots(ctx context.Context, src *instance, target db.Instance, pool storage.Driver, instanceOnly bool) error {
	if instanceOnly {
		return nil
	}
	have, err := d.db.Snapshots(ctx, target.ID)
	if err != nil {
		return err
	}
	want, err := d.db.Snapshots(ctx, src.ID)
	if err != nil {
		return err
	}
	wanted := map[string]db.Snapshot{}
	for _, s := range want {
		wanted[s.Name] = s
	}
	kept := map[string]bool{}
	for _, s := range have {
		if w, ok := wanted[s.Name]; ok && w.CreatedAt.Equal(s.CreatedAt) {
			kept[s.Name] = true
			continue
		}
		// Hidden first: a crash half way is finished at the next start.
		if err := d.db.SetSnapshotReady(ctx, s.ID, false); err != nil {
			return err
		}
		if err := pool.DeleteSnapshot(ctx, target.Name, s.Name); err != nil {
			return err
		}
		if err := d.db.DeleteSnapshot(ctx, s.ID); err != nil {
			return err
		}
	}
	for _, s := range want {
		if !kept[s.Name] {
			if err := d.copySnapshot(ctx, s, target, pool); err != nil {
				return err
			}
		}
	}
	return nil
}
