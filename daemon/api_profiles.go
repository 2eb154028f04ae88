package daemon

import (
	"errors"
	"maps"
	"net/http"

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
		case "none":
		case "":
			return badRequest("device %q has no type", name)
		default:
			return badRequest("device %q: type %q is not supported yet", name, dev["type"])
		}
	}
	return nil
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
	if err := d.db.UpdateProfile(ctx, p); err != nil {
		return err
	}
	return syncResponse(w, nil)
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
	users, err := d.db.InstancesUsingProfile(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return badRequest("profile %q is in use by %d instance(s), for example %q", name, len(users), users[0])
	}
	if err := d.db.DeleteProfile(ctx, name); err != nil {
		return err
	}
	return syncResponse(w, nil)
}
