package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/shared/api"
	"cell/storage"
)

// localPoolKeys are the pool keys that belong to this host (a loop file's
// path, a device): kept in the database's host-local table.
var localPoolKeys = map[string]bool{"source": true, "size": true, "zfs.pool_name": true}

// poolConfig is a pool's whole config: shared and host-local keys.
func poolConfig(p db.StoragePool) map[string]string {
	out := maps.Clone(p.Config)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, p.Local)
	return out
}

// splitPoolConfig splits a pool's config into its shared and local parts.
func splitPoolConfig(all map[string]string) (shared, local map[string]string) {
	shared, local = map[string]string{}, map[string]string{}
	for k, v := range all {
		if localPoolKeys[k] {
			local[k] = v
		} else {
			shared[k] = v
		}
	}
	return shared, local
}

func (d *Daemon) apiPool(ctx context.Context, p db.StoragePool) (api.StoragePool, error) {
	instances, profiles, err := d.db.PoolUsers(ctx, p.Name)
	if err != nil {
		return api.StoragePool{}, err
	}
	usedBy := []string{}
	for _, u := range instances {
		usedBy = append(usedBy, instanceURL(u))
	}
	for _, u := range profiles {
		usedBy = append(usedBy, "/1.0/profiles/"+u)
	}
	// Custom volumes too, as LXD (`lxc storage info` lists them).
	volumes, err := d.db.Volumes(ctx, p.Name)
	if err != nil {
		return api.StoragePool{}, err
	}
	for _, v := range volumes {
		usedBy = append(usedBy, volumeURL(p.Name, v.Name))
	}
	status := "Created"
	if _, err := d.pool(p.Name); err != nil {
		status = "Unavailable"
	}
	return api.StoragePool{Name: p.Name, Driver: p.Driver, UsedBy: usedBy, Status: status,
		Locations: []string{"none"}, StoragePoolPut: api.StoragePoolPut{Config: poolConfig(p), Description: p.Description}}, nil
}

func (d *Daemon) listStoragePools(w http.ResponseWriter, r *http.Request) error {
	list, err := d.db.StoragePools(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, p := range list {
			urls = append(urls, "/1.0/storage-pools/"+p.Name)
		}
		return syncResponse(w, urls)
	}
	pools := []api.StoragePool{}
	for _, p := range list {
		ap, err := d.apiPool(r.Context(), p)
		if err != nil {
			return err
		}
		pools = append(pools, ap)
	}
	return syncResponse(w, pools)
}

func (d *Daemon) getStoragePool(w http.ResponseWriter, r *http.Request) error {
	p, err := d.db.StoragePool(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	ap, err := d.apiPool(r.Context(), p)
	if err != nil {
		return err
	}
	return syncResponse(w, ap)
}

// poolError answers a driver's refusal of a user's config with 400.
func poolError(err error) error {
	if errors.Is(err, storage.ErrInvalidConfig) || errors.Is(err, storage.ErrUnknownDriver) {
		return badRequest("%v", err)
	}
	return err
}

func (d *Daemon) createStoragePool(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.StoragePoolsPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := config.ValidateEntityName("storage pool", req.Name); err != nil {
		return badRequest("%v", err)
	}
	if err := storage.ValidateConfig(req.Driver, req.Config); err != nil {
		return badRequest("%v", err)
	}
	defer d.locks.Lock("pool/" + req.Name)()
	if _, err := d.db.StoragePool(ctx, req.Name); err == nil {
		return conflict("storage pool %q already exists", req.Name)
	}
	drv, cfg, err := storage.Create(ctx, req.Driver, d.storagePool(req.Name, req.Config))
	if err != nil {
		return poolError(fmt.Errorf("create storage pool %s: %w", req.Name, err))
	}
	shared, local := splitPoolConfig(cfg)
	row := db.StoragePool{Name: req.Name, Driver: req.Driver, Description: req.Description, Config: shared, Local: local}
	err = d.db.CreateStoragePool(ctx, row)
	if err != nil {
		if derr := drv.Delete(context.WithoutCancel(ctx)); derr != nil {
			slog.Error("remove storage pool after failed create", "pool", req.Name, "err", derr)
		}
	}
	// Recorded (or removed): a crash from now on has nothing to undo.
	storage.Created(d.storagePool(req.Name, req.Config))
	if err != nil {
		return err
	}
	d.poolsMu.Lock()
	d.pools[req.Name] = drv
	d.poolsMu.Unlock()
	slog.Info("created storage pool", "pool", req.Name, "driver", req.Driver, "source", cfg["source"])
	d.events.Lifecycle("storage-pool-created", "/1.0/storage-pools/"+req.Name, nil)
	return createdResponse(w, "/1.0/storage-pools/"+req.Name)
}

func (d *Daemon) putStoragePool(w http.ResponseWriter, r *http.Request) error {
	return d.updateStoragePool(w, r, false)
}

func (d *Daemon) patchStoragePool(w http.ResponseWriter, r *http.Request) error {
	return d.updateStoragePool(w, r, true)
}

// updateStoragePool replaces (PUT) or merges (PATCH) a pool's description
// and config. Keys that cannot change on a live pool (source, size) must
// keep their value; PUT may leave them out.
func (d *Daemon) updateStoragePool(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	defer d.locks.Lock("pool/" + name)()
	p, err := d.db.StoragePool(ctx, name)
	if err != nil {
		return err
	}
	var req api.StoragePoolPut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	old := poolConfig(p)
	updated := req.Config
	if updated == nil {
		updated = map[string]string{}
	}
	if patch {
		updated = maps.Clone(old)
		maps.Copy(updated, req.Config)
		if req.Description == "" {
			req.Description = p.Description
		}
	}
	for k := range localPoolKeys {
		if _, ok := updated[k]; !ok && old[k] != "" {
			updated[k] = old[k]
		}
	}
	for k, v := range updated {
		if v == "" {
			delete(updated, k)
		}
	}
	if err := storage.ValidateUpdate(p.Driver, old, updated); err != nil {
		return badRequest("%v", err)
	}
	drv, err := d.pool(name)
	if err != nil {
		return err
	}
	if err := drv.Update(ctx, updated); err != nil {
		return err
	}
	shared, _ := splitPoolConfig(updated)
	if err := d.db.UpdateStoragePool(ctx, name, req.Description, shared); err != nil {
		return err
	}
	d.events.Lifecycle("storage-pool-updated", "/1.0/storage-pools/"+name, nil)
	return syncResponse(w, nil)
}

func (d *Daemon) deleteStoragePool(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	defer d.locks.Lock("pool/" + name)()
	if _, err := d.db.StoragePool(ctx, name); err != nil {
		return err
	}
	instances, profiles, err := d.db.PoolUsers(ctx, name)
	if err != nil {
		return err
	}
	if len(instances)+len(profiles) > 0 {
		var users []string
		if len(instances) > 0 {
			users = append(users, "instances "+strings.Join(instances, ", "))
		}
		if len(profiles) > 0 {
			users = append(users, "the root disk of profiles "+strings.Join(profiles, ", "))
		}
		return badRequest("storage pool %q is in use by %s: delete or move them first", name, strings.Join(users, " and "))
	}
	if vols, err := d.db.PoolVolumeNames(ctx, name); err != nil {
		return err
	} else if len(vols) > 0 {
		return badRequest("storage pool %q holds custom volumes %s: delete them first", name, strings.Join(vols, ", "))
	}
	d.poolsMu.Lock()
	drv := d.pools[name]
	delete(d.pools, name)
	d.poolsMu.Unlock()
	if drv != nil {
		if err := drv.Delete(ctx); err != nil {
			d.poolsMu.Lock()
			d.pools[name] = drv
			d.poolsMu.Unlock()
			return fmt.Errorf("delete storage pool %s: %w", name, err)
		}
	}
	if err := d.db.DeleteStoragePool(ctx, name); err != nil {
		return err
	}
	d.events.Lifecycle("storage-pool-deleted", "/1.0/storage-pools/"+name, nil)
	return syncResponse(w, nil)
}

func (d *Daemon) getStoragePoolResources(w http.ResponseWriter, r *http.Request) error {
	drv, err := d.pool(chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	u, err := drv.Usage()
	if err != nil {
		return err
	}
	return syncResponse(w, api.ResourcesStoragePool{
		Space:  api.ResourcesStoragePoolSpace{Used: u.SpaceUsed, Total: u.SpaceTotal},
		Inodes: api.ResourcesStoragePoolInodes{Used: u.InodesUsed, Total: u.InodesTotal},
	})
}
