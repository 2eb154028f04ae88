package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"cell/daemon/liblxc"
	"cell/shared/idmap"
)

// hotplugDisks applies to a running instance the changes of its disk
// devices (other than the root disk) between before and after: removed and
// changed ones are unmounted inside the container, new and changed ones
// mounted, and the mount entries of its lxc config updated to match. It
// runs before the change is saved; undo reverts the mounts if saving
// fails. A stopped instance gets its mounts at its next start.
func (d *Daemon) hotplugDisks(ctx context.Context, before, after *instance) (undo func(), err error) {
	undo = func() {}
	if s := d.runtimeState(before.Name); s != liblxc.Running && s != liblxc.Frozen {
		return undo, nil
	}
	pid := d.runtime.InitPID(before.Name)
	if pid <= 0 {
		return undo, nil
	}
	m := d.idmapFor(before)
	if cur := before.Config[keyIdmapCurrent]; cur != "" {
		if parsed, err := idmap.Parse(cur); err == nil {
			m = parsed
		}
	}
	var removed, added []string
	for name, dev := range before.expandedDevices {
		if nd, ok := after.expandedDevices[name]; isExtraDisk(dev) && (!ok || !maps.Equal(dev, nd)) {
			removed = append(removed, name)
		}
	}
	for name, dev := range after.expandedDevices {
		if od, ok := before.expandedDevices[name]; isExtraDisk(dev) && (!ok || !maps.Equal(od, dev)) {
			added = append(added, name)
		}
	}
	if len(removed)+len(added) == 0 {
		return undo, nil
	}
	slices.Sort(removed)
	slices.Sort(added)
	var oldMounts, newMounts []liblxc.Mount
	for _, name := range removed {
		dev := before.expandedDevices[name]
		mt, err := d.diskMount(ctx, name, dev, m, false)
		if err != nil {
			mt = liblxc.Mount{Target: strings.TrimPrefix(dev["path"], "/")}
		}
		oldMounts = append(oldMounts, mt)
	}
	for _, name := range added {
		mt, err := d.diskMount(ctx, name, after.expandedDevices[name], m, true)
		if err != nil {
			return nil, err
		}
		newMounts = append(newMounts, mt)
	}
	var done []func()
	revert := func() {
		for _, f := range slices.Backward(done) {
			f()
		}
	}
	for _, mt := range oldMounts {
		if err := unmountIn(pid, mt.Target); err != nil {
			revert()
			return nil, fmt.Errorf("unmount %s in instance %q: %w", "/"+mt.Target, before.Name, err)
		}
		if mt.Source != "" {
			done = append(done, func() { _ = mountIn(pid, mt, m) })
		}
	}
	for _, mt := range newMounts {
		if err := mountIn(pid, mt, m); err != nil {
			revert()
			return nil, err
		}
		done = append(done, func() { _ = unmountIn(pid, mt.Target) })
	}
	d.updateMountEntries(before.Name, oldMounts, newMounts)
	return func() {
		revert()
		d.updateMountEntries(before.Name, newMounts, oldMounts)
	}, nil
}

// updateMountEntries rewrites the mount entries of a running container's
// lxc config (which liblxc read at start) so that they tell what is
// mounted now; runningMounts reads them.
func (d *Daemon) updateMountEntries(name string, remove, add []liblxc.Mount) {
	path := d.runtime.ConfigPath(name)
	data, err := os.ReadFile(path)
	if err != nil {
		slog.Warn("read lxc config", "instance", name, "err", err)
		return
	}
	drop := map[string]bool{}
	for _, mt := range remove {
		if e, err := mt.Entry(); err == nil {
			drop["lxc.mount.entry = "+e] = true
		}
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if !drop[l] {
			lines = append(lines, l)
		}
	}
	for _, mt := range add {
		if e, err := mt.Entry(); err == nil {
			lines = append(lines, "lxc.mount.entry = "+e)
		}
	}
	tmp := path + ".tmp"
	err = os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		slog.Warn("update lxc config's mounts", "instance", name, "err", err)
	}
}

// inMountNS runs fn on a thread of its own that has joined the mount
// namespace of process pid (so that paths resolve inside the container's
// root). Afterwards the thread goes back to celld's own mount namespace
// and working directory before it ends: a thread left in the container's
// namespace pins every mount of it (the container's rootfs, hotplugged
// volumes) after the container stops, and zfs-fuse then answers "dataset
// is busy" to destroying those datasets. A locked goroutine's thread
// normally exits with it, but when the goroutine ran on the process's
// main thread Go cannot end that thread and parks it forever instead, so
// ending the goroutine is not enough. The thread is never given back to
// the Go runtime.
func inMountNS(pid int, fn func() error) error {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return fmt.Errorf("open the container's mount namespace: %w", err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/mnt")
		if err != nil {
			errc <- fmt.Errorf("open celld's mount namespace: %w", err)
			return
		}
		defer own.Close()
		cwd, err := os.Open(".")
		if err != nil {
			errc <- fmt.Errorf("open celld's working directory: %w", err)
			return
		}
		defer cwd.Close()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("join the container's mount namespace: %w", err)
			return
		}
		err = fn()
		// Back before answering: the caller may stop the container next.
		if serr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNS); serr != nil {
			slog.Error("a thread could not leave a container's mount namespace", "pid", pid, "err", serr)
		} else if serr := unix.Fchdir(int(cwd.Fd())); serr != nil {
			slog.Warn("restore the working directory of a thread", "err", serr)
		}
		errc <- err
	}()
	return <-errc
}

// mountIn bind-mounts mt.Source at mt.Target inside the container whose
// init is pid: a detached copy of the source is made on the host, then
// moved onto the target, which is made (owned by the container's root)
// where missing. A symlink on the way to the target is refused: the
// container controls its paths.
func mountIn(pid int, mt liblxc.Mount, m idmap.Map) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, mt.Source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("clone mount of %s: %w", mt.Source, err)
	}
	defer unix.Close(fd)
	if mt.ReadOnly {
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("make mount of %s read-only: %w", mt.Source, err)
		}
	}
	return inMountNS(pid, func() error {
		target := "/"
		for _, part := range strings.Split(mt.Target, "/") {
			target = filepath.Join(target, part)
			st, err := os.Lstat(target)
			switch {
			case errors.Is(err, os.ErrNotExist):
				if err := os.Mkdir(target, 0o755); err != nil {
					return fmt.Errorf("create %s in the instance: %w", target, err)
				}
				if err := os.Lchown(target, int(m.ShiftUID(0)), int(m.ShiftGID(0))); err != nil {
					return fmt.Errorf("chown %s in the instance: %w", target, err)
				}
			case err != nil:
				return err
			case st.Mode()&os.ModeSymlink != 0:
				return badRequest("%s in the instance is a symlink: refusing to mount there", target)
			case !st.IsDir():
				return badRequest("%s in the instance is not a directory", target)
			}
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s at %s in the instance: %w", mt.Source, target, err)
		}
		return nil
	})
}

// unmountIn detaches the mount at target inside the container whose init
// is pid; nothing mounted there is not an error.
func unmountIn(pid int, target string) error {
	return inMountNS(pid, func() error {
		err := unix.Unmount("/"+target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	})
}
