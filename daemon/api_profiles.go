package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/shared/api"
)

func (d *Daemon) apiProfile(r *http.Request, p db.Profile) (api.Profile, error) {
	users, err := d.db.InstancesUsingProfile(r.Context(), p.Name)
	if err != nil {
		return api.Profile{}, err
	}
	usedBy := []string{}
	for _, u := range users {
		usedBy = append(usedBy, instanceURL(u))
	}
	return api.Profile{Name: p.Name, UsedBy: usedBy,
		ProfilePut: api.ProfilePut{Config: p.Config, Description: p.Description, Devices: p.Devices}}, nil
}

func (d *Daemon) listProfiles(w http.ResponseWriter, r *http.Request) error {
	list, err := d.db.Profiles(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, p := range list {
			urls = append(urls, "/1.0/profiles/"+p.Name)
		}
		return syncResponse(w, urls)
	}
	out := []api.Profile{}
	for _, p := range list {
		ap, err := d.apiProfile(r, p)
		if err != nil {
			return err
		}
		out = append(out, ap)
	}
	return syncResponse(w, out)
}

// validateDevices checks the devices celld knows how to use so far.
func validateDevices(devices api.Devices) error {
	for name, dev := range devices {
		if err := config.ValidateEntityName("device", name); err != nil {
			return badRequest("%v", err)
		}
		switch dev["type"] {
		case "disk":
			if dev["path"] != "/" {
				if err := validateDiskDevice(name, dev); err != nil {
					return err
				}
			}
		case "nic":
			if err := validateNICDevice(name, dev); err != nil {
				return err
			}
		case "proxy":
			if err := validateProxyDevice(name, dev); err != nil {
				return err
			}
		case "unix-char", "unix-block":
			if err := validateUnixDevice(name, dev); err != nil {
				return err
			}
		case "none":
		case "":
			return badRequest("device %q has no type", name)
		default:
			return badRequest("device %q: type %q is not supported yet", name, dev["type"])
		}
	}
	return checkDevicePaths(devices)
}

func (d *Daemon) createProfile(w http.ResponseWriter, r *http.Request) error {
	var req api.ProfilesPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := config.ValidateEntityName("profile", req.Name); err != nil {
		return badRequest("%v", err)
	}
	if err := config.ValidateInstance(req.Config); err != nil {
		return badRequest("%v", err)
	}
	if err := validateDevices(req.Devices); err != nil {
		return err
	}
	if err := d.checkDiskVolumes(r.Context(), req.Devices); err != nil {
		return err
	}
	p := db.Profile{Name: req.Name, Description: req.Description, Config: req.Config, Devices: req.Devices}
	if p.Config == nil {
		p.Config = map[string]string{}
	}
	if p.Devices == nil {
		p.Devices = api.Devices{}
	}
	err := d.db.CreateProfile(r.Context(), p)
	if errors.Is(err, db.ErrExists) {
		return conflict("profile %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	return createdResponse(w, "/1.0/profiles/"+req.Name)
}

func (d *Daemon) getProfile(w http.ResponseWriter, r *http.Request) error {
	p, err := d.db.Profile(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	ap, err := d.apiProfile(r, p)
	if err != nil {
		return err
	}
	return syncResponse(w, ap)
}

func (d *Daemon) putProfile(w http.ResponseWriter, r *http.Request) error {
	return d.updateProfile(w, r, false)
}

func (d *Daemon) patchProfile(w http.ResponseWriter, r *http.Request) error {
	return d.updateProfile(w, r, true)
}

func (d *Daemon) updateProfile(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	p, err := d.db.Profile(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	var req api.ProfilePut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if patch {
		maps.Copy(p.Config, req.Config)
		maps.Copy(p.Devices, req.Devices)
		if req.Description != "" {
			p.Description = req.Description
		}
	} else {
		p.Config, p.Devices, p.Description = req.Config, req.Devices, req.Description
	}
	if p.Config == nil {
		p.Config = map[string]string{}
	}
	if p.Devices == nil {
		p.Devices = api.Devices{}
	}
	if err := config.ValidateInstance(p.Config); err != nil {
		return badRequest("%v", err)
	}
	if err := validateDevices(p.Devices); err != nil {
		return err
	}
	if err := d.checkDiskVolumes(ctx, p.Devices); err != nil {
		return err
	}
	undo, err := d.applyProfileLive(ctx, p)
	if err != nil {
		return err
	}
	if err := d.db.UpdateProfile(ctx, p); err != nil {
		undo()
		return err
	}
	return syncResponse(w, nil)
}

// applyProfileLive gives the running instances that use a profile its new
// version: limits and disk devices change live, as when an instance's own
// config changes. The new expanded config of every user is checked before
// any is touched; if one cannot take the change, those already changed
// are put back and the profile is not saved. Users' instance locks are
// taken one at a time, in name order.
func (d *Daemon) applyProfileLive(ctx context.Context, p db.Profile) (undo func(), err error) {
	var undos []func()
	undo = func() {
		for _, f := range slices.Backward(undos) {
			f()
		}
	}
	users, err := d.db.InstancesUsingProfile(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return nil, err
	}
	after := maps.Clone(profiles)
	after[p.Name] = p
	type change struct{ before, after *instance }
	var changes []change
	for _, name := range users {
		row, err := d.db.Instance(ctx, name)
		if err != nil {
			return nil, err
		}
		c := change{expand(row, profiles), expand(row, after)}
		if err := checkDevicePaths(c.after.expandedDevices); err != nil {
			return nil, badRequest("instance %q: %v", name, err)
		}
		if _, err := limitsOf(c.after.expandedConfig); err != nil {
			return nil, badRequest("instance %q: %v", name, err)
		}
		changes = append(changes, c)
	}
	for _, c := range changes {
		if err := d.applyInstanceLive(ctx, c.before, c.after, &undos); err != nil {
			undo()
			return nil, fmt.Errorf("instance %q: %w", c.before.Name, err)
		}
	}
	return undo, nil
}

// applyInstanceLive applies one instance's disk and limit changes under
// its lock, adding what reverts them to undos.
func (d *Daemon) applyInstanceLive(ctx context.Context, before, after *instance, undos *[]func()) error {
	unlock := d.locks.Lock("instance/" + before.Name)
	defer unlock()
	undoDisks, err := d.hotplugDisks(ctx, before, after)
	if err != nil {
		return err
	}
	*undos = append(*undos, undoDisks)
	undoUnix, err := d.hotplugUnix(ctx, before, after)
	if err != nil {
		return err
	}
	*undos = append(*undos, undoUnix)
	undoLimits, err := d.applyLimits(before, after)
	if err != nil {
		return err
	}
	*undos = append(*undos, undoLimits)
	return nil
}

func (d *Daemon) renameProfile(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	var req api.ProfilePost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if name == "default" {
		return forbidden("the default profile cannot be renamed")
	}
	if err := config.ValidateEntityName("profile", req.Name); err != nil {
		return badRequest("%v", err)
	}
	if _, err := d.db.Profile(r.Context(), name); err != nil {
		return err
	}
	if err := d.refuseProfileInUse(r.Context(), name, "renamed"); err != nil {
		return err
	}
	err := d.db.RenameProfile(r.Context(), name, req.Name)
	if errors.Is(err, db.ErrExists) {
		return conflict("profile %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	return createdResponse(w, "/1.0/profiles/"+req.Name)
}

func (d *Daemon) deleteProfile(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	if name == "default" {
		return forbidden("the default profile cannot be deleted")
	}
	if _, err := d.db.Profile(ctx, name); err != nil {
		return err
	}
	if err := d.refuseProfileInUse(ctx, name, "deleted"); err != nil {
		return err
	}
	if err := d.db.DeleteProfile(ctx, name); err != nil {
		return err
	}
	return syncResponse(w, nil)
}

// refuseProfileInUse answers 400, naming the instances, when a profile
// that is to be renamed or deleted is in use.
func (d *Daemon) refuseProfileInUse(ctx context.Context, name, what string) error {
	users, err := d.db.InstancesUsingProfile(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return badRequest("profile %q cannot be %s: it is in use by %s", name, what, strings.Join(users, ", "))
	}
	return nil
}
