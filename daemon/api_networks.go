package daemon

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"cell/daemon/db"
	"cell/network"
	"cell/shared/api"
)

func networkURL(name string) string { return "/1.0/networks/" + name }

// apiNetwork describes a managed network.
func apiNetwork(n db.Network, users []string) api.Network {
	if users == nil {
		users = []string{}
	}
	return api.Network{NetworkPut: api.NetworkPut{Config: n.Config, Description: n.Description},
		Name: n.Name, Type: n.Type, UsedBy: users, Managed: true, Status: "Created", Locations: []string{"none"}}
}

// apiHostInterface describes one of the host's own interfaces, listed as
// an unmanaged network as LXD does.
func apiHostInterface(name string, users []string) (api.Network, error) {
	typ, err := network.InterfaceType(name)
	if err != nil {
		return api.Network{}, notFound("network %q not found", name)
	}
	if users == nil {
		users = []string{}
	}
	return api.Network{NetworkPut: api.NetworkPut{Config: map[string]string{}}, Name: name, Type: typ,
		UsedBy: users, Managed: false, Locations: []string{}}, nil
}

// allNetworks lists the managed networks and the host's other interfaces.
func (d *Daemon) allNetworks(ctx context.Context) ([]api.Network, error) {
	rows, err := d.db.Networks(ctx)
	if err != nil {
		return nil, err
	}
	usage, err := d.networkUsage(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Network{}
	managed := map[string]bool{}
	for _, n := range rows {
		managed[n.Name] = true
		out = append(out, apiNetwork(n, usage[n.Name]))
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, i := range ifaces {
		if managed[i.Name] {
			continue
		}
		an, err := apiHostInterface(i.Name, usage[i.Name])
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, an)
	}
	slices.SortFunc(out, func(a, b api.Network) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (d *Daemon) listNetworks(w http.ResponseWriter, r *http.Request) error {
	list, err := d.allNetworks(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, n := range list {
			urls = append(urls, networkURL(n.Name))
		}
		return syncResponse(w, urls)
	}
	return syncResponse(w, list)
}

func (d *Daemon) createNetworkHandler(w http.ResponseWriter, r *http.Request) error {
	var req api.NetworksPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Type != "" && req.Type != "bridge" {
		return badRequest("network type %q is not supported (only bridge)", req.Type)
	}
	config := maps.Clone(req.Config)
	if config == nil {
		config = map[string]string{}
	}
	// LXD's defaults for a new bridge: an automatic IPv4 subnet with NAT.
	// Cell leaves IPv6 off unless asked (ipv6.address=auto picks a ULA /64).
	if _, ok := config["ipv4.address"]; !ok {
		config["ipv4.address"] = "auto"
		if _, ok := config["ipv4.nat"]; !ok {
			config["ipv4.nat"] = "true"
		}
	}
	if _, ok := config["ipv6.address"]; !ok {
		config["ipv6.address"] = "none"
	}
	if err := d.createNetwork(r.Context(), req.Name, req.Description, config); err != nil {
		return err
	}
	return createdResponse(w, networkURL(req.Name))
}

func (d *Daemon) getNetwork(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	n, err := d.db.Network(ctx, name)
	if err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	users, uerr := d.networkUsers(ctx, name)
	if uerr != nil {
		return uerr
	}
	if err != nil {
		hi, err := apiHostInterface(name, users)
		if err != nil {
			return err
		}
		return syncResponse(w, hi)
	}
	return syncResponse(w, apiNetwork(n, users))
}

// managedOr400 loads a managed network for a change: the host's own
// interfaces exist in the API but cannot be changed.
func (d *Daemon) managedOr400(ctx context.Context, name string) (db.Network, error) {
	n, err := d.managedNetwork(ctx, name)
	if err != nil && network.InterfaceExists(name) {
		return n, badRequest("network %q is not managed by celld: it cannot be changed", name)
	}
	return n, err
}

func (d *Daemon) putNetwork(w http.ResponseWriter, r *http.Request) error {
	return d.updateNetwork(w, r, false)
}

func (d *Daemon) patchNetwork(w http.ResponseWriter, r *http.Request) error {
	return d.updateNetwork(w, r, true)
}

// updateNetwork applies a new configuration to the host first and records
// it after; when the host refuses it, the old configuration is put back.
func (d *Daemon) updateNetwork(w http.ResponseWriter, r *http.Request, patch bool) error {
	ctx := r.Context()
	unlock := d.locks.Lock(networksLock)
	defer unlock()
	n, err := d.managedOr400(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	var req api.NetworkPut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	old := n
	old.Config = maps.Clone(n.Config)
	if patch {
		maps.Copy(n.Config, req.Config)
		if req.Description != "" {
			n.Description = req.Description
		}
	} else {
		n.Config, n.Description = req.Config, req.Description
	}
	// An empty value is how `c network unset` removes a key.
	maps.DeleteFunc(n.Config, func(_, v string) bool { return v == "" })
	config, spec, err := d.resolveNetworkConfig(ctx, n.Name, n.Config, true)
	if err != nil {
		return err
	}
	n.Config = config
	if err := d.networks.Up(ctx, d.ctx, spec); err != nil {
		if rerr := d.networkUp(context.WithoutCancel(ctx), old); rerr != nil {
			return err
		}
		return badRequest("the new configuration could not be applied (the old one is back): %v", err)
	}
	if err := d.db.UpdateNetwork(ctx, n); err != nil {
		_ = d.networkUp(context.WithoutCancel(ctx), old)
		return err
	}
	return syncResponse(w, nil)
}

func (d *Daemon) deleteNetworkHandler(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	unlock := d.locks.Lock(networksLock)
	defer unlock()
	n, err := d.managedOr400(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	users, err := d.networkUsers(ctx, n.Name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return badRequest("network %q is in use by %s: remove their nic devices first", n.Name, strings.Join(users, ", "))
	}
	// Not ready while the host side goes: a crash in between is finished
	// by the next start.
	if err := d.db.SetNetworkReady(ctx, n.ID, false); err != nil {
		return err
	}
	if err := d.networks.Remove(ctx, n.Name); err != nil {
		return err
	}
	if err := d.db.DeleteNetwork(ctx, n.ID); err != nil {
		return err
	}
	return syncResponse(w, nil)
}

func (d *Daemon) renameNetwork(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	unlock := d.locks.Lock(networksLock)
	defer unlock()
	n, err := d.managedOr400(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	var req api.NetworkPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if err := network.ValidateName(req.Name); err != nil {
		return badRequest("%v", err)
	}
	if _, err := d.db.Network(ctx, req.Name); err == nil {
		return conflict("network %q already exists", req.Name)
	}
	if network.InterfaceExists(req.Name) {
		return conflict("the host already has a network interface named %q", req.Name)
	}
	users, err := d.networkUsers(ctx, n.Name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return badRequest("network %q is in use by %s: it cannot be renamed", n.Name, strings.Join(users, ", "))
	}
	spec, err := network.Parse(req.Name, n.Config)
	if err != nil {
		return err
	}
	if err := d.networks.Down(ctx, n.Name); err != nil {
		return err
	}
	if err := d.networks.Rename(ctx, n.Name, req.Name); err != nil {
		_ = d.networkUp(context.WithoutCancel(ctx), n)
		return err
	}
	if err := d.db.RenameNetwork(ctx, n.ID, req.Name); err != nil {
		_ = d.networks.Rename(context.WithoutCancel(ctx), req.Name, n.Name)
		_ = d.networkUp(context.WithoutCancel(ctx), n)
		return err
	}
	if err := d.networks.Up(ctx, d.ctx, spec); err != nil {
		return err
	}
	return createdResponse(w, networkURL(req.Name))
}

func (d *Daemon) getNetworkLeases(w http.ResponseWriter, r *http.Request) error {
	n, err := d.managedOr400(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	leases, err := d.networks.Leases(n.Name)
	if err != nil {
		return err
	}
	hosts, err := d.networks.HostEntries(n.Name)
	if err != nil {
		return err
	}
	static := map[string]bool{}
	for _, h := range hosts {
		if h.IPv4 != "" {
			static[strings.ToLower(h.HWAddr)+"/"+h.IPv4] = true
		}
	}
	out := []api.NetworkLease{}
	for _, l := range leases {
		typ := "dynamic"
		if static[strings.ToLower(l.HWAddr)+"/"+l.Address] {
			typ = "static"
		}
		out = append(out, api.NetworkLease{Hostname: l.Hostname, Hwaddr: l.HWAddr, Address: l.Address, Type: typ, Location: "none"})
	}
	return syncResponse(w, out)
}

func (d *Daemon) getNetworkState(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	st, err := network.State(name)
	if errors.Is(err, network.ErrNoInterface) {
		if _, merr := d.managedNetwork(r.Context(), name); merr == nil {
			return err // managed, but its bridge is gone: a 500 worth logging
		}
		return notFound("network %q not found", name)
	}
	if err != nil {
		return err
	}
	return syncResponse(w, st)
}
