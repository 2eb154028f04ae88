package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/shared/api"
	"cell/storage"
)

func instanceURL(name string) string { return "/1.0/instances/" + name }

func instanceResources(names ...string) map[string][]string {
	var urls, old []string
	for _, n := range names {
		urls = append(urls, instanceURL(n))
		old = append(old, "/1.0/containers/"+n)
	}
	return map[string][]string{"instances": urls, "containers": old}
}

func recursion(r *http.Request) int {
	n, _ := strconv.Atoi(r.URL.Query().Get("recursion"))
	return n
}

func (d *Daemon) listInstances(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	rows, err := d.db.Instances(ctx)
	if err != nil {
		return err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	filter, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return err
	}
	base := "/1.0/instances/"
	if strings.HasPrefix(r.URL.Path, "/1.0/containers") {
		base = "/1.0/containers/"
	}
	urls := []string{}
	full := []any{}
	var snapshots map[int64][]db.Snapshot
	if recursion(r) > 1 {
		if snapshots, err = d.db.AllSnapshots(ctx); err != nil {
			return err
		}
	}
	var stateOf []*instance // recursion 2: the instances whose state goes in full
	for _, row := range rows {
		inst := expand(row, profiles)
		ai := d.apiInstance(inst)
		if !filter.match(ai) {
			continue
		}
		switch recursion(r) {
		case 0:
			urls = append(urls, base+inst.Name)
		case 1:
			full = append(full, ai)
		default:
			snaps := []api.InstanceSnapshot{}
			for _, s := range snapshots[inst.ID] {
				snaps = append(snaps, d.apiSnapshot(s, profiles))
			}
			full = append(full, api.InstanceFull{Instance: ai, Snapshots: snaps, Backups: []any{}})
			stateOf = append(stateOf, inst)
		}
	}
	if recursion(r) == 0 {
		return syncResponse(w, urls)
	}
	for i, st := range d.instanceStates(stateOf) {
		f := full[i].(api.InstanceFull)
		f.State = st
		full[i] = f
	}
	return syncResponse(w, full)
}

// instanceStates reads the state of many instances at once. Each state is
// a few round trips to the container's monitor and a visit to its network
// namespace: waiting, not computing, so a few run in parallel.
func (d *Daemon) instanceStates(insts []*instance) []*api.InstanceState {
	states := make([]*api.InstanceState, len(insts))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(8, len(insts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				states[i] = d.instanceState(insts[i])
			}
		}()
	}
	for i := range insts {
		next <- i
	}
	close(next)
	wg.Wait()
	return states
}

func (d *Daemon) getInstance(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	inst, err := d.loadInstance(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	ai := d.apiInstance(inst)
	if recursion(r) > 0 {
		profiles, err := d.profileMap(ctx)
		if err != nil {
			return err
		}
		snaps, err := d.instanceSnapshots(ctx, inst, profiles)
		if err != nil {
			return err
		}
		return syncResponse(w, api.InstanceFull{Instance: ai, State: d.instanceState(inst), Snapshots: snaps, Backups: []any{}})
	}
	return syncResponse(w, ai)
}

// Words for generated instance names, as LXD does when no name is given.
var (
	nameAdjectives = []string{"able", "brave", "calm", "eager", "fair", "gentle", "happy", "keen", "lucid", "merry", "noble", "proud", "quick", "sunny", "tidy", "witty"}
	nameNouns      = []string{"ant", "bee", "cat", "deer", "eel", "fox", "gnu", "hare", "ibis", "jay", "koala", "lynx", "mole", "newt", "owl", "puma"}
)

func randomName() string {
	pick := func(list []string) string {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(list))))
		return list[n.Int64()]
	}
	return pick(nameAdjectives) + "-" + pick(nameNouns)
}

func (d *Daemon) createInstance(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if r.Header.Get("Content-Type") == "application/octet-stream" {
		return d.importBackup(w, r) // a backup tarball: `lxc import`
	}
	var req api.InstancesPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Source.Type == "copy" {
		return d.copyInstance(w, r, req)
	}
	if req.Source.Type == "migration" {
		return d.migrateTarget(w, r, req)
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
	if req.Config == nil {
		req.Config = map[string]string{}
	}
	if req.Devices == nil {
		req.Devices = api.Devices{}
	}
	if err := config.ValidateInstance(req.Config); err != nil {
		return badRequest("%v", err)
	}
	// Devices as profiles take them: one celld cannot set up must not be
	// accepted and then silently left out.
	if err := validateDevices(req.Devices); err != nil {
		return err
	}
	if req.Architecture != "" {
		arch, err := supportedArchitecture(req.Architecture)
		if err != nil {
			return err
		}
		req.Architecture = arch
	}
	if req.Profiles == nil {
		req.Profiles = []string{"default"}
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	for _, p := range req.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("profile %q does not exist", p)
		}
	}

	var image *db.Image
	var fetchImage func(context.Context, *operations.Operation) error
	switch req.Source.Type {
	case "image":
		var img db.Image
		var err error
		if req.Source.Server != "" {
			img, fetchImage, err = d.remoteImage(ctx, remoteSource{Server: req.Source.Server, Protocol: req.Source.Protocol,
				Alias: req.Source.Alias, Fingerprint: req.Source.Fingerprint, Certificate: req.Source.Certificate, Secret: req.Source.Secret, AutoUpdate: false})
		} else {
			img, err = d.resolveImage(ctx, req.Source)
		}
		if err != nil {
			return err
		}
		image = &img
	case "none", "":
	default:
		return badRequest("instance source type %q is not supported (use image or none)", req.Source.Type)
	}

	row := db.Instance{
		Name: req.Name, Type: "container", Architecture: req.Architecture, Ephemeral: req.Ephemeral,
		Description: req.Description, Config: req.Config, Devices: req.Devices, Profiles: req.Profiles,
		CreatedAt: time.Now().UTC(),
	}
	inst := expand(row, profiles)
	if err := checkDevicePaths(inst.expandedDevices); err != nil {
		return err
	}
	if _, err := limitsOf(inst.expandedConfig); err != nil {
		return err
	}
	root := inst.expandedDevices["root"]
	if root["type"] != "disk" || root["path"] != "/" || root["pool"] == "" {
		return badRequest("instance has no root disk device: add one with a pool (for example to the default profile)")
	}
	pool, err := d.pool(root["pool"])
	if err != nil {
		return badRequest("root disk: %v", err)
	}
	if _, err := rootSize(root, pool.Name()); err != nil {
		return err
	}
	row.Pool = root["pool"]
	if err := d.checkNICs(ctx, inst.expandedDevices); err != nil {
		return err
	}
	if image != nil {
		if row.Architecture == "" {
			row.Architecture = image.Architecture
		}
		for k, v := range image.Properties {
			row.Config["image."+k] = v
		}
		row.Config[keyBaseImage] = image.Fingerprint
	}
	if row.Architecture == "" {
		row.Architecture = hostArchitecture()
	}
	row.Config[keyApplyTemplate] = "create"
	// The row exists, hidden, before anything is made on disk: a name
	// clash is refused here, and a crash from now on is cleaned up at the
	// next start.
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
		Resources:   instanceResources(req.Name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			var err error
			if fetchImage != nil {
				err = fetchImage(ctx, op)
			}
			if err == nil {
				err = d.fillInstance(ctx, row, pool, image)
			}
			if err == nil {
				err = d.createdNICs(ctx, row.Name)
			}
			if err != nil {
				slog.Error("create instance", "instance", row.Name, "err", err)
				d.removeNICHostFiles(row.Name, nil)
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

// fillInstance makes the instance's volume and then shows the instance.
func (d *Daemon) fillInstance(ctx context.Context, row db.Instance, pool storage.Driver, image *db.Image) error {
	unlock := d.locks.Lock("instance/" + row.Name)
	defer unlock()
	if image == nil {
		if err := pool.CreateInstanceEmpty(ctx, row.Name); err != nil {
			return fmt.Errorf("create volume: %w", err)
		}
		// An empty rootfs is owned by host root: record it as unshifted.
		if err := d.db.SetInstanceConfig(ctx, row.ID, map[string]string{keyLastIdmap: "privileged"}); err != nil {
			return err
		}
	} else {
		if err := d.ensureImageVolume(ctx, pool, image.Fingerprint); err != nil {
			return err
		}
		if err := pool.CreateInstanceFromImage(ctx, row.Name, image.Fingerprint); err != nil {
			return fmt.Errorf("create volume from image: %w", err)
		}
		// Image volumes are unpacked for the default map.
		if err := d.db.SetInstanceConfig(ctx, row.ID, map[string]string{keyLastIdmap: d.idmap.String()}); err != nil {
			return err
		}
		_ = d.db.TouchImage(ctx, image.Fingerprint, time.Now())
	}
	if err := d.applyRootSize(ctx, row, pool, false); err != nil {
		return err
	}
	return d.db.SetInstanceReady(ctx, row.ID, true)
}

// ensureImageVolume unpacks an image into the pool once; parallel
// launches of the same image wait for the first one.
func (d *Daemon) ensureImageVolume(ctx context.Context, pool storage.Driver, fp string) error {
	unlock := d.locks.Lock("image/" + fp)
	defer unlock()
	if pool.HasImage(fp) {
		return nil
	}
	return pool.CreateImage(ctx, fp, func(dir string) error {
		return d.images.Unpack(ctx, fp, dir, d.idmap)
	})
}

func (d *Daemon) putInstance(w http.ResponseWriter, r *http.Request) error {
	return d.updateInstance(w, r, false)
}

func (d *Daemon) patchInstance(w http.ResponseWriter, r *http.Request) error {
	return d.updateInstance(w, r, true)
}

// updateInstance replaces (PUT) or merges (PATCH) an instance's config,
// devices, profiles and description. volatile.* keys belong to celld: they
// are kept as they are, and a request that changes one is refused.
func (d *Daemon) updateInstance(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	req := api.InstancePut{
		Architecture: inst.Architecture, Config: maps.Clone(inst.Config), Devices: inst.Devices,
		Ephemeral: inst.Ephemeral, Profiles: inst.Profiles, Description: inst.Description,
	}
	if patch {
		var p api.InstancePut
		if err := readJSON(r, &p); err != nil {
			return err
		}
		maps.Copy(req.Config, p.Config)
		if p.Devices != nil {
			req.Devices = maps.Clone(req.Devices)
			maps.Copy(req.Devices, p.Devices)
		}
		if p.Profiles != nil {
			req.Profiles = p.Profiles
		}
		if p.Description != "" {
			req.Description = p.Description
		}
	} else {
		req = api.InstancePut{}
		if err := readJSON(r, &req); err != nil {
			return err
		}
		if req.Restore != "" {
			return d.restoreInstance(w, r, inst, req)
		}
		if req.Config == nil {
			req.Config = map[string]string{}
		}
		if req.Devices == nil {
			req.Devices = api.Devices{}
		}
		if req.Profiles == nil {
			req.Profiles = []string{}
		}
	}
	for k, v := range req.Config {
		if strings.HasPrefix(k, "volatile.") && v != inst.Config[k] {
			return badRequest("%s is managed by celld and cannot be changed", k)
		}
	}
	for k, v := range inst.Config {
		if strings.HasPrefix(k, "volatile.") {
			req.Config[k] = v
		}
	}
	for k, v := range req.Config {
		if v == "" {
			delete(req.Config, k)
		}
	}
	if err := config.ValidateInstance(req.Config); err != nil {
		return badRequest("%v", err)
	}
	if err := validateDevices(req.Devices); err != nil {
		return err
	}
	if req.Architecture != "" && req.Architecture != inst.Architecture {
		if req.Architecture, err = supportedArchitecture(req.Architecture); err != nil {
			return err
		}
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	for _, p := range req.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("profile %q does not exist", p)
		}
	}
	row := inst.Instance
	row.Config, row.Devices, row.Profiles, row.Description, row.Ephemeral = req.Config, req.Devices, req.Profiles, req.Description, req.Ephemeral
	if req.Architecture != "" {
		row.Architecture = req.Architecture
	}
	updated := expand(row, profiles)
	if root := updated.expandedDevices["root"]; root["pool"] != inst.Pool {
		return badRequest("the root disk must stay on pool %q (moving between pools is not supported yet)", inst.Pool)
	}
	if err := d.checkDiskVolumes(ctx, updated.expandedDevices); err != nil {
		return err
	}
	if err := d.checkNICUpdate(ctx, inst, updated); err != nil {
		return err
	}
	// A changed root disk size applies at once, running or not; a size
	// the pool refuses changes nothing.
	if oldSize, newSize := inst.expandedDevices["root"]["size"], updated.expandedDevices["root"]["size"]; oldSize != newSize {
		pool, err := d.pool(inst.Pool)
		if err != nil {
			return err
		}
		size, err := rootSize(updated.expandedDevices["root"], pool.Name())
		if err != nil {
			return err
		}
		if err := pool.SetQuota(ctx, name, size); err != nil {
			return quotaError(err)
		}
	}
	// Limits and device paths are checked before any device moves.
	if _, err := limitsOf(updated.expandedConfig); err != nil {
		return err
	}
	if err := checkDevicePaths(updated.expandedDevices); err != nil {
		return err
	}
	undoHotplug, err := d.hotplugDisks(ctx, inst, updated)
	if err != nil {
		return err
	}
	undoProxies, err := d.updateProxies(inst, updated)
	if err != nil {
		undoHotplug()
		return err
	}
	undoNICs, err := d.hotplugNICs(ctx, inst, updated)
	if err != nil {
		undoProxies()
		undoHotplug()
		return err
	}
	undoUnix, err := d.hotplugUnix(ctx, inst, updated)
	if err != nil {
		undoNICs()
		undoProxies()
		undoHotplug()
		return err
	}
	undoLimits, err := d.applyLimits(inst, updated)
	if err != nil {
		undoUnix()
		undoNICs()
		undoProxies()
		undoHotplug()
		return err
	}
	if err := d.db.UpdateInstance(ctx, row); err != nil {
		undoNICs()
		undoProxies()
		undoLimits()
		undoUnix()
		undoHotplug()
		return err
	}
	d.resyncNICs(ctx, name)
	d.events.Lifecycle("instance-updated", instanceURL(name), nil)
	if patch {
		return syncResponse(w, nil)
	}
	// LXD answers PUT with an operation (PATCH is sync), and LXD's client
	// waits on it: a sync answer makes `lxc config set` fail with "not
	// found: /1.0/operations/". The change is a database write and is
	// already done (so user errors still answer 400 at once); the
	// operation only reports it.
	return asyncResponse(w, d.ops.Start(ctx, operations.Spec{
		Description: "Updating instance",
		Resources:   instanceResources(name),
		Run:         func(context.Context, *operations.Operation) error { return nil },
	}))
}

func (d *Daemon) deleteInstance(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	if s := d.runtimeState(name); s != liblxc.Stopped {
		return badRequest("instance %q is running: stop it first (or delete with --force)", name)
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Deleting instance",
		Resources:   instanceResources(name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			return d.removeInstance(ctx, inst)
		},
	})
	return asyncResponse(w, op)
}

// removeInstance deletes a stopped instance's volume, config and row. The
// row is hidden first, so a crash half way is finished at the next start.
func (d *Daemon) removeInstance(ctx context.Context, inst *instance) error {
	unlock := d.locks.Lock("instance/" + inst.Name)
	defer unlock()
	return d.removeInstanceLocked(ctx, inst)
}

// removeInstanceLocked is removeInstance for a caller that holds the
// instance's lock.
func (d *Daemon) removeInstanceLocked(ctx context.Context, inst *instance) error {
	if d.runtimeState(inst.Name) != liblxc.Stopped {
		return fmt.Errorf("instance %q was started again: not deleting it", inst.Name)
	}
	if err := d.db.SetInstanceReady(ctx, inst.ID, false); err != nil {
		return err
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	if err := pool.DeleteInstance(ctx, inst.Name); err != nil {
		return err
	}
	if err := d.runtime.Remove(inst.Name); err != nil {
		return err
	}
	if err := d.db.DeleteInstance(ctx, inst.ID); err != nil {
		return err
	}
	d.stopAllProxies(inst.Name)
	d.removeNICHostFiles(inst.Name, nil)
	d.removeInstanceBackups(inst.Name)
	d.events.Lifecycle("instance-deleted", instanceURL(inst.Name), nil)
	return nil
}

// postInstance renames an instance (migration comes later).
func (d *Daemon) postInstance(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	var req api.InstancePost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Migration {
		return d.migrateSource(w, r, name, req)
	}
	if req.Pool != "" {
		return badRequest("moving an instance between pools is not supported yet")
	}
	if err := config.ValidateInstanceName(req.Name); err != nil {
		return badRequest("%v", err)
	}
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	if d.runtimeState(name) != liblxc.Stopped {
		return badRequest("instance %q is running: stop it before renaming", name)
	}
	if _, err := d.db.Instance(ctx, req.Name); err == nil {
		return conflict("an instance named %q already exists", req.Name)
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: "Renaming instance",
		Resources:   instanceResources(name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			return d.renameInstance(ctx, inst, req.Name)
		},
	})
	return asyncResponse(w, op)
}

func (d *Daemon) renameInstance(ctx context.Context, inst *instance, newName string) error {
	// Both names are locked, always in the same order, so that two
	// renames crossing each other cannot deadlock.
	first, second := inst.Name, newName
	if second < first {
		first, second = second, first
	}
	defer d.locks.Lock("instance/" + first)()
	defer d.locks.Lock("instance/" + second)()
	if d.runtimeState(inst.Name) != liblxc.Stopped {
		return fmt.Errorf("instance %q was started: not renaming it", inst.Name)
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	// The old name is recorded before anything moves, so that a crash
	// between the row's rename and the volume's is finished at the next
	// start (recoverRenames).
	if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyRenameFrom: inst.Name}); err != nil {
		return err
	}
	if err := d.db.RenameInstance(ctx, inst.ID, newName); err != nil {
		_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, map[string]string{keyRenameFrom: ""})
		return err
	}
	if err := pool.RenameInstance(ctx, inst.Name, newName); err != nil {
		_ = d.db.RenameInstance(context.WithoutCancel(ctx), inst.ID, inst.Name)
		_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, map[string]string{keyRenameFrom: ""})
		return err
	}
	if err := d.runtime.Rename(inst.Name, newName); err != nil {
		return err
	}
	if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyRenameFrom: ""}); err != nil {
		return err
	}
	d.renamedNICs(ctx, inst.Name, newName)
	d.events.Lifecycle("instance-renamed", instanceURL(newName), map[string]any{"old_name": inst.Name})
	return nil
}
