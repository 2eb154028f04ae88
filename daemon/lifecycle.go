package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"cell/daemon/config"
	"cell/daemon/liblxc"
	"cell/images"
	"cell/shared/idmap"
)

// defaultStopTimeout is how long a clean stop waits for init before the
// container is killed, unless boot.host_shutdown_timeout says otherwise.
const defaultStopTimeout = 30 * time.Second

// hostMemory is the host's memory in bytes, for percentage limits.
func hostMemory() int64 {
	var kb int64
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		_, _ = fmt.Sscanf(string(data), "MemTotal: %d kB", &kb)
	}
	return kb * 1024
}

// startInstance boots an instance: its rootfs is shifted to the map it
// needs, its templates rendered, its lxc config written and lxc-start run.
func (d *Daemon) startInstance(ctx context.Context, name string) error {
	return d.startInstanceState(ctx, name, false)
}

// startInstanceState starts an instance; stateful resumes the running
// state a stateful stop saved (stateful.go) instead of booting.
func (d *Daemon) startInstanceState(ctx context.Context, name string, stateful bool) error {
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	switch d.runtimeState(name) {
	case liblxc.Stopped:
	case liblxc.Frozen:
		return badRequest("instance %q is frozen: resume it instead", name)
	default:
		return badRequest("instance %q is already running", name)
	}
	checkpoint, err := d.statefulStart(ctx, inst, stateful)
	if err != nil {
		return err
	}
	volume, _, err := d.volumePath(inst)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(volume, "rootfs")
	if _, err := os.Stat(rootfs); err != nil {
		return fmt.Errorf("instance %q has no root filesystem: %w", name, err)
	}

	if err := d.allocateIdmap(ctx, inst); err != nil {
		return err
	}
	want := d.idmapFor(inst)
	if err := d.shiftRootfs(ctx, inst, rootfs, want); err != nil {
		return err
	}
	if err := openVolumeTo(volume, want); err != nil {
		return err
	}

	tc := images.TemplateContext{
		Container: map[string]string{
			"name": inst.Name, "architecture": inst.Architecture,
			"privileged": strconv.FormatBool(want.IsPrivileged()), "ephemeral": strconv.FormatBool(inst.Ephemeral),
		},
		Config:  inst.expandedConfig,
		Devices: inst.expandedDevices,
	}
	if trigger := inst.Config[keyApplyTemplate]; trigger != "" {
		tc.Trigger = trigger
		if err := images.RenderTemplates(ctx, volume, trigger, tc, want); err != nil {
			return fmt.Errorf("render %s templates: %w", trigger, err)
		}
	}
	tc.Trigger = "start"
	if err := images.RenderTemplates(ctx, volume, "start", tc, want); err != nil {
		return fmt.Errorf("render start templates: %w", err)
	}

	cfg, err := d.lxcConfig(inst, rootfs, want)
	if err != nil {
		return err
	}
	if cfg.Mounts, err = d.diskMounts(ctx, inst, want); err != nil {
		return err
	}
	if cfg.Devices, err = d.unixDevices(inst, want); err != nil {
		return err
	}
	if cfg.NICs, err = d.startNICs(ctx, inst); err != nil {
		return err
	}
	if err := d.runtime.WriteConfig(name, cfg); err != nil {
		return err
	}
	if checkpoint != "" {
		err = d.restoreRunning(ctx, inst, checkpoint)
	} else {
		err = d.runtime.Start(ctx, name)
	}
	if err != nil {
		d.stoppedNICs(context.WithoutCancel(ctx), inst)
		return err
	}
	if err := d.startProxies(inst); err != nil {
		// Nothing half-made: an instance whose proxy cannot listen does
		// not stay up without it.
		_ = d.runtime.Stop(name)
		d.stoppedNICs(context.WithoutCancel(ctx), inst)
		return err
	}
	now := time.Now()
	if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{
		keyLastPower: "RUNNING", keyApplyTemplate: "", keyIdmapCurrent: want.String(), keyIdmapNext: want.String(),
	}); err != nil {
		return err
	}
	_ = d.db.TouchInstance(ctx, inst.ID, now)
	d.events.Lifecycle("instance-started", instanceURL(name), nil)
	return nil
}

// lxcConfig turns an instance's expanded config into lxc config.
func (d *Daemon) lxcConfig(inst *instance, rootfs string, m idmap.Map) (liblxc.Config, error) {
	cfg := liblxc.Config{
		Rootfs: rootfs, Idmap: m, HaltSignal: haltSignal(rootfs),
		Nesting:     config.IsTrue(inst.expandedConfig["security.nesting"]),
		Raw:         inst.expandedConfig["raw.lxc"],
		Seccomp:     seccompProfile(inst.expandedConfig),
		Environment: map[string]string{},
	}
	for k, v := range inst.expandedConfig {
		if key, ok := cutPrefix(k, "environment."); ok {
			cfg.Environment[key] = v
		}
	}
	var err error
	cfg.Limits, err = limitsOf(inst.expandedConfig)
	return cfg, err
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return "", false
}

// shiftRootfs rewrites the owners in the rootfs when the instance needs a
// different map than the one its files have (for example after
// security.privileged changed), and records the new one.
func (d *Daemon) shiftRootfs(ctx context.Context, inst *instance, rootfs string, want idmap.Map) error {
	last := inst.Config[keyLastIdmap]
	var have idmap.Map
	if last != "privileged" && last != "" {
		var err error
		if have, err = idmap.Parse(last); err != nil {
			return fmt.Errorf("instance %q: %s: %w", inst.Name, keyLastIdmap, err)
		}
	}
	if have == want {
		return nil
	}
	if err := idmap.ShiftTree(ctx, rootfs, have, want); err != nil {
		return fmt.Errorf("shift rootfs of %q: %w", inst.Name, err)
	}
	record := want.String()
	if want.IsPrivileged() {
		record = "privileged"
	}
	return d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyLastIdmap: record})
}

// openVolumeTo lets the container's root, and no other host user, reach
// the instance's rootfs: liblxc sets up an unprivileged container as that
// user, which needs to traverse the volume (mode 0100, owned by it), while
// anyone else reaching the rootfs could run its setuid programs and become
// the container's root on the host. A privileged container runs as the
// host's root and needs nothing: its volume stays root's alone (0700).
func openVolumeTo(volume string, m idmap.Map) error {
	uid, gid, mode := int(m.ShiftUID(0)), int(m.ShiftGID(0)), os.FileMode(0o100)
	if m.IsPrivileged() {
		mode = 0o700
	}
	if err := os.Lchown(volume, uid, gid); err != nil {
		return fmt.Errorf("set the volume's owner: %w", err)
	}
	if err := os.Chmod(volume, mode); err != nil {
		return fmt.Errorf("set the volume's mode: %w", err)
	}
	return nil
}

// stopTimeout is the clean-stop timeout of an instance.
func stopTimeout(inst *instance, requested int) time.Duration {
	if requested > 0 {
		return time.Duration(requested) * time.Second
	}
	if v, err := strconv.Atoi(inst.expandedConfig["boot.host_shutdown_timeout"]); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return defaultStopTimeout
}

// stopInstance stops an instance: cleanly (init's halt signal, then a kill
// once the timeout passes) or, with force, at once. recordPower says
// whether the stop is the user's wish (recorded, so the instance stays
// stopped across reboots) or the host's (not recorded, so it comes back).
func (d *Daemon) stopInstance(ctx context.Context, name string, force bool, timeout int, recordPower bool) error {
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	state := d.runtimeState(name)
	if state == liblxc.Stopped {
		return badRequest("instance %q is not running", name)
	}
	if state == liblxc.Frozen || state == liblxc.Freezing {
		// A frozen init cannot react to its halt signal.
		if err := d.runtime.Unfreeze(name); err != nil && !force {
			return err
		}
	}
	if recordPower {
		// Recorded before the stop, not after: if celld dies while init
		// halts, the container stops all the same, and the next celld must
		// not start it again (autostart goes by this key).
		if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyLastPower: "STOPPED"}); err != nil {
			return err
		}
	}
	if force {
		err = d.runtime.Stop(name)
	} else if err = d.runtime.Shutdown(name, stopTimeout(inst, timeout)); err != nil {
		err = d.runtime.Stop(name)
	}
	if err != nil {
		if recordPower {
			// Still running: keep what was recorded before.
			_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, map[string]string{keyLastPower: inst.Config[keyLastPower]})
		}
		return err
	}
	d.stopAllProxies(name)
	d.stoppedNICs(ctx, inst)
	d.events.Lifecycle("instance-stopped", instanceURL(name), nil)
	if inst.Ephemeral {
		return d.removeInstanceLocked(ctx, inst)
	}
	return nil
}
