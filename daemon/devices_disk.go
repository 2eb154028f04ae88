package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/shared/idmap"
)

// diskKeys are the keys of a disk device other than the root disk.
var diskKeys = map[string]bool{"type": true, "path": true, "source": true, "pool": true, "readonly": true}

// badPathChars are refused in a disk device's paths: they would break the
// lxc.mount.entry line (which separates fields with spaces) or the config.
const badPathChars = " \t\n\r\x00\\"

// validateDiskDevice checks a disk device that is not the root disk: a
// custom volume (pool=P source=VOLUME) or a host directory (source=/path)
// mounted at path inside the instance.
func validateDiskDevice(name string, dev map[string]string) error {
	for k := range dev {
		if !diskKeys[k] {
			return badRequest("device %q: unknown disk key %q (allowed: path, source, pool, readonly)", name, k)
		}
	}
	p := dev["path"]
	if p == "" || !filepath.IsAbs(p) || strings.ContainsAny(p, badPathChars) || filepath.Clean(p) != p {
		return badRequest("device %q: path %q must be a clean absolute path without spaces or control characters", name, p)
	}
	if v, ok := dev["readonly"]; ok {
		if _, err := config.ParseBool(v); err != nil {
			return badRequest("device %q: readonly %q must be true or false", name, v)
		}
	}
	src := dev["source"]
	if dev["pool"] != "" {
		if err := config.ValidateEntityName("storage volume", src); err != nil {
			return badRequest("device %q: source: %v", name, err)
		}
		return nil
	}
	if src == "" {
		return badRequest("device %q: a disk needs a source (a host path, or a volume with pool=POOL)", name)
	}
	if !filepath.IsAbs(src) || strings.ContainsAny(src, badPathChars) || filepath.Clean(src) != src {
		return badRequest("device %q: source %q must be a clean absolute host path without spaces or control characters", name, src)
	}
	if _, err := os.Stat(src); err != nil {
		return badRequest("device %q: source %q does not exist on the host", name, src)
	}
	return nil
}

// isExtraDisk reports whether a device is a disk other than the root disk.
func isExtraDisk(dev map[string]string) bool {
	return dev["type"] == "disk" && dev["path"] != "/" && dev["path"] != ""
}

// diskMounts returns the bind mounts of an instance's disk devices (other
// than the root disk), in device name order. A custom volume's top
// directory is given to the container's root so that it can write there.
func (d *Daemon) diskMounts(ctx context.Context, inst *instance, m idmap.Map) ([]liblxc.Mount, error) {
	var names []string
	for name, dev := range inst.expandedDevices {
		if isExtraDisk(dev) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out []liblxc.Mount
	for _, name := range names {
		mount, err := d.diskMount(ctx, name, inst.expandedDevices[name], m, true)
		if err != nil {
			return nil, err
		}
		out = append(out, mount)
	}
	return out, nil
}

// diskMount returns the bind mount of one disk device; prepare gives a
// custom volume to the container's root.
func (d *Daemon) diskMount(ctx context.Context, name string, dev map[string]string, m idmap.Map, prepare bool) (liblxc.Mount, error) {
	if err := validateDiskDevice(name, dev); err != nil {
		return liblxc.Mount{}, err
	}
	src := dev["source"]
	if pool := dev["pool"]; pool != "" {
		if _, err := d.db.Volume(ctx, pool, src); err != nil {
			return liblxc.Mount{}, badRequest("device %q: storage volume %q on pool %q does not exist", name, src, pool)
		}
		vd, err := d.volumeDriver(pool)
		if err != nil {
			return liblxc.Mount{}, err
		}
		src = vd.VolumePath(src)
		if prepare && !m.IsPrivileged() {
			if err := os.Lchown(src, int(m.ShiftUID(0)), int(m.ShiftGID(0))); err != nil {
				return liblxc.Mount{}, fmt.Errorf("device %q: give the volume to the container's root: %w", name, err)
			}
		}
	}
	return liblxc.Mount{Source: src, Target: strings.TrimPrefix(dev["path"], "/"),
		ReadOnly: config.IsTrue(dev["readonly"])}, nil
}

// checkDiskVolumes refuses disk devices that name a custom volume that
// does not exist.
func (d *Daemon) checkDiskVolumes(ctx context.Context, devices map[string]map[string]string) error {
	for name, dev := range devices {
		if dev["type"] != "disk" || dev["path"] == "/" || dev["pool"] == "" {
			continue
		}
		if _, err := d.db.Volume(ctx, dev["pool"], dev["source"]); err != nil {
			if errors.Is(err, db.ErrNotFound) {
				return badRequest("device %q: storage volume %q does not exist on pool %q", name, dev["source"], dev["pool"])
			}
			return err
		}
	}
	return nil
}

// runningMounts returns the running instances whose lxc config (written
// when they started) bind-mounts host path src: a volume detached from a
// running instance stays mounted there until it stops.
func (d *Daemon) runningMounts(ctx context.Context, src string) ([]string, error) {
	insts, err := d.db.Instances(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, inst := range insts {
		if d.runtimeState(inst.Name) == liblxc.Stopped {
			continue
		}
		data, err := os.ReadFile(d.runtime.ConfigPath(inst.Name))
		if err != nil {
			continue
		}
		if strings.Contains(string(data), "\nlxc.mount.entry = "+src+" ") {
			out = append(out, inst.Name)
		}
	}
	return out, nil
}
