package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// btrfsMagic is statfs' f_type of a btrfs filesystem.
	btrfsMagic = 0x9123683E
	// subvolumeInode is the inode number of every subvolume's root.
	subvolumeInode = 256
	// defaultLoopSize is the size of a loop file when none is given (the
	// file is sparse: only what is written takes space).
	defaultLoopSize = "5GiB"
	// minBtrfsSize is a little over mkfs.btrfs' minimum (114294784 bytes).
	minBtrfsSize = 128 << 20
)

// Btrfs stores volumes as btrfs subvolumes: an image volume is a
// read-only subvolume, an instance volume a writable snapshot of it.
type Btrfs struct {
	// root holds images/ and containers/: the mount point of a filesystem
	// celld mounts, or the btrfs directory the user gave as source.
	root string
	// source is the loop file, the block device or the btrfs directory.
	source string
	// mounted is true when celld mounts source at root (loop file or
	// block device); false for an existing btrfs directory.
	mounted bool
	// background counts deletions still running after the operation that
	// started them answered; the pool waits for them before it goes.
	background   sync.WaitGroup
	mountOptions string
}

// createBtrfs makes a btrfs pool: a new filesystem on a loop file (no
// source) or on a block device, mounted on the pool's directory; or a pool
// inside an existing btrfs directory.
func createBtrfs(ctx context.Context, p Pool) (_ Driver, _ map[string]string, err error) {
	config := maps.Clone(p.Config)
	if config == nil {
		config = map[string]string{}
	}
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	source := config["source"]
	var st os.FileInfo
	if source != "" {
		if !filepath.IsAbs(source) {
			return nil, nil, fmt.Errorf("%w: source %q must be an absolute path", ErrInvalidConfig, source)
		}
		if st, err = os.Stat(source); err != nil {
			return nil, nil, fmt.Errorf("%w: source: %v", ErrInvalidConfig, err)
		}
		if config["size"] != "" {
			return nil, nil, fmt.Errorf("%w: size is only for pools on a loop file (without source)", ErrInvalidConfig)
		}
	}
	switch {
	case source == "":
		if config["size"] == "" {
			config["size"] = defaultLoopSize
		}
		size, err := ParseSize(config["size"])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: size: %v", ErrInvalidConfig, err)
		}
		if size < minBtrfsSize {
			return nil, nil, fmt.Errorf("%w: size %s is too small: a btrfs pool needs at least 128MiB", ErrInvalidConfig, config["size"])
		}
		file := filepath.Join(p.DisksDir, p.Name+".img")
		if err := MakeLoopFile(file, size); err != nil {
			return nil, nil, err
		}
		undo = append(undo, func() { _ = os.Remove(file) })
		config["source"] = file
	case st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0:
	case st.IsDir():
		if err := checkBtrfs(source); err != nil {
			return nil, nil, fmt.Errorf("%w: source: %v", ErrInvalidConfig, err)
		}
		b := &Btrfs{root: source, source: source}
		for _, sub := range []string{"images", "containers", "snapshots"} {
			dir := filepath.Join(source, sub)
			if err := os.Mkdir(dir, 0o711); err != nil {
				return nil, nil, fmt.Errorf("%w: source %s cannot hold a pool: %v", ErrInvalidConfig, source, err)
			}
			undo = append(undo, func() { _ = os.Remove(dir) })
		}
		return b, config, nil
	default:
		return nil, nil, fmt.Errorf("%w: source %s must be a block device or a directory on btrfs", ErrInvalidConfig, source)
	}
	if err := mkfsBtrfs(ctx, config["source"]); err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p.Dir), 0o711); err != nil {
		return nil, nil, fmt.Errorf("create pool directory: %w", err)
	}
	if err := os.Mkdir(p.Dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("create pool directory: %w", err)
	}
	undo = append(undo, func() { _ = os.Remove(p.Dir) })
	b := &Btrfs{root: p.Dir, source: config["source"], mounted: true, mountOptions: config["btrfs.mount_options"]}
	if err := b.mount(ctx); err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { _ = b.unmount(context.WithoutCancel(ctx)) })
	for _, sub := range []string{"images", "containers", "snapshots"} {
		if err := os.Mkdir(filepath.Join(p.Dir, sub), 0o711); err != nil {
			return nil, nil, fmt.Errorf("create pool layout: %w", err)
		}
	}
	return b, config, nil
}

// openBtrfs opens an existing btrfs pool, mounting it if it is not (after
// a reboot), and removes the temporary volumes a crash left.
func openBtrfs(ctx context.Context, p Pool) (*Btrfs, error) {
	source := p.Config["source"]
	st, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("btrfs pool source: %w", err)
	}
	b := &Btrfs{root: p.Dir, source: source, mounted: !st.IsDir(), mountOptions: p.Config["btrfs.mount_options"]}
	if st.IsDir() {
		b.root = source
	} else {
		if err := os.MkdirAll(p.Dir, 0o711); err != nil {
			return nil, fmt.Errorf("create pool directory: %w", err)
		}
		if err := b.mount(ctx); err != nil {
			return nil, err
		}
	}
	if err := checkBtrfs(b.root); err != nil {
		return nil, err
	}
	// Pools made before snapshots existed have no snapshots dir.
	if err := os.MkdirAll(filepath.Join(b.root, "snapshots"), 0o711); err != nil {
		return nil, fmt.Errorf("create snapshots dir: %w", err)
	}
	for _, pattern := range []string{"images/.tmp-*", "containers/.tmp-*", "snapshots/.tmp-*", "snapshots/*/.tmp-*"} {
		stale, err := filepath.Glob(filepath.Join(b.root, pattern))
		if err != nil {
			return nil, fmt.Errorf("list btrfs pool: %w", err)
		}
		for _, path := range stale {
			if err := deleteSubvolumeTree(ctx, path); err != nil {
				slog.Warn("remove leftover temporary volume", "path", path, "err", err)
			}
		}
	}
	return b, nil
}

// MakeLoopFile creates a new sparse file of size bytes to back a pool
// (btrfs on a loop device, a zpool on a file); an existing file is never
// reused, and a failure leaves no file.
func MakeLoopFile(file string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("create loop file: %w", err)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create loop file: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(file)
		return fmt.Errorf("size loop file: %w", err)
	}
	return nil
}

func checkBtrfs(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	if st.Type != btrfsMagic {
		return fmt.Errorf("%s is not on a btrfs filesystem", path)
	}
	return nil
}

// run runs a storage tool and returns its error with its output.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %s: %w", name, strings.Join(args, " "), strings.TrimSpace(string(out)), err)
	}
	return nil
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), nil
}

func mkfsBtrfs(ctx context.Context, source string) error {
	// Without -f, mkfs.btrfs refuses a device that holds a filesystem.
	if err := run(ctx, "mkfs.btrfs", "-q", source); err != nil {
		return fmt.Errorf("make btrfs filesystem: %w", err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point (in /proc/self/mountinfo).
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	path = filepath.Clean(path)
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescape.Replace(fields[4]) == path {
			return true, nil
		}
	}
	return false, sc.Err()
}

// mount mounts the pool's filesystem on its directory unless it already is.
func (b *Btrfs) mount(ctx context.Context) error {
	if ok, err := isMountPoint(b.root); err != nil || ok {
		return err
	}
	var opts []string
	if st, err := os.Stat(b.source); err == nil && st.Mode().IsRegular() {
		opts = append(opts, "loop")
	}
	if b.mountOptions != "" {
		opts = append(opts, b.mountOptions)
	}
	args := []string{"-t", "btrfs"}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	if err := run(ctx, "mount", append(args, b.source, b.root)...); err != nil {
		return fmt.Errorf("mount btrfs pool: %w", err)
	}
	slog.Info("mounted btrfs pool", "source", b.source, "path", b.root)
	return nil
}

// unmount unmounts the pool's filesystem and detaches any loop device
// still backed by its loop file (mount -o loop sets autoclear, but a
// device attached by hand or by an older mount may remain).
func (b *Btrfs) unmount(ctx context.Context) error {
	ok, err := isMountPoint(b.root)
	if err != nil {
		return err
	}
	if ok {
		if err := run(ctx, "umount", b.root); err != nil {
			return fmt.Errorf("unmount btrfs pool: %w", err)
		}
	}
	if st, err := os.Stat(b.source); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	return DetachLoops(ctx, b.source)
}

// DetachLoops detaches every loop device backed by file.
func DetachLoops(ctx context.Context, file string) error {
	out, err := output(ctx, "losetup", "-n", "-O", "NAME", "-j", file)
	if err != nil {
		return err
	}
	for _, dev := range strings.Fields(out) {
		if err := run(ctx, "losetup", "-d", dev); err != nil {
			return fmt.Errorf("detach loop device: %w", err)
		}
	}
	return nil
}

// Name implements Driver.
func (b *Btrfs) Name() string { return "btrfs" }

// InstancePath implements Driver.
func (b *Btrfs) InstancePath(name string) string { return filepath.Join(b.root, "containers", name) }

func (b *Btrfs) imagePath(fp string) string { return filepath.Join(b.root, "images", fp) }

// HasImage implements Driver.
func (b *Btrfs) HasImage(fp string) bool {
	_, err := os.Stat(b.imagePath(fp))
	return err == nil
}

// CreateImage implements Driver: the image is unpacked into a temporary
// subvolume, which is made read-only and then renamed into place.
func (b *Btrfs) CreateImage(ctx context.Context, fp string, fill func(dir string) error) error {
	final := b.imagePath(fp)
	return b.buildSubvolume(ctx, final, func(tmp string) error {
		if err := fill(tmp); err != nil {
			return err
		}
		if err := os.Chmod(tmp, volumeMode); err != nil {
			return fmt.Errorf("set volume mode: %w", err)
		}
		if err := run(ctx, "btrfs", "property", "set", "-ts", tmp, "ro", "true"); err != nil {
			return fmt.Errorf("make image volume read-only: %w", err)
		}
		return nil
	})
}

// buildSubvolume makes a subvolume under a temporary name, fills it and
// renames it into place; on failure the subvolume is removed.
func (b *Btrfs) buildSubvolume(ctx context.Context, final string, build func(tmp string) error) error {
	tmp := tmpPath(final)
	if err := deleteSubvolumeTree(ctx, tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := run(ctx, "btrfs", "subvolume", "create", tmp); err != nil {
		return fmt.Errorf("create subvolume: %w", err)
	}
	if err := build(tmp); err != nil {
		_ = deleteSubvolumeTree(context.WithoutCancel(ctx), tmp)
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = deleteSubvolumeTree(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("move volume into place: %w", err)
	}
	return nil
}

// DeleteImage implements Driver.
func (b *Btrfs) DeleteImage(ctx context.Context, fp string) error {
	return b.removeSubvolume(ctx, b.imagePath(fp))
}

// CreateInstanceFromImage implements Driver: a writable snapshot of the
// image's subvolume, which shares every block with it.
func (b *Btrfs) CreateInstanceFromImage(ctx context.Context, name, fp string) error {
	src := b.imagePath(fp)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("image volume %s: %w", fp, err)
	}
	// A snapshot appears whole or not at all: no temporary name needed.
	if err := run(ctx, "btrfs", "subvolume", "snapshot", src, b.InstancePath(name)); err != nil {
		return fmt.Errorf("snapshot image volume: %w", err)
	}
	return nil
}

// CreateInstanceEmpty implements Driver.
func (b *Btrfs) CreateInstanceEmpty(ctx context.Context, name string) error {
	return b.buildSubvolume(ctx, b.InstancePath(name), func(tmp string) error {
		if err := os.Chmod(tmp, volumeMode); err != nil {
			return err
		}
		return os.Mkdir(filepath.Join(tmp, "rootfs"), 0o755)
	})
}

// DeleteInstance implements Driver: the volume, then its snapshots.
func (b *Btrfs) DeleteInstance(ctx context.Context, name string) error {
	if err := b.removeSubvolume(ctx, b.InstancePath(name)); err != nil {
		return err
	}
	return b.removeSubvolume(ctx, b.snapshotsDir(name))
}

func (b *Btrfs) snapshotsDir(instance string) string {
	return filepath.Join(b.root, "snapshots", instance)
}

// SnapshotPath implements Driver.
func (b *Btrfs) SnapshotPath(instance, snap string) string {
	return filepath.Join(b.snapshotsDir(instance), snap)
}

// CreateSnapshot implements Driver: a read-only snapshot of the instance's
// subvolume, which appears whole or not at all.
func (b *Btrfs) CreateSnapshot(ctx context.Context, instance, snap string) error {
	src := b.InstancePath(instance)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("instance volume %s: %w", instance, err)
	}
	if err := os.MkdirAll(b.snapshotsDir(instance), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", "-r", src, b.SnapshotPath(instance, snap)); err != nil {
		return fmt.Errorf("snapshot instance volume: %w", err)
	}
	return nil
}

// DeleteSnapshot implements Driver.
func (b *Btrfs) DeleteSnapshot(ctx context.Context, instance, snap string) error {
	return b.removeSubvolume(ctx, b.SnapshotPath(instance, snap))
}

// RenameSnapshot implements Driver.
func (b *Btrfs) RenameSnapshot(ctx context.Context, instance, oldName, newName string) error {
	if err := os.Rename(b.SnapshotPath(instance, oldName), b.SnapshotPath(instance, newName)); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	return nil
}

// RestoreSnapshot implements Driver: a writable snapshot of the snapshot
// is made next to the volume, swapped with it in one step, and the old
// subvolume deleted.
func (b *Btrfs) RestoreSnapshot(ctx context.Context, instance, snap string) error {
	src := b.SnapshotPath(instance, snap)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("snapshot %s/%s: %w", instance, snap, err)
	}
	vol := b.InstancePath(instance)
	tmp := restorePath(vol)
	if err := deleteSubvolumeTree(ctx, tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", src, tmp); err != nil {
		return fmt.Errorf("snapshot the snapshot: %w", err)
	}
	if err := exchange(tmp, vol); err != nil {
		_ = deleteSubvolumeTree(context.WithoutCancel(ctx), tmp)
		return err
	}
	// tmp now holds the old content. Deleting a subvolume costs time in
	// proportion to what was written into it since the snapshot, and the
	// restore is complete without it: move it to a name of its own (so that
	// the next restore can use tmp at once) and delete it in the background.
	// A crash before it is gone leaves a .tmp- entry, which the next opening
	// of the pool removes.
	doomed := fmt.Sprintf("%s-%d", tmp, time.Now().UnixNano())
	if err := os.Rename(tmp, doomed); err != nil {
		doomed = tmp
	}
	b.background.Add(1)
	go func() {
		defer b.background.Done()
		if err := deleteSubvolumeTree(context.Background(), doomed); err != nil {
			slog.Warn("remove replaced volume", "path", doomed, "err", err)
		}
	}()
	return nil
}

// removeSubvolume renames the volume out of the way first (as the dir
// driver does), then deletes it with the subvolumes made inside it.
func (b *Btrfs) removeSubvolume(ctx context.Context, path string) error {
	tmp := tmpPath(path)
	if err := os.Rename(path, tmp); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove volume: %w", err)
	}
	return deleteSubvolumeTree(ctx, tmp)
}

// deleteSubvolumeTree deletes a subvolume and every subvolume nested in
// it (a container may make its own), deepest first. A missing path is not
// an error; a plain directory is removed as one.
func deleteSubvolumeTree(ctx context.Context, path string) error {
	var subvolumes []string
	err := filepath.WalkDir(path, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Ino == subvolumeInode {
			subvolumes = append(subvolumes, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) && len(subvolumes) == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find nested subvolumes: %w", err)
	}
	// WalkDir visits a parent before what it holds.
	for _, sv := range slices.Backward(subvolumes) {
		if err := run(ctx, "btrfs", "subvolume", "delete", sv); err != nil {
			return fmt.Errorf("delete subvolume: %w", err)
		}
	}
	if len(subvolumes) == 0 || subvolumes[0] != path {
		return os.RemoveAll(path)
	}
	return nil
}

// RenameInstance implements Driver: its snapshots move first (see the
// dir driver).
func (b *Btrfs) RenameInstance(ctx context.Context, oldName, newName string) error {
	if err := renameSnapshotsDir(b.snapshotsDir(oldName), b.snapshotsDir(newName)); err != nil {
		return err
	}
	if err := os.Rename(b.InstancePath(oldName), b.InstancePath(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	return nil
}

// Instances implements Driver.
func (b *Btrfs) Instances() ([]string, error) {
	return listVolumes(filepath.Join(b.root, "containers"))
}

// Usage implements Driver.
func (b *Btrfs) Usage() (Usage, error) { return statUsage(b.root) }

// Update implements Driver: new mount options apply at once by remounting.
func (b *Btrfs) Update(ctx context.Context, config map[string]string) error {
	opts := config["btrfs.mount_options"]
	if opts == b.mountOptions {
		return nil
	}
	if b.mounted && opts != "" {
		if err := run(ctx, "mount", "-o", "remount,"+opts, b.root); err != nil {
			return fmt.Errorf("remount btrfs pool: %w", err)
		}
	}
	b.mountOptions = opts
	return nil
}

// Delete implements Driver.
func (b *Btrfs) Delete(ctx context.Context) error {
	b.background.Wait()
	for _, sub := range []string{"images", "containers", "snapshots", "custom", "custom-snapshots"} {
		dir := filepath.Join(b.root, sub)
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list btrfs pool: %w", err)
		}
		for _, e := range entries {
			if err := deleteSubvolumeTree(ctx, filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	if !b.mounted {
		return nil
	}
	if err := b.unmount(ctx); err != nil {
		return err
	}
	if err := os.Remove(b.root); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pool directory: %w", err)
	}
	if st, err := os.Stat(b.source); err == nil && st.Mode().IsRegular() {
		if err := os.Remove(b.source); err != nil {
			return fmt.Errorf("remove loop file: %w", err)
		}
	}
	return nil
}

// CopyInstance implements Driver: a writable snapshot of src's subvolume,
// which shares every block with it and appears whole or not at all.
func (b *Btrfs) CopyInstance(ctx context.Context, src, dst string) error {
	return b.snapshotVolume(ctx, b.InstancePath(src), b.InstancePath(dst), false)
}

// CopySnapshotToInstance implements Driver: a writable snapshot of the
// read-only snapshot.
func (b *Btrfs) CopySnapshotToInstance(ctx context.Context, inst, snap, dst string) error {
	return b.snapshotVolume(ctx, b.SnapshotPath(inst, snap), b.InstancePath(dst), false)
}

// CopySnapshot implements Driver: a read-only snapshot of the snapshot.
func (b *Btrfs) CopySnapshot(ctx context.Context, srcInst, snap, dstInst string) error {
	if err := os.MkdirAll(b.snapshotsDir(dstInst), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	return b.snapshotVolume(ctx, b.SnapshotPath(srcInst, snap), b.SnapshotPath(dstInst, snap), true)
}

func (b *Btrfs) snapshotVolume(ctx context.Context, src, dst string, readOnly bool) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("source volume: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("volume %s already exists", dst)
	}
	args := []string{"subvolume", "snapshot"}
	if readOnly {
		args = append(args, "-r")
	}
	if err := run(ctx, "btrfs", append(args, src, dst)...); err != nil {
		return fmt.Errorf("snapshot volume: %w", err)
	}
	return nil
}

// RefreshInstance implements Driver: a new writable snapshot of src is
// made next to dst, swapped with it in one step, and the old subvolume
// deleted.
func (b *Btrfs) RefreshInstance(ctx context.Context, src, dst string) error {
	from := b.InstancePath(src)
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("instance volume %s: %w", src, err)
	}
	vol := b.InstancePath(dst)
	tmp := restorePath(vol)
	if err := deleteSubvolumeTree(ctx, tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", from, tmp); err != nil {
		return fmt.Errorf("snapshot instance volume: %w", err)
	}
	if err := exchange(tmp, vol); err != nil {
		_ = deleteSubvolumeTree(context.WithoutCancel(ctx), tmp)
		return err
	}
	if err := deleteSubvolumeTree(ctx, tmp); err != nil {
		slog.Warn("remove replaced volume", "path", tmp, "err", err)
	}
	return nil
}

// SetQuota implements Driver: a btrfs qgroup limit on the volume's
// referenced space (quotas are enabled on the filesystem at first use).
func (b *Btrfs) SetQuota(ctx context.Context, instance string, bytes int64) error {
	vol := b.InstancePath(instance)
	if _, err := os.Stat(vol); err != nil {
		return fmt.Errorf("instance volume %s: %w", instance, err)
	}
	if bytes == 0 {
		if err := run(ctx, "btrfs", "qgroup", "limit", "none", vol); err != nil && b.quotasEnabled(ctx) {
			return fmt.Errorf("remove quota: %w", err)
		}
		return nil
	}
	if !b.quotasEnabled(ctx) {
		if err := run(ctx, "btrfs", "quota", "enable", b.root); err != nil {
			return fmt.Errorf("enable btrfs quotas: %w", err)
		}
		if err := run(ctx, "btrfs", "quota", "rescan", "-w", b.root); err != nil {
			return fmt.Errorf("scan btrfs quotas: %w", err)
		}
	}
	used, err := b.referenced(ctx, vol)
	if err != nil {
		return err
	}
	if used > bytes {
		return BelowUsed(instance, bytes, used)
	}
	if err := run(ctx, "btrfs", "qgroup", "limit", fmt.Sprint(bytes), vol); err != nil {
		return fmt.Errorf("set quota: %w", err)
	}
	return nil
}

func (b *Btrfs) quotasEnabled(ctx context.Context) bool {
	return exec.CommandContext(ctx, "btrfs", "qgroup", "show", b.root).Run() == nil
}

// referenced is the space a subvolume references, from its qgroup.
func (b *Btrfs) referenced(ctx context.Context, vol string) (int64, error) {
	// Qgroups are counted when a transaction commits: commit first.
	if err := run(ctx, "btrfs", "filesystem", "sync", b.root); err != nil {
		return 0, err
	}
	id, err := output(ctx, "btrfs", "inspect-internal", "rootid", vol)
	if err != nil {
		return 0, err
	}
	out, err := output(ctx, "btrfs", "qgroup", "show", "--raw", "-f", vol)
	if err != nil {
		return 0, err
	}
	want := "0/" + strings.TrimSpace(id)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == want {
			var n int64
			if _, err := fmt.Sscan(f[1], &n); err != nil {
				return 0, fmt.Errorf("qgroup %s: %q: %w", want, line, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no qgroup %s for %s in %q", want, vol, out)
}
