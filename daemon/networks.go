package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"cell/daemon/db"
	"cell/network"
)

// defaultNetwork is the bridge made on first start, with the default
// profile's eth0 on it, as `lxd init --auto` does.
const defaultNetwork = "cellbr0"

// networksLock serialises every change to managed networks: subnets are
// picked and checked against each other, so two creations must not race.
const networksLock = "networks"

// managedNetwork returns the managed network called name, or a 404 error
// that names it. The NIC devices use it to check that a static
// ipv4.address lies in the network's subnet (config["ipv4.address"] is
// the bridge's address in CIDR form, "none" or absent when IPv4 is off).
func (d *Daemon) managedNetwork(ctx context.Context, name string) (db.Network, error) {
	n, err := d.db.Network(ctx, name)
	if errors.Is(err, db.ErrNotFound) {
		return n, notFound("network %q not found", name)
	}
	return n, err
}

// networkDir is a managed network's own directory: dnsmasq's leases, pid
// file, configuration and dhcp-hosts directory.
func (d *Daemon) networkDir(name string) string { return filepath.Join(d.dir, "networks", name) }

// networkDHCPHostsDir is where the NIC devices write one dnsmasq dhcp-host
// line per instance nic, in a file named "<instance>.<device>" holding
// "<hwaddr>[,<ipv4>],<instance>". dnsmasq reads new files by itself and
// celld tells it (SIGHUP) when one is rewritten or removed: no restart.
func (d *Daemon) networkDHCPHostsDir(name string) string {
	return filepath.Join(d.networkDir(name), network.HostsDir)
}

// initNetworks finishes what a crash interrupted (a network row that is
// not ready was being created or deleted: either way it goes), brings every
// network up (adopting dnsmasq processes that outlived the last celld) and,
// on first start, creates the default network.
func (d *Daemon) initNetworks(ctx context.Context, createDefault bool) error {
	d.networks = network.NewManager(filepath.Join(d.dir, "networks"))
	unfinished, err := d.db.UnfinishedNetworks(ctx)
	if err != nil {
		return err
	}
	for _, n := range unfinished {
		slog.Warn("removing network whose creation or deletion was interrupted", "network", n.Name)
		if err := d.networks.Remove(ctx, n.Name); err != nil {
			return fmt.Errorf("remove interrupted network %s: %w", n.Name, err)
		}
		if err := d.db.DeleteNetwork(ctx, n.ID); err != nil {
			return err
		}
	}
	list, err := d.db.Networks(ctx)
	if err != nil {
		return err
	}
	for _, n := range list {
		// One broken network must not keep the daemon (and every other
		// instance) down: it is logged and retried at the next change.
		if err := d.networkUp(ctx, n); err != nil {
			slog.Error("network unavailable", "network", n.Name, "err", err)
		}
	}
	if createDefault {
		if err := d.createDefaultNetwork(ctx); err != nil {
			slog.Error("could not create the default network; instances get no nic by default", "network", defaultNetwork, "err", err)
		}
	}
	return nil
}

// networkUp brings a network's host side in line with its row.
func (d *Daemon) networkUp(ctx context.Context, n db.Network) error {
	spec, err := network.Parse(n.Name, n.Config)
	if err != nil {
		return err
	}
	return d.networks.Up(ctx, d.ctx, spec)
}

// createDefaultNetwork makes cellbr0 (a free private subnet, NAT, no IPv6)
// and puts an eth0 nic on it into the default profile.
func (d *Daemon) createDefaultNetwork(ctx context.Context) error {
	if network.InterfaceExists(defaultNetwork) {
		return fmt.Errorf("host interface %s already exists", defaultNetwork)
	}
	config := map[string]string{"ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none"}
	if err := d.createNetwork(ctx, defaultNetwork, "Default network", config); err != nil {
		return err
	}
	prof, err := d.db.Profile(ctx, "default")
	if err != nil {
		return err
	}
	if _, ok := prof.Devices["eth0"]; !ok {
		prof.Devices["eth0"] = map[string]string{"type": "nic", "network": defaultNetwork, "name": "eth0"}
		if err := d.db.UpdateProfile(ctx, prof); err != nil {
			return err
		}
	}
	slog.Info("created the default network", "network", defaultNetwork)
	return nil
}

// resolveNetworkConfig validates config for network name (existing tells
// whether it already exists: its own bridge's routes are then no
// conflict), picks subnets for "auto" addresses and checks that explicit
// ones overlap nothing on the host or in another network. It returns the
// stored form (no "auto" left) and its parsed Spec; errors are the user's.
func (d *Daemon) resolveNetworkConfig(ctx context.Context, name string, config map[string]string, existing bool) (map[string]string, network.Spec, error) {
	config = maps.Clone(config)
	if config == nil {
		config = map[string]string{}
	}
	if err := network.ValidateConfig(config); err != nil {
		return nil, network.Spec{}, badRequest("%v", err)
	}
	// Other networks first: an overlap with one is reported by its name
	// rather than as its bridge's route.
	var used []network.Used
	others, err := d.db.AllNetworks(ctx)
	if err != nil {
		return nil, network.Spec{}, err
	}
	for _, o := range others {
		if o.Name == name {
			continue
		}
		for _, k := range []string{"ipv4.address", "ipv6.address"} {
			if p, err := netip.ParsePrefix(o.Config[k]); err == nil {
				used = append(used, network.Used{Prefix: p.Masked(), Dev: "network " + o.Name})
			}
		}
	}
	host, err := network.HostPrefixes(ctx)
	if err != nil {
		return nil, network.Spec{}, err
	}
	if existing {
		host = slices.DeleteFunc(host, func(u network.Used) bool { return u.Dev == name })
	}
	used = append(used, host...)
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for _, fam := range []struct {
		key  string
		pick func([]network.Used, *rand.Rand) (netip.Prefix, error)
	}{{"ipv4.address", network.PickIPv4}, {"ipv6.address", network.PickIPv6}} {
		switch v := config[fam.key]; v {
		case "", "none":
		case "auto":
			p, err := fam.pick(used, rnd)
			if err != nil {
				return nil, network.Spec{}, badRequest("%v", err)
			}
			config[fam.key] = p.String()
		default:
			p := netip.MustParsePrefix(v) // validated above
			if u, hit := network.Overlap(p, used, ""); hit {
				where := "a route on " + u.Dev
				if strings.HasPrefix(u.Dev, "network ") {
					where = u.Dev
				} else if u.Dev == "" {
					where = "a host route"
				}
				return nil, network.Spec{}, badRequest("%s %s overlaps %s (%s); pick another subnet or auto", fam.key, v, u.Prefix, where)
			}
		}
	}
	spec, err := network.Parse(name, config)
	if err != nil {
		return nil, network.Spec{}, badRequest("%v", err)
	}
	return config, spec, nil
}

// createNetwork validates, records and brings up a new managed network.
// The row stays not-ready until the bridge and dnsmasq are up; a failure
// removes everything made.
func (d *Daemon) createNetwork(ctx context.Context, name, description string, config map[string]string) error {
	unlock := d.locks.Lock(networksLock)
	defer unlock()
	if err := network.ValidateName(name); err != nil {
		return badRequest("%v", err)
	}
	if _, err := d.db.Network(ctx, name); err == nil {
		return conflict("network %q already exists", name)
	}
	if network.InterfaceExists(name) {
		return conflict("the host already has a network interface named %q", name)
	}
	config, spec, err := d.resolveNetworkConfig(ctx, name, config, false)
	if err != nil {
		return err
	}
	id, err := d.db.CreateNetwork(ctx, db.Network{Name: name, Description: description, Type: "bridge", Config: config})
	if errors.Is(err, db.ErrExists) {
		return conflict("network %q already exists", name)
	}
	if err != nil {
		return err
	}
	if err := d.networks.Up(ctx, d.ctx, spec); err != nil {
		if rerr := d.networks.Remove(context.WithoutCancel(ctx), name); rerr != nil {
			slog.Error("undo failed network creation", "network", name, "err", rerr)
			return err // the row stays not-ready: the next start cleans up
		}
		if derr := d.db.DeleteNetwork(context.WithoutCancel(ctx), id); derr != nil {
			slog.Error("undo failed network creation", "network", name, "err", derr)
		}
		return err
	}
	return d.db.SetNetworkReady(ctx, id, true)
}

// networkUsers returns the API URLs of the profiles and instances with a
// nic on the network (network=<name>, or parent=<name> for a bridged nic).
// Instances count with their profiles applied.
func (d *Daemon) networkUsers(ctx context.Context, name string) ([]string, error) {
	usage, err := d.networkUsage(ctx)
	if err != nil {
		return nil, err
	}
	if usage[name] == nil {
		return []string{}, nil
	}
	return usage[name], nil
}

// networkUsage maps every network (or host interface) a nic names to the
// URLs of its users, profiles first: one pass for a whole listing.
func (d *Daemon) networkUsage(ctx context.Context) (map[string][]string, error) {
	usage := map[string][]string{}
	add := func(devices map[string]map[string]string, url string) {
		seen := map[string]bool{}
		for _, dev := range devices {
			if dev["type"] != "nic" {
				continue
			}
			for _, n := range []string{dev["network"], dev["parent"]} {
				if n != "" && !seen[n] {
					seen[n] = true
					usage[n] = append(usage[n], url)
				}
			}
		}
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range slices.Sorted(maps.Keys(profiles)) {
		add(profiles[p].Devices, "/1.0/profiles/"+p)
	}
	rows, err := d.db.Instances(ctx)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		add(expand(row, profiles).expandedDevices, instanceURL(row.Name))
	}
	return usage, nil
}
