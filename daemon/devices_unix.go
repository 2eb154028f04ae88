package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"cell/daemon/config"
	"cell/daemon/liblxc"
	"cell/shared/api"
	"cell/shared/idmap"
)

// unixKeys are the keys of a unix-char or unix-block device.
var unixKeys = map[string]bool{"type": true, "source": true, "path": true, "major": true, "minor": true,
	"uid": true, "gid": true, "mode": true, "required": true}

func isUnixDevice(dev map[string]string) bool {
	return dev["type"] == "unix-char" || dev["type"] == "unix-block"
}

// unixPath is where a unix device appears in the container: path, or
// else the source's path.
func unixPath(dev map[string]string) string {
	if p := dev["path"]; p != "" {
		return p
	}
	return dev["source"]
}

// validateUnixDevice checks a unix-char or unix-block device. A device
// that names no major/minor must find its source (or path) on the host,
// of the right kind, unless required=false.
func validateUnixDevice(name string, dev map[string]string) error {
	for k := range dev {
		if !unixKeys[k] {
			return badRequest("device %q: unknown %s key %q (allowed: source, path, major, minor, uid, gid, mode, required)", name, dev["type"], k)
		}
	}
	for _, k := range []string{"source", "path"} {
		if p := dev[k]; p != "" && (!filepath.IsAbs(p) || strings.ContainsAny(p, badPathChars) || filepath.Clean(p) != p) {
			return badRequest("device %q: %s %q must be a clean absolute path without spaces or control characters", name, k, p)
		}
	}
	if unixPath(dev) == "" {
		return badRequest("device %q: a %s device needs a source or a path", name, dev["type"])
	}
	for _, k := range []string{"major", "minor", "uid", "gid"} {
		if v := dev[k]; v != "" {
			if n, err := strconv.ParseUint(v, 10, 32); err != nil || (k == "major" || k == "minor") && n > 1<<20 {
				return badRequest("device %q: %s %q is not a number", name, k, v)
			}
		}
	}
	if v := dev["mode"]; v != "" {
		if n, err := strconv.ParseUint(v, 8, 32); err != nil || n > 0o7777 {
			return badRequest("device %q: mode %q is not an octal file mode such as 0660", name, v)
		}
	}
	if v, ok := dev["required"]; ok {
		if _, err := config.ParseBool(v); err != nil {
			return badRequest("device %q: required %q must be true or false", name, v)
		}
	}
	if (dev["major"] == "") != (dev["minor"] == "") {
		return badRequest("device %q: give both major and minor, or neither", name)
	}
	if dev["major"] == "" && unixRequired(dev) {
		if _, _, err := hostDeviceNumber(dev); err != nil {
			return badRequest("device %q: %v", name, err)
		}
	}
	return nil
}

func unixRequired(dev map[string]string) bool {
	v, ok := dev["required"]
	return !ok || config.IsTrue(v)
}

// hostDeviceNumber reads the major and minor of a unix device's source
// (or path) on the host, checking it is a device of the kind asked for.
func hostDeviceNumber(dev map[string]string) (major, minor uint32, err error) {
	src := dev["source"]
	if src == "" {
		src = dev["path"]
	}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return 0, 0, fmt.Errorf("%s does not exist on the host", src)
	}
	want := uint32(unix.S_IFCHR)
	if dev["type"] == "unix-block" {
		want = unix.S_IFBLK
	}
	if st.Mode&unix.S_IFMT != want {
		return 0, 0, fmt.Errorf("%s on the host is not a %s device", src, strings.TrimPrefix(dev["type"], "unix-"))
	}
	return unix.Major(st.Rdev), unix.Minor(st.Rdev), nil
}

// checkDevicePaths refuses two devices (disks other than the root disk,
// unix devices) at the same path in the container.
func checkDevicePaths(devices api.Devices) error {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(devices)) {
		dev := devices[name]
		var p string
		switch {
		case isExtraDisk(dev):
			p = dev["path"]
		case isUnixDevice(dev):
			p = unixPath(dev)
		default:
			continue
		}
		if other, ok := seen[p]; ok {
			return badRequest("devices %q and %q both use path %s in the instance", other, name, p)
		}
		seen[p] = name
	}
	return nil
}

// unixDevices makes the host nodes of an instance's unix devices, in
// device name order, for its lxc config. A device whose source is gone is
// left out when it is not required.
func (d *Daemon) unixDevices(inst *instance, m idmap.Map) ([]liblxc.Device, error) {
	// Nodes of devices removed since the last start go.
	if err := os.RemoveAll(d.runtime.DevicesDir(inst.Name)); err != nil {
		return nil, fmt.Errorf("clear the device nodes of %q: %w", inst.Name, err)
	}
	var out []liblxc.Device
	for _, name := range slices.Sorted(maps.Keys(inst.expandedDevices)) {
		dev := inst.expandedDevices[name]
		if !isUnixDevice(dev) {
			continue
		}
		node, err := d.makeUnixNode(inst.Name, name, dev, m)
		if errors.Is(err, errNotRequired) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, node)
	}
	return out, nil
}

var errNotRequired = errors.New("device not required")

// makeUnixNode creates the device node of one unix device under the
// container's runtime dir, owned (as uid, gid inside the container) and
// moded as the device asks: liblxc bind-mounts it into the container, as
// an unprivileged container cannot mknod itself.
func (d *Daemon) makeUnixNode(inst, name string, dev map[string]string, m idmap.Map) (liblxc.Device, error) {
	if err := validateUnixDevice(name, dev); err != nil {
		if !unixRequired(dev) {
			return liblxc.Device{}, errNotRequired
		}
		return liblxc.Device{}, err
	}
	var major, minor uint32
	if dev["major"] != "" {
		a, _ := strconv.ParseUint(dev["major"], 10, 32)
		b, _ := strconv.ParseUint(dev["minor"], 10, 32)
		major, minor = uint32(a), uint32(b)
	} else {
		var err error
		if major, minor, err = hostDeviceNumber(dev); err != nil {
			if !unixRequired(dev) {
				return liblxc.Device{}, errNotRequired
			}
			return liblxc.Device{}, badRequest("device %q: %v", name, err)
		}
	}
	mode := uint64(0o660)
	if v := dev["mode"]; v != "" {
		mode, _ = strconv.ParseUint(v, 8, 32)
	}
	uid, _ := strconv.ParseInt(dev["uid"], 10, 64)
	gid, _ := strconv.ParseInt(dev["gid"], 10, 64)
	kind, typ := 'c', uint32(unix.S_IFCHR)
	if dev["type"] == "unix-block" {
		kind, typ = 'b', unix.S_IFBLK
	}
	dir := d.runtime.DevicesDir(inst)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return liblxc.Device{}, fmt.Errorf("device %q: create %s: %w", name, dir, err)
	}
	node := filepath.Join(dir, "unix."+name)
	_ = os.Remove(node)
	if err := unix.Mknod(node, typ|uint32(mode&0o7777), int(unix.Mkdev(major, minor))); err != nil {
		return liblxc.Device{}, fmt.Errorf("device %q: mknod %s: %w", name, node, err)
	}
	// mknod applies the umask: set the mode as asked.
	if err := os.Chmod(node, os.FileMode(mode&0o777)); err != nil {
		return liblxc.Device{}, fmt.Errorf("device %q: chmod: %w", name, err)
	}
	if err := os.Lchown(node, int(m.ShiftUID(uid)), int(m.ShiftGID(gid))); err != nil {
		return liblxc.Device{}, fmt.Errorf("device %q: chown: %w", name, err)
	}
	return liblxc.Device{Node: node, Target: strings.TrimPrefix(unixPath(dev), "/"), Kind: kind, Major: major, Minor: minor}, nil
}

// hotplugUnix adds and removes the unix devices of a running instance
// whose devices change from before to after: the node is bind-mounted
// (or unmounted) inside the container and the device cgroup opened (or
// closed) for it. undo reverts what was done.
func (d *Daemon) hotplugUnix(ctx context.Context, before, after *instance) (undo func(), err error) {
	undo = func() {}
	if s := d.runtimeState(before.Name); s != liblxc.Running && s != liblxc.Frozen {
		return undo, nil
	}
	pid := d.runtime.InitPID(before.Name)
	if pid <= 0 {
		return undo, nil
	}
	m := d.idmapFor(before)
	if cur, err := idmap.Parse(before.Config[keyIdmapCurrent]); err == nil && before.Config[keyIdmapCurrent] != "" {
		m = cur
	}
	var done []func()
	undo = func() {
		for _, f := range slices.Backward(done) {
			f()
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before.expandedDevices)) {
		dev := before.expandedDevices[name]
		if nd, ok := after.expandedDevices[name]; !isUnixDevice(dev) || ok && maps.Equal(dev, nd) {
			continue
		}
		target := strings.TrimPrefix(unixPath(dev), "/")
		if err := unmountIn(pid, target); err != nil {
			undo()
			return nil, fmt.Errorf("device %q: unmount in the instance: %w", name, err)
		}
		_ = inMountNS(pid, func() error { return os.Remove("/" + target) })
		old := dev
		done = append(done, func() { _ = d.plugUnix(ctx, before.Name, pid, name, old, m) })
	}
	for _, name := range slices.Sorted(maps.Keys(after.expandedDevices)) {
		dev := after.expandedDevices[name]
		if od, ok := before.expandedDevices[name]; !isUnixDevice(dev) || ok && maps.Equal(dev, od) {
			continue
		}
		if err := d.plugUnix(ctx, before.Name, pid, name, dev, m); errors.Is(err, errNotRequired) {
			continue
		} else if err != nil {
			undo()
			return nil, err
		}
		target := strings.TrimPrefix(unixPath(dev), "/")
		done = append(done, func() { _ = unmountIn(pid, target) })
	}
	return undo, nil
}

// plugUnix makes a unix device's node, opens the device cgroup for it and
// mounts it into the running container.
func (d *Daemon) plugUnix(_ context.Context, inst string, pid int, name string, dev map[string]string, m idmap.Map) error {
	node, err := d.makeUnixNode(inst, name, dev, m)
	if err != nil {
		return err
	}
	if err := d.runtime.AllowDevice(inst, node); err != nil {
		return fmt.Errorf("device %q: %w", name, err)
	}
	return mountFileIn(pid, node.Node, node.Target, m)
}

// mountFileIn bind-mounts host file src onto target inside the container
// whose init is pid, creating an empty file there (and its directories)
// when missing; a symlink on the way is refused.
func mountFileIn(pid int, src, target string, m idmap.Map) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("clone mount of %s: %w", src, err)
	}
	defer unix.Close(fd)
	return inMountNS(pid, func() error {
		// What is made inside is made as the container's root: its /dev is
		// a tmpfs of its own user namespace, where host root has no id
		// (EOVERFLOW). The thread dies with this function (inMountNS).
		unix.Setfsgid(int(m.ShiftGID(0)))
		unix.Setfsuid(int(m.ShiftUID(0)))
		p := "/"
		parts := strings.Split(target, "/")
		for i, part := range parts {
			p = filepath.Join(p, part)
			st, err := os.Lstat(p)
			last := i == len(parts)-1
			switch {
			case errors.Is(err, os.ErrNotExist) && last:
				f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return fmt.Errorf("create %s in the instance: %w", p, err)
				}
				f.Close()
			case errors.Is(err, os.ErrNotExist):
				if err := os.Mkdir(p, 0o755); err != nil {
					return fmt.Errorf("create %s in the instance: %w", p, err)
				}
			case err != nil:
				return err
			case st.Mode()&os.ModeSymlink != 0:
				return badRequest("%s in the instance is a symlink: refusing to mount there", p)
			case !last && !st.IsDir():
				return badRequest("%s in the instance is not a directory", p)
			}
		}
		unix.Setfsuid(0)
		unix.Setfsgid(0)
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s at %s in the instance: %w", src, p, err)
		}
		return nil
	})
}
