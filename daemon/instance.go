package daemon

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/shared/api"
	"cell/shared/idmap"
	"cell/storage"
)

// instance is an instance's row with its profiles applied.
type instance struct {
	db.Instance
	expandedConfig  map[string]string
	expandedDevices api.Devices
}

// Volatile keys celld keeps in instance config.
const (
	keyLastPower     = "volatile.last_state.power"
	keyLastIdmap     = "volatile.last_state.idmap"
	keyIdmapCurrent  = "volatile.idmap.current"
	keyIdmapNext     = "volatile.idmap.next"
	keyApplyTemplate = "volatile.apply_template"
	keyBaseImage     = "volatile.base_image"
	keyRenameFrom    = "volatile.rename_from"
	// keySnapshotRename is "OLD/NEW" while a snapshot is being renamed.
	keySnapshotRename = "volatile.snapshot_rename"
)

// expand applies profiles (in order, later ones winning) and then the
// instance's own config and devices, as LXD does.
func expand(row db.Instance, profiles map[string]db.Profile) *instance {
	inst := &instance{Instance: row, expandedConfig: map[string]string{}, expandedDevices: api.Devices{}}
	for _, name := range row.Profiles {
		p := profiles[name]
		maps.Copy(inst.expandedConfig, p.Config)
		for dev, cfg := range p.Devices {
			inst.expandedDevices[dev] = maps.Clone(cfg)
		}
	}
	maps.Copy(inst.expandedConfig, row.Config)
	for dev, cfg := range row.Devices {
		inst.expandedDevices[dev] = maps.Clone(cfg)
	}
	return inst
}

func (d *Daemon) profileMap(ctx context.Context) (map[string]db.Profile, error) {
	list, err := d.db.Profiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]db.Profile, len(list))
	for _, p := range list {
		out[p.Name] = p
	}
	return out, nil
}

// loadInstance returns a ready instance with its profiles applied.
func (d *Daemon) loadInstance(ctx context.Context, name string) (*instance, error) {
	row, err := d.db.Instance(ctx, name)
	if err != nil {
		return nil, notFound("instance %q not found", name)
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return nil, err
	}
	return expand(row, profiles), nil
}

// rootPool returns the pool of the instance's root disk.
func (inst *instance) rootPool() string {
	return inst.Pool
}

// idmap is the map the instance should run with.
func (d *Daemon) idmapFor(inst *instance) idmap.Map {
	if config.IsTrue(inst.expandedConfig["security.privileged"]) {
		return idmap.Map{}
	}
	if m, ok := isolatedIdmap(inst); ok {
		return m
	}
	return d.idmap
}

// volumePath is where the instance's volume (rootfs/, metadata.yaml) is.
func (d *Daemon) volumePath(inst *instance) (string, storage.Driver, error) {
	p, err := d.pool(inst.rootPool())
	if err != nil {
		return "", nil, err
	}
	return p.InstancePath(inst.Name), p, nil
}

func (d *Daemon) runtimeState(name string) liblxc.State { return d.runtime.State(name) }

// statusOf turns liblxc's state into the API's.
func statusCode(s liblxc.State) api.StatusCode {
	switch s {
	case liblxc.Running:
		return api.Running
	case liblxc.Frozen, liblxc.Freezing:
		return api.Frozen
	case liblxc.Starting:
		return api.Starting
	case liblxc.Stopping, liblxc.Aborting:
		return api.Stopping
	default:
		return api.Stopped
	}
}

// apiInstance renders an instance for the API.
func (d *Daemon) apiInstance(inst *instance) api.Instance {
	code := statusCode(d.runtimeState(inst.Name))
	return api.Instance{
		InstancePut: api.InstancePut{
			Architecture: inst.Architecture, Config: inst.Config, Devices: inst.Devices,
			Ephemeral: inst.Ephemeral, Profiles: inst.Profiles, Stateful: inst.Stateful, Description: inst.Description,
		},
		CreatedAt: inst.CreatedAt, LastUsedAt: inst.LastUsedAt, Name: inst.Name,
		ExpandedConfig: inst.expandedConfig, ExpandedDevices: inst.expandedDevices,
		Status: code.String(), StatusCode: code, Location: "none", Type: inst.Type, Project: "default",
	}
}

// haltSignal picks the signal the container's init halts on, from what
// /sbin/init is: systemd halts on SIGRTMIN+3, busybox init powers off on
// SIGUSR2, and SIGPWR is the convention for the rest (sysvinit).
func haltSignal(rootfs string) string {
	target := "/sbin/init"
	// Follow the link chain by reading link targets only: nothing is
	// opened, so a hostile link cannot make celld read outside the rootfs.
	for i := 0; i < 16; i++ {
		link, err := os.Readlink(filepath.Join(rootfs, filepath.Clean("/"+target)))
		if err != nil {
			break
		}
		if filepath.IsAbs(link) {
			target = link
		} else {
			target = filepath.Join(filepath.Dir(target), link)
		}
	}
	switch base := filepath.Base(target); {
	case strings.Contains(target, "systemd"):
		return "SIGRTMIN+3"
	case base == "busybox":
		return "SIGUSR2"
	default:
		return "SIGPWR"
	}
}
