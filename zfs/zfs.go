// Package zfs is the ZFS storage driver. It drives the zpool and zfs
// commands and uses only what both OpenZFS and Debian's zfs-fuse (pool
// version 23) support: no `clones` property (clones are found through
// `origin`), no .zfs/snapshot directory (a snapshot is exposed as a
// read-only clone), no `zpool get -H`.
//
// Layout under the pool's root dataset R (a zpool of its own, or a
// dataset the user gave as source):
//
//	R/images/FP             image volume, with its snapshot @readonly
//	R/containers/NAME       instance volume: a clone of R/images/FP@readonly
//	R/containers/NAME@snapshot-SNAP
//	R/snapshots/NAME/SNAP   read-only clone of that snapshot (SnapshotPath)
//	R/deleted/images/FP-N   an image deleted while instances still use it;
//	                        destroyed with its last clone (as LXD does)
//
// Datasets are mounted under the pool's directory: R/containers at
// DIR/containers and so on, children inheriting the mountpoint.
package zfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cell/storage"
)

const (
	// defaultSize is the size of a loop file when none is given (sparse).
	defaultSize = "5GiB"
	// minSize is zpool's minimum vdev size.
	minSize = 64 << 20
	// volumeMode is the mode of a volume's top directory (as storage's).
	volumeMode = 0o700
	// RemoveSnapshotsKey allows a restore to an older snapshot, which
	// removes the newer ones (LXD's key of the same name).
	RemoveSnapshotsKey = "volume.zfs.remove_snapshots"
	// PoolNameKey is the zpool (or dataset) that holds the pool.
	PoolNameKey = "zfs.pool_name"
)

// Register makes the zfs driver known to the storage package.
func Register() {
	storage.Register("zfs", storage.Registration{
		Keys:     map[string]bool{"source": false, "size": false, PoolNameKey: false, RemoveSnapshotsKey: true, CloneCopyKey: true},
		Validate: validate,
		Create:   Create,
		Open:     Open,
		Abandon:  Abandon,
	})
}

// Abandon implements storage.Registration: it removes what an interrupted
// Create for p made. A new zpool is destroyed only when its device is the
// pool's own loop file or the source device (Create refuses a name that
// exists, so a zpool of that name on that device is Create's); in a
// user's dataset, the datasets Create makes (it refuses a dataset that
// holds them already).
func Abandon(ctx context.Context, p storage.Pool) error {
	if err := ensureDaemon(ctx); err != nil {
		return err
	}
	source := p.Config["source"]
	switch {
	case source == "" || strings.HasPrefix(source, "/"):
		zp := p.Config[PoolNameKey]
		if zp == "" {
			zp = defaultPoolName(p)
		}
		vdev := source
		if source == "" {
			vdev = filepath.Join(p.DisksDir, p.Name+".img")
		}
		if status, err := output(ctx, "zpool", "status", zp); err == nil && strings.Contains(status, vdev) {
			if err := run(ctx, "zpool", "destroy", "-f", zp); err != nil {
				return fmt.Errorf("destroy zpool: %w", err)
			}
		}
		if source == "" {
			if err := os.Remove(vdev); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove loop file: %w", err)
			}
		}
	default:
		for _, sub := range []string{"containers", "images", "snapshots", "deleted", "custom"} {
			if err := destroy(ctx, source+"/"+sub); err != nil {
				return err
			}
		}
	}
	return removeDirs(p.Dir)
}

func validate(key, value string) error {
	switch key {
	case RemoveSnapshotsKey, CloneCopyKey:
		if _, err := strconv.ParseBool(value); err != nil {
			return fmt.Errorf("%w: %s must be true or false, not %q", storage.ErrInvalidConfig, key, value)
		}
	case PoolNameKey:
		if err := checkDatasetName(value); err != nil {
			return fmt.Errorf("%w: %s: %v", storage.ErrInvalidConfig, key, err)
		}
	}
	return nil
}

func checkDatasetName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return fmt.Errorf("%q is not a ZFS pool or dataset name", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.:/", r)) {
			return fmt.Errorf("%q is not a ZFS pool or dataset name (letters, digits and _-.:/ only)", name)
		}
	}
	return nil
}

// ZFS is one zfs pool.
type ZFS struct {
	name string // the pool's name in Cell
	root string // root dataset R
	dir  string // mount point of R's children
	// file is the loop file of a zpool celld made ("" otherwise); zpool
	// is true when celld owns the whole zpool (loop file or device).
	file  string
	zpool bool
	mu    sync.Mutex
	cfg   map[string]string
}

var daemonMu sync.Mutex

// ensureDaemon starts zfs-fuse unless it runs (it daemonizes and stays).
func ensureDaemon(ctx context.Context) error {
	daemonMu.Lock()
	defer daemonMu.Unlock()
	if running() {
		return nil
	}
	path, err := exec.LookPath("zfs-fuse")
	if err != nil {
		if _, kerr := os.Stat("/sys/module/zfs"); kerr == nil {
			return nil // kernel ZFS
		}
		return fmt.Errorf("zfs: neither the zfs kernel module nor zfs-fuse is available (apt-get install zfs-fuse): %w", err)
	}
	cmd := exec.CommandContext(ctx, path)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("start zfs-fuse: %w", err)
	}
	slog.Info("started zfs-fuse")
	for range 100 {
		if exec.CommandContext(ctx, "zpool", "list").Run() == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("zfs-fuse did not start answering in 10s")
}

func running() bool {
	if _, err := os.Stat("/sys/module/zfs"); err == nil {
		return true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm")); err == nil && strings.TrimSpace(string(b)) == "zfs-fuse" {
			return true
		}
	}
	return false
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	// zfs-fuse lets go of a dataset's files lazily: a rename, unmount or
	// destroy just after its last use can answer "busy" for a moment; on a
	// loaded machine (the test suite on 2 cores) that moment has been seen
	// to last past 10 s, so keep trying for 30.
	for i := 0; err != nil && strings.Contains(err.Error(), "busy") && i < 120; i++ {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
		_, err = output(ctx, name, args...)
	}
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %s: %w", name, strings.Join(args, " "), strings.TrimSpace(stderr.String()), err)
	}
	return string(out), nil
}

func exists(ctx context.Context, ds string) bool {
	return exec.CommandContext(ctx, "zfs", "list", "-H", "-o", "name", ds).Run() == nil
}

// defaultPoolName is the zpool name of a Cell pool: its name and a hash of
// the daemon's directory, so that two daemons on one host never clash.
func defaultPoolName(p storage.Pool) string {
	sum := sha256.Sum256([]byte(filepath.Dir(p.DisksDir)))
	name := p.Name + "-" + hex.EncodeToString(sum[:])[:8]
	for _, reserved := range []string{"mirror", "raidz", "spare", "log", "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"} {
		if strings.HasPrefix(name, reserved) {
			return "cell-" + name
		}
	}
	return name
}

// Create makes a zfs pool: a new zpool on a loop file (no source) or on a
// block device, or a pool inside an existing dataset (source=pool/dataset).
func Create(ctx context.Context, p storage.Pool) (_ storage.Driver, _ map[string]string, err error) {
	config := maps.Clone(p.Config)
	if config == nil {
		config = map[string]string{}
	}
	if err := ensureDaemon(ctx); err != nil {
		return nil, nil, err
	}
	z := &ZFS{name: p.Name, dir: p.Dir, cfg: config}
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	source := config["source"]
	if source != "" && config["size"] != "" {
		return nil, nil, fmt.Errorf("%w: size is only for pools on a loop file (without source)", storage.ErrInvalidConfig)
	}
	switch {
	case source == "" || strings.HasPrefix(source, "/"):
		zp := config[PoolNameKey]
		if zp == "" {
			zp = defaultPoolName(p)
		}
		if strings.Contains(zp, "/") {
			return nil, nil, fmt.Errorf("%w: %s %q must be a zpool name (no /) for a new zpool", storage.ErrInvalidConfig, PoolNameKey, zp)
		}
		if exists(ctx, zp) {
			return nil, nil, fmt.Errorf("%w: a zpool named %q already exists: choose another %s", storage.ErrInvalidConfig, zp, PoolNameKey)
		}
		vdev := source
		if source == "" {
			if config["size"] == "" {
				config["size"] = defaultSize
			}
			size, err := storage.ParseSize(config["size"])
			if err != nil {
				return nil, nil, fmt.Errorf("%w: size: %v", storage.ErrInvalidConfig, err)
			}
			if size < minSize {
				return nil, nil, fmt.Errorf("%w: size %s is too small: a zfs pool needs at least 64MiB", storage.ErrInvalidConfig, config["size"])
			}
			vdev = filepath.Join(p.DisksDir, p.Name+".img")
			if err := storage.MakeLoopFile(vdev, size); err != nil {
				return nil, nil, err
			}
			undo = append(undo, func() { _ = os.Remove(vdev) })
			config["source"] = vdev
			z.file = vdev
		} else if st, err := os.Stat(source); err != nil || st.Mode()&fs.ModeDevice == 0 || st.Mode()&fs.ModeCharDevice != 0 {
			return nil, nil, fmt.Errorf("%w: source %s must be a block device or a dataset (pool/dataset)", storage.ErrInvalidConfig, source)
		}
		if err := run(ctx, "zpool", "create", "-m", "none", "-o", "cachefile=none", zp, vdev); err != nil {
			return nil, nil, fmt.Errorf("create zpool: %w", err)
		}
		undo = append(undo, func() { _ = run(context.WithoutCancel(ctx), "zpool", "destroy", "-f", zp) })
		config[PoolNameKey] = zp
		z.root, z.zpool = zp, true
	default:
		if err := checkDatasetName(source); err != nil {
			return nil, nil, fmt.Errorf("%w: source: %v", storage.ErrInvalidConfig, err)
		}
		if !exists(ctx, source) {
			return nil, nil, fmt.Errorf("%w: source: dataset %q does not exist", storage.ErrInvalidConfig, source)
		}
		for _, sub := range []string{"containers", "images", "snapshots", "deleted"} {
			if exists(ctx, source+"/"+sub) {
				return nil, nil, fmt.Errorf("%w: source: dataset %q already holds %s/: it is not empty", storage.ErrInvalidConfig, source, sub)
			}
		}
		config[PoolNameKey] = source
		z.root = source
		undo = append(undo, func() {
			for _, sub := range []string{"containers", "images", "snapshots", "deleted"} {
				_ = run(context.WithoutCancel(ctx), "zfs", "destroy", "-r", source+"/"+sub)
			}
		})
	}
	if err := os.MkdirAll(p.Dir, 0o711); err != nil {
		return nil, nil, fmt.Errorf("create pool directory: %w", err)
	}
	undo = append(undo, func() { _ = removeDirs(p.Dir) })
	if err := z.layout(ctx); err != nil {
		return nil, nil, err
	}
	return z, config, nil
}

// layout makes the top datasets that are missing.
func (z *ZFS) layout(ctx context.Context) error {
	for _, sub := range []string{"containers", "images", "snapshots", "deleted"} {
		ds := z.root + "/" + sub
		if exists(ctx, ds) {
			continue
		}
		mp := filepath.Join(z.dir, sub)
		if sub == "deleted" {
			mp = "none"
		}
		if err := run(ctx, "zfs", "create", "-o", "canmount=off", "-o", "mountpoint="+mp, ds); err != nil {
			return fmt.Errorf("create pool layout: %w", err)
		}
	}
	if !exists(ctx, z.root+"/deleted/images") {
		if err := run(ctx, "zfs", "create", "-o", "canmount=off", z.root+"/deleted/images"); err != nil {
			return fmt.Errorf("create pool layout: %w", err)
		}
	}
	return nil
}

// Open opens an existing zfs pool: starts zfs-fuse if needed, imports the
// zpool if it is not (after a reboot), mounts its datasets and removes the
// temporary datasets a crash left.
func Open(ctx context.Context, p storage.Pool) (storage.Driver, error) {
	if err := ensureDaemon(ctx); err != nil {
		return nil, err
	}
	config := maps.Clone(p.Config)
	root := config[PoolNameKey]
	if root == "" {
		return nil, fmt.Errorf("zfs pool %s has no %s", p.Name, PoolNameKey)
	}
	source := config["source"]
	// celld owns the zpool it made on a loop file or a device; a dataset
	// given as source (even a whole zpool) stays the user's.
	z := &ZFS{name: p.Name, root: root, dir: p.Dir, cfg: config, zpool: strings.HasPrefix(source, "/")}
	if z.zpool {
		if st, err := os.Stat(source); err == nil && st.Mode().IsRegular() {
			z.file = source
		}
	}
	zp, _, _ := strings.Cut(root, "/")
	if err := run(ctx, "zpool", "list", "-H", "-o", "name", zp); err != nil {
		args := []string{"import"}
		if z.file != "" {
			args = append(args, "-d", filepath.Dir(z.file))
		}
		if err := run(ctx, "zpool", append(args, "-o", "cachefile=none", zp)...); err != nil {
			return nil, fmt.Errorf("import zpool %s: %w", zp, err)
		}
		slog.Info("imported zpool", "zpool", zp, "pool", p.Name)
	}
	if err := os.MkdirAll(p.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("create pool directory: %w", err)
	}
	if err := z.layout(ctx); err != nil {
		return nil, err
	}
	list, err := output(ctx, "zfs", "list", "-H", "-o", "name,mounted,canmount,mountpoint", "-t", "filesystem", "-r", root)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			continue
		}
		if orig, ok := strings.CutSuffix(f[0], ".old"); ok && strings.HasPrefix(f[0], root+"/containers/") {
			// A refresh swapped volumes and crashed between the renames.
			if exists(ctx, orig) {
				err = destroy(ctx, f[0])
			} else {
				err = run(ctx, "zfs", "rename", f[0], orig)
			}
			if err != nil {
				slog.Warn("recover replaced volume", "dataset", f[0], "err", err)
			}
			continue
		}
		if strings.HasSuffix(f[0], ".tmp") {
			if err := run(ctx, "zfs", "destroy", "-r", f[0]); err != nil {
				slog.Warn("remove leftover temporary dataset", "dataset", f[0], "err", err)
			}
			continue
		}
		if f[1] == "no" && f[2] == "on" && strings.HasPrefix(f[3], "/") {
			if err := run(ctx, "zfs", "mount", f[0]); err != nil {
				return nil, fmt.Errorf("mount dataset: %w", err)
			}
		}
	}
	// Temporary snapshots a copy or refresh made of its source, and hidden
	// ones whose clones are gone (a crash between a copy's snapshot and
	// its clone, or during a delete).
	snaps, err := output(ctx, "zfs", "list", "-H", "-o", "name,"+deletedProp, "-t", "snapshot", "-r", root+"/containers")
	if err != nil {
		return nil, err
	}
	users, err := z.origins(ctx)
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(snaps), "\n") {
		name, deleted, _ := strings.Cut(line, "\t")
		_, snap, _ := strings.Cut(name, "@")
		hidden := deleted == "on" || strings.HasPrefix(snap, clonePrefix)
		if strings.HasPrefix(snap, "copy-") || (hidden && len(users[name]) == 0) {
			if err := run(ctx, "zfs", "destroy", name); err != nil {
				slog.Warn("remove leftover snapshot", "snapshot", name, "err", err)
			}
		}
	}
	return z, nil
}

// removeDirs removes the empty directories under dir (the mount points
// zfs left), deepest first, and dir itself; a non-empty one stays.
func removeDirs(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var first error
	for _, d := range slices.Backward(dirs) {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) && first == nil {
			first = fmt.Errorf("remove %s: %w", d, err)
		}
	}
	return first
}

func (z *ZFS) imageDS(fp string) string         { return z.root + "/images/" + fp }
func (z *ZFS) instanceDS(name string) string    { return z.root + "/containers/" + name }
func (z *ZFS) snapshotsDS(name string) string   { return z.root + "/snapshots/" + name }
func (z *ZFS) snapDS(inst, snap string) string  { return z.snapshotsDS(inst) + "/" + snap }
func (z *ZFS) zfsSnap(inst, snap string) string { return z.instanceDS(inst) + "@snapshot-" + snap }

// Name implements storage.Driver.
func (z *ZFS) Name() string { return "zfs" }

// Dataset is the dataset of an instance volume.
func (z *ZFS) Dataset(instance string) string { return z.instanceDS(instance) }

// InstancePath implements storage.Driver.
func (z *ZFS) InstancePath(name string) string { return filepath.Join(z.dir, "containers", name) }

// SnapshotPath implements storage.Driver: the mount point of the
// snapshot's read-only clone.
func (z *ZFS) SnapshotPath(instance, snap string) string {
	return filepath.Join(z.dir, "snapshots", instance, snap)
}

// HasImage implements storage.Driver.
func (z *ZFS) HasImage(fp string) bool {
	return exists(context.Background(), z.imageDS(fp)+"@readonly")
}

// CreateImage implements storage.Driver: the image is unpacked into a
// temporary dataset, snapshotted as @readonly and renamed into place.
func (z *ZFS) CreateImage(ctx context.Context, fp string, fill func(dir string) error) error {
	final := z.imageDS(fp)
	tmp := final + ".tmp"
	if exists(ctx, tmp) {
		if err := run(ctx, "zfs", "destroy", "-r", tmp); err != nil {
			return fmt.Errorf("clear leftover %s: %w", tmp, err)
		}
	}
	if err := run(ctx, "zfs", "create", tmp); err != nil {
		return fmt.Errorf("create image dataset: %w", err)
	}
	err := func() error {
		dir := filepath.Join(z.dir, "images", fp+".tmp")
		if err := os.Chmod(dir, volumeMode); err != nil {
			return fmt.Errorf("set volume mode: %w", err)
		}
		if err := fill(dir); err != nil {
			return err
		}
		if err := run(ctx, "zfs", "snapshot", tmp+"@readonly"); err != nil {
			return fmt.Errorf("snapshot image dataset: %w", err)
		}
		// Image volumes stay unmounted: instances are clones of @readonly.
		if err := run(ctx, "zfs", "set", "readonly=on", tmp); err != nil {
			return fmt.Errorf("make image dataset read-only: %w", err)
		}
		if err := run(ctx, "zfs", "set", "canmount=noauto", tmp); err != nil {
			return err
		}
		if err := unmount(ctx, tmp); err != nil {
			return err
		}
		return run(ctx, "zfs", "rename", tmp, final)
	}()
	if err != nil {
		_ = run(context.WithoutCancel(ctx), "zfs", "destroy", "-r", tmp)
		return err
	}
	return nil
}

// clones lists the datasets whose origin is snapshot (zfs-fuse has no
// `clones` property).
func (z *ZFS) clones(ctx context.Context, snapshot string) ([]string, error) {
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name,origin", "-t", "filesystem", "-r", z.root)
	if err != nil {
		return nil, err
	}
	var list []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, origin, ok := strings.Cut(line, "\t"); ok && origin == snapshot {
			list = append(list, name)
		}
	}
	return list, nil
}

// DeleteImage implements storage.Driver. An image volume that instances
// are still cloned from cannot be destroyed: as LXD does, it moves to
// R/deleted/images and is destroyed when its last clone is.
func (z *ZFS) DeleteImage(ctx context.Context, fp string) error {
	ds := z.imageDS(fp)
	if !exists(ctx, ds) {
		return nil
	}
	users, err := z.clones(ctx, ds+"@readonly")
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return destroy(ctx, ds)
	}
	moved := fmt.Sprintf("%s/deleted/images/%s-%d", z.root, fp, time.Now().UnixNano())
	if err := run(ctx, "zfs", "rename", ds, moved); err != nil {
		return fmt.Errorf("move image volume in use aside: %w", err)
	}
	slog.Info("image volume still has clones: kept until the last one is deleted", "image", fp, "dataset", moved)
	return nil
}

// ensureMounted mounts a volume's dataset that a receive or rename left
// unmounted: zfs-fuse has been seen to skip the remount of a dataset it
// received into or renamed, under load, without an error.
func ensureMounted(ctx context.Context, ds string) error {
	out, err := output(ctx, "zfs", "get", "-H", "-o", "value", "mounted", ds)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) == "yes" {
		return nil
	}
	slog.Warn("zfs left a volume unmounted: mounting it", "dataset", ds)
	if err := run(ctx, "zfs", "mount", ds); err != nil {
		return fmt.Errorf("mount volume: %w", err)
	}
	return nil
}

// unmount unmounts a dataset (run retries while zfs-fuse says busy).
func unmount(ctx context.Context, ds string) error {
	err := run(ctx, "zfs", "umount", ds)
	if err == nil || strings.Contains(err.Error(), "not currently mounted") {
		return nil
	}
	return fmt.Errorf("unmount dataset: %w", err)
}

func destroy(ctx context.Context, ds string) error {
	if !exists(ctx, ds) {
		return nil
	}
	// zfs-fuse answers "busy" to destroying a mounted dataset: unmount
	// the tree first, deepest first.
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name,mounted", "-t", "filesystem", "-r", ds)
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range slices.Backward(lines) {
		if name, mounted, _ := strings.Cut(line, "\t"); mounted == "yes" {
			if err := unmount(ctx, name); err != nil {
				return err
			}
		}
	}
	if err := run(ctx, "zfs", "destroy", "-r", ds); err != nil {
		return fmt.Errorf("destroy dataset: %w", err)
	}
	return nil
}

// CreateInstanceFromImage implements storage.Driver: a clone of the image
// volume's snapshot, which shares every block with it.
func (z *ZFS) CreateInstanceFromImage(ctx context.Context, name, fp string) error {
	if err := run(ctx, "zfs", "clone", z.imageDS(fp)+"@readonly", z.instanceDS(name)); err != nil {
		return fmt.Errorf("clone image volume: %w", err)
	}
	return nil
}

// CreateInstanceEmpty implements storage.Driver.
func (z *ZFS) CreateInstanceEmpty(ctx context.Context, name string) error {
	ds := z.instanceDS(name)
	if err := run(ctx, "zfs", "create", ds); err != nil {
		return fmt.Errorf("create instance dataset: %w", err)
	}
	dir := z.InstancePath(name)
	if err := os.Chmod(dir, volumeMode); err != nil {
		_ = destroy(context.WithoutCancel(ctx), ds)
		return fmt.Errorf("set volume mode: %w", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		_ = destroy(context.WithoutCancel(ctx), ds)
		return fmt.Errorf("create rootfs: %w", err)
	}
	return nil
}

// DeleteInstance implements storage.Driver: the snapshots' exposed
// clones, the volume's snapshots (release hands those that copies were
// cloned from over to a copy), the volume, then its origin when that was
// a hidden snapshot or a deleted image and this was its last clone.
func (z *ZFS) DeleteInstance(ctx context.Context, name string) error {
	ds := z.instanceDS(name)
	if err := destroy(ctx, z.snapshotsDS(name)); err != nil {
		return err
	}
	_ = removeDirs(filepath.Join(z.dir, "snapshots", name))
	if !exists(ctx, ds) {
		return nil
	}
	if err := z.release(ctx, ds); err != nil {
		return err
	}
	// Read after release: a promote changes the origin.
	out, err := output(ctx, "zfs", "get", "-H", "-o", "value", "origin", ds)
	if err != nil {
		return err
	}
	origin := strings.TrimSpace(out)
	if err := destroy(ctx, ds); err != nil {
		return err
	}
	_ = os.Remove(z.InstancePath(name))
	z.dropOrigin(ctx, origin)
	return nil
}

// RenameInstance implements storage.Driver: its snapshots move first.
func (z *ZFS) RenameInstance(ctx context.Context, oldName, newName string) error {
	if exists(ctx, z.snapshotsDS(oldName)) {
		if err := run(ctx, "zfs", "rename", z.snapshotsDS(oldName), z.snapshotsDS(newName)); err != nil {
			return fmt.Errorf("rename snapshots: %w", err)
		}
	}
	if err := run(ctx, "zfs", "rename", z.instanceDS(oldName), z.instanceDS(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	_ = os.Remove(z.InstancePath(oldName))
	return nil
}

// Instances implements storage.Driver.
func (z *ZFS) Instances() ([]string, error) {
	return z.children(context.Background(), z.root+"/containers")
}

// children lists the direct child filesystems of ds by their last name.
func (z *ZFS) children(ctx context.Context, ds string) ([]string, error) {
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", ds)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rest, ok := strings.CutPrefix(line, ds+"/")
		if ok && !strings.Contains(rest, "/") && !strings.HasSuffix(rest, ".tmp") && !strings.HasSuffix(rest, ".old") {
			names = append(names, rest)
		}
	}
	return names, nil
}

// CreateSnapshot implements storage.Driver: a zfs snapshot, exposed at
// SnapshotPath as a read-only clone (zfs-fuse has no .zfs directory).
func (z *ZFS) CreateSnapshot(ctx context.Context, instance, snap string) error {
	if !exists(ctx, z.snapshotsDS(instance)) {
		if err := run(ctx, "zfs", "create", "-o", "canmount=off", z.snapshotsDS(instance)); err != nil {
			return fmt.Errorf("create snapshots dataset: %w", err)
		}
	}
	zs := z.zfsSnap(instance, snap)
	if exists(ctx, zs) && isHidden(ctx, zs) {
		// A deleted snapshot of that name kept for its clones: renamed
		// (which zfs-fuse refuses while a clone is in use).
		renamed := fmt.Sprintf("%s@%s%d", z.instanceDS(instance), clonePrefix, time.Now().UnixNano())
		if err := run(ctx, "zfs", "rename", zs, renamed); err != nil {
			return fmt.Errorf("%w: a deleted snapshot named %q is still the origin of a copy in use; choose another name or stop the copy: %v",
				storage.ErrInvalidConfig, snap, err)
		}
	}
	if err := run(ctx, "zfs", "snapshot", zs); err != nil {
		return fmt.Errorf("snapshot instance volume: %w", err)
	}
	if err := run(ctx, "zfs", "clone", "-o", "readonly=on", zs, z.snapDS(instance, snap)); err != nil {
		_ = run(context.WithoutCancel(ctx), "zfs", "destroy", zs)
		return fmt.Errorf("expose snapshot: %w", err)
	}
	return nil
}

// DeleteSnapshot implements storage.Driver.
func (z *ZFS) DeleteSnapshot(ctx context.Context, instance, snap string) error {
	if err := destroy(ctx, z.snapDS(instance, snap)); err != nil {
		return err
	}
	_ = os.Remove(z.SnapshotPath(instance, snap))
	zs := z.zfsSnap(instance, snap)
	if !exists(ctx, zs) {
		return nil
	}
	users, err := z.origins(ctx)
	if err != nil {
		return err
	}
	if len(users[zs]) > 0 {
		// Copies were cloned from it: hidden, destroyed with the last.
		if err := run(ctx, "zfs", "set", deletedProp+"=on", zs); err != nil {
			return fmt.Errorf("hide snapshot: %w", err)
		}
		return nil
	}
	if err := run(ctx, "zfs", "destroy", zs); err != nil {
		return fmt.Errorf("destroy snapshot: %w", err)
	}
	return nil
}

// RenameSnapshot implements storage.Driver.
func (z *ZFS) RenameSnapshot(ctx context.Context, instance, oldName, newName string) error {
	if err := run(ctx, "zfs", "rename", z.zfsSnap(instance, oldName), z.zfsSnap(instance, newName)); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	if exists(ctx, z.snapDS(instance, oldName)) {
		if err := run(ctx, "zfs", "rename", z.snapDS(instance, oldName), z.snapDS(instance, newName)); err != nil {
			return fmt.Errorf("rename snapshot: %w", err)
		}
		_ = os.Remove(z.SnapshotPath(instance, oldName))
	}
	return nil
}

// newer lists the user snapshots of an instance taken after snap, oldest
// first, and the hidden ones (origins of copies) taken after it.
func (z *ZFS) newer(ctx context.Context, instance, snap string) (names []string, hidden []string, err error) {
	snaps, err := snapshotInfos(ctx, z.instanceDS(instance))
	if err != nil {
		return nil, nil, err
	}
	found := false
	for _, s := range snaps {
		user, isUser := strings.CutPrefix(s.name, "snapshot-")
		switch {
		case found && (s.hidden || !isUser):
			hidden = append(hidden, s.full)
		case found:
			names = append(names, user)
		case isUser && !s.hidden && user == snap:
			found = true
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("snapshot %s/%s not found on pool %s", instance, snap, z.name)
	}
	return names, hidden, nil
}

// CheckRestore implements storage.RestoreChecker: ZFS rolls back only to
// the latest snapshot; restoring an older one removes the newer ones,
// which is allowed only with volume.zfs.remove_snapshots=true (as LXD).
func (z *ZFS) CheckRestore(ctx context.Context, instance, snap string) ([]string, error) {
	newer, hidden, err := z.newer(ctx, instance, snap)
	if err != nil {
		return nil, err
	}
	users, err := z.origins(ctx)
	if err != nil {
		return nil, err
	}
	var copies []string
	for _, h := range hidden {
		for _, c := range users[h] {
			copies = append(copies, strings.TrimPrefix(c, z.root+"/containers/"))
		}
	}
	if len(copies) > 0 {
		return nil, fmt.Errorf("%w: snapshot %q of %q is older than the copies made of %q since (%s), which ZFS keeps as clones of it: "+
			"delete those copies first, or make copies on a pool with %s=false",
			storage.ErrInvalidConfig, snap, instance, instance, strings.Join(copies, ", "), CloneCopyKey)
	}
	if len(newer) == 0 {
		return nil, nil
	}
	z.mu.Lock()
	allowed, _ := strconv.ParseBool(z.cfg[RemoveSnapshotsKey])
	z.mu.Unlock()
	if !allowed {
		return nil, fmt.Errorf("%w: snapshot %q is not the latest snapshot of %q (newer: %s); ZFS can only restore the latest snapshot. "+
			"Restoring it removes the newer snapshots: allow that with zfs.remove_snapshots, set on the pool as %s=true (c storage set %s %s true)",
			storage.ErrInvalidConfig, snap, instance, strings.Join(newer, ", "), RemoveSnapshotsKey, z.name, RemoveSnapshotsKey)
	}
	return newer, nil
}

// RestoreSnapshot implements storage.Driver: `zfs rollback`, atomic. To an
// older snapshot (when CheckRestore allows it) the newer snapshots and
// their clones are destroyed first.
func (z *ZFS) RestoreSnapshot(ctx context.Context, instance, snap string) error {
	newer, err := z.CheckRestore(ctx, instance, snap)
	if err != nil {
		return err
	}
	for _, s := range newer {
		if err := z.DeleteSnapshot(ctx, instance, s); err != nil {
			return err
		}
	}
	// Hidden snapshots newer than snap have no clones (CheckRestore
	// checked): leftovers that rollback would refuse to pass.
	_, hidden, err := z.newer(ctx, instance, snap)
	if err != nil {
		return err
	}
	for _, h := range hidden {
		if err := run(ctx, "zfs", "destroy", h); err != nil {
			return fmt.Errorf("destroy snapshot: %w", err)
		}
	}
	if err := run(ctx, "zfs", "rollback", z.zfsSnap(instance, snap)); err != nil {
		return fmt.Errorf("roll back to snapshot: %w", err)
	}
	return nil
}

// Usage implements storage.Driver: space from zfs (inodes are not
// counted by ZFS: 0).
func (z *ZFS) Usage() (storage.Usage, error) {
	out, err := output(context.Background(), "zfs", "get", "-H", "-p", "-o", "value", "used,available", z.root)
	if err != nil {
		return storage.Usage{}, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return storage.Usage{}, fmt.Errorf("zfs get used,available %s: unexpected %q", z.root, out)
	}
	used, err1 := strconv.ParseUint(f[0], 10, 64)
	avail, err2 := strconv.ParseUint(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return storage.Usage{}, fmt.Errorf("zfs usage of %s: %w", z.root, err)
	}
	return storage.Usage{SpaceUsed: used, SpaceTotal: used + avail}, nil
}

// Update implements storage.Driver.
func (z *ZFS) Update(_ context.Context, config map[string]string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.cfg = maps.Clone(config)
	return nil
}

// Delete implements storage.Driver: the zpool celld made is destroyed and
// its loop file removed; in a user's dataset, only what the pool made.
func (z *ZFS) Delete(ctx context.Context) error {
	if z.zpool {
		if err := run(ctx, "zpool", "destroy", z.root); err != nil {
			return fmt.Errorf("destroy zpool: %w", err)
		}
	} else {
		for _, sub := range []string{"containers", "images", "snapshots", "deleted", "custom"} {
			if err := destroy(ctx, z.root+"/"+sub); err != nil {
				return err
			}
		}
	}
	if err := removeDirs(z.dir); err != nil {
		return err
	}
	if z.file != "" {
		if err := os.Remove(z.file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove loop file: %w", err)
		}
	}
	return nil
}

// sendRecv copies snapshot into a new dataset target with zfs send | zfs
// recv (a full, independent copy: no clone ties target to the source).
func sendRecv(ctx context.Context, snapshot, target string) error {
	send := exec.CommandContext(ctx, "zfs", "send", snapshot)
	recv := exec.CommandContext(ctx, "zfs", "recv", target)
	var sendErr, recvErr strings.Builder
	send.Stderr, recv.Stderr = &sendErr, &recvErr
	pipe, err := send.StdoutPipe()
	if err != nil {
		return err
	}
	recv.Stdin = pipe
	if err := send.Start(); err != nil {
		return fmt.Errorf("zfs send: %w", err)
	}
	rerr := recv.Run()
	// recv may stop early (out of space): without the read end, send
	// gets EPIPE instead of blocking on a full pipe forever.
	_ = pipe.Close()
	serr := send.Wait()
	if serr != nil || rerr != nil {
		return fmt.Errorf("zfs send %s | zfs recv %s: %s %s: %w", snapshot, target,
			strings.TrimSpace(sendErr.String()), strings.TrimSpace(recvErr.String()), errors.Join(serr, rerr))
	}
	return nil
}

// copyFrom makes instance volume dst from snapshot snap (DS@NAME): received
// under a temporary name, stripped of the transferred snapshot, renamed.
// A full, independent copy: used where a clone cannot be (a volume copied
// with its snapshots, whose history must be its own).
func (z *ZFS) copyFrom(ctx context.Context, snap, dst string) error {
	final := z.instanceDS(dst)
	if exists(ctx, final) {
		return fmt.Errorf("volume %s already exists", final)
	}
	tmp := final + ".tmp"
	if err := destroy(ctx, tmp); err != nil {
		return err
	}
	_, name, _ := strings.Cut(snap, "@")
	err := sendRecv(ctx, snap, tmp)
	if err == nil {
		err = run(ctx, "zfs", "destroy", tmp+"@"+name)
	}
	if err == nil {
		err = run(ctx, "zfs", "rename", tmp, final)
	}
	if err != nil {
		_ = destroy(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("copy volume: %w", err)
	}
	return ensureMounted(ctx, final)
}

// Copies are clones. `c copy C01 C02` snapshots C01 as C01@clone-N (a
// hidden snapshot: never listed as one of C01's) and clones it as C02;
// `c copy C01/snap0 C03` clones C01@snapshot-snap0. Both share every
// block with the source. A clone pins its origin snapshot, so:
//
//   - Deleting a snapshot that has clones only hides it (property
//     cell:deleted=on); it is destroyed with its last clone.
//   - Deleting an instance whose snapshots have clones promotes the clone
//     of the newest of them (`zfs promote`), which takes those snapshots
//     over; the instance's dataset then has none left and is destroyed.
//     LXD renames such a dataset into a hidden deleted/ dataset instead,
//     but on zfs-fuse renaming a dataset or a snapshot unmounts its
//     clones, which fails while a clone is in use (a running copy);
//     promote does not touch mounts.
//   - Deleting a clone destroys its origin snapshot when that was hidden
//     and this was its last clone: nothing is left behind.
//   - ZFS rolls back only past snapshots it can destroy: restoring a
//     snapshot older than a copy's origin is refused while the copy
//     exists (pools with zfs.clone_copy=false make independent copies).

const (
	// clonePrefix names the hidden snapshots copies are cloned from.
	clonePrefix = "clone-"
	// deletedProp marks a snapshot deleted by the user but kept as the
	// origin of clones.
	deletedProp = "cell:deleted"
	// CloneCopyKey chooses clones (true, the default) or independent
	// send/receive copies (false) for instance copies (LXD's key).
	CloneCopyKey = "zfs.clone_copy"
)

// cloneCopy reports whether copies are clones on this pool.
func (z *ZFS) cloneCopy() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	v, err := strconv.ParseBool(z.cfg[CloneCopyKey])
	return err != nil || v
}

// snapInfo is one zfs snapshot of a dataset.
type snapInfo struct {
	full   string // DS@NAME
	name   string // NAME
	hidden bool   // an origin kept for clones, not a user snapshot
}

// snapshotInfos lists the snapshots of dataset ds, oldest first.
func snapshotInfos(ctx context.Context, ds string) ([]snapInfo, error) {
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name,"+deletedProp, "-t", "snapshot", "-s", "creation", "-r", ds)
	if err != nil {
		return nil, err
	}
	var list []snapInfo
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		full, deleted, _ := strings.Cut(line, "\t")
		name, ok := strings.CutPrefix(full, ds+"@")
		if !ok {
			continue
		}
		list = append(list, snapInfo{full: full, name: name, hidden: deleted == "on" || strings.HasPrefix(name, clonePrefix)})
	}
	return list, nil
}

// origins maps each snapshot under the pool that has clones to them
// (zfs-fuse has no `clones` property).
func (z *ZFS) origins(ctx context.Context) (map[string][]string, error) {
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name,origin", "-t", "filesystem", "-r", z.root)
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, origin, ok := strings.Cut(line, "\t"); ok && origin != "-" && origin != "" {
			m[origin] = append(m[origin], name)
		}
	}
	return m, nil
}

// isHidden reports whether a snapshot (DS@NAME) is a kept origin.
func isHidden(ctx context.Context, snapshot string) bool {
	if _, name, _ := strings.Cut(snapshot, "@"); strings.HasPrefix(name, clonePrefix) {
		return true
	}
	out, err := output(ctx, "zfs", "get", "-H", "-o", "value", deletedProp, snapshot)
	return err == nil && strings.TrimSpace(out) == "on"
}

// cloneInto clones snapshot as instance volume dst.
func (z *ZFS) cloneInto(ctx context.Context, snapshot, dst string) error {
	if exists(ctx, z.instanceDS(dst)) {
		return fmt.Errorf("volume %s already exists", z.instanceDS(dst))
	}
	if err := run(ctx, "zfs", "clone", snapshot, z.instanceDS(dst)); err != nil {
		return fmt.Errorf("clone volume: %w", err)
	}
	return nil
}

// CopyInstance implements storage.Driver: a clone of a hidden snapshot of
// src (or, with zfs.clone_copy=false, a temporary snapshot sent to dst).
func (z *ZFS) CopyInstance(ctx context.Context, src, dst string) error {
	if !z.cloneCopy() {
		snap := fmt.Sprintf("%s@copy-%d", z.instanceDS(src), time.Now().UnixNano())
		if err := run(ctx, "zfs", "snapshot", snap); err != nil {
			return fmt.Errorf("snapshot source volume: %w", err)
		}
		defer func() { _ = run(context.WithoutCancel(ctx), "zfs", "destroy", snap) }()
		return z.copyFrom(ctx, snap, dst)
	}
	snap := fmt.Sprintf("%s@%s%d", z.instanceDS(src), clonePrefix, time.Now().UnixNano())
	if err := run(ctx, "zfs", "snapshot", snap); err != nil {
		return fmt.Errorf("snapshot source volume: %w", err)
	}
	if err := z.cloneInto(ctx, snap, dst); err != nil {
		_ = run(context.WithoutCancel(ctx), "zfs", "destroy", snap)
		return err
	}
	return nil
}

// CopySnapshotToInstance implements storage.Driver: a clone of the
// snapshot (or, with zfs.clone_copy=false, a copy sent from it).
func (z *ZFS) CopySnapshotToInstance(ctx context.Context, inst, snap, dst string) error {
	if !z.cloneCopy() {
		return z.copyFrom(ctx, z.zfsSnap(inst, snap), dst)
	}
	return z.cloneInto(ctx, z.zfsSnap(inst, snap), dst)
}

// release frees dataset ds, about to be destroyed, of its snapshots:
// those without clones are destroyed, and the clone of the newest one
// that has clones is promoted, taking over every remaining snapshot.
// Hidden snapshots that move keep their mark; user snapshots that move
// are marked hidden, and renamed first if the promoted clone already has
// a snapshot of that name.
func (z *ZFS) release(ctx context.Context, ds string) error {
	snaps, err := snapshotInfos(ctx, ds)
	if err != nil || len(snaps) == 0 {
		return err
	}
	users, err := z.origins(ctx)
	if err != nil {
		return err
	}
	var pinned []snapInfo
	for _, s := range snaps {
		if len(users[s.full]) == 0 {
			if err := run(ctx, "zfs", "destroy", s.full); err != nil {
				return fmt.Errorf("destroy snapshot: %w", err)
			}
			continue
		}
		pinned = append(pinned, s)
	}
	if len(pinned) == 0 {
		return nil
	}
	heir := users[pinned[len(pinned)-1].full][0]
	own, err := snapshotInfos(ctx, heir)
	if err != nil {
		return err
	}
	for _, s := range pinned {
		if !s.hidden {
			if err := run(ctx, "zfs", "set", deletedProp+"=on", s.full); err != nil {
				return fmt.Errorf("hide snapshot %s: %w", s.full, err)
			}
		}
		if slices.ContainsFunc(own, func(o snapInfo) bool { return o.name == s.name }) {
			renamed := fmt.Sprintf("%s@%s%d", ds, clonePrefix, time.Now().UnixNano())
			if err := run(ctx, "zfs", "rename", s.full, renamed); err != nil {
				return fmt.Errorf("rename snapshot %s out of the way of %s's: %w", s.full, heir, err)
			}
		}
	}
	if err := run(ctx, "zfs", "promote", heir); err != nil {
		return fmt.Errorf("promote %s, a copy of %s: %w", heir, ds, err)
	}
	slog.Info("promoted a copy so that its source can be deleted", "copy", heir, "source", ds)
	return nil
}

// dropOrigin destroys origin snapshot (DS@NAME) of a dataset just
// destroyed when it was hidden and had no other clone, and then its
// dataset when that was a deleted image with no snapshot left.
func (z *ZFS) dropOrigin(ctx context.Context, origin string) {
	ds, _, ok := strings.Cut(origin, "@")
	if !ok {
		return
	}
	users, err := z.origins(ctx)
	if err != nil || len(users[origin]) > 0 {
		return
	}
	if strings.HasPrefix(ds, z.root+"/deleted/") {
		if err := destroy(ctx, ds); err != nil {
			slog.Warn("destroy deleted image volume", "dataset", ds, "err", err)
		}
		return
	}
	if !isHidden(ctx, origin) {
		return
	}
	if err := run(ctx, "zfs", "destroy", origin); err != nil {
		slog.Warn("destroy the origin snapshot of a deleted copy", "snapshot", origin, "err", err)
	}
}

// SetQuota implements storage.Driver: refquota on the instance's dataset
// (quota where the pool version lacks refquota).
func (z *ZFS) SetQuota(ctx context.Context, instance string, bytes int64) error {
	ds := z.instanceDS(instance)
	if !exists(ctx, ds) {
		return fmt.Errorf("instance volume %s does not exist", ds)
	}
	value := "none"
	if bytes > 0 {
		out, err := output(ctx, "zfs", "get", "-H", "-p", "-o", "value", "referenced", ds)
		if err != nil {
			return err
		}
		used, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			return fmt.Errorf("space used by %s: %q: %w", ds, out, err)
		}
		if used > bytes {
			return storage.BelowUsed(instance, bytes, used)
		}
		value = strconv.FormatInt(bytes, 10)
	}
	err := run(ctx, "zfs", "set", "refquota="+value, ds)
	if err != nil && strings.Contains(err.Error(), "refquota") && strings.Contains(err.Error(), "invalid property") {
		err = run(ctx, "zfs", "set", "quota="+value, ds)
	}
	if err != nil {
		return fmt.Errorf("set quota: %w", err)
	}
	return nil
}

// snapshotsByCreation lists the zfs snapshots of a dataset, oldest first,
// by their names after the @.
func snapshotsByCreation(ctx context.Context, ds string) ([]string, error) {
	out, err := output(ctx, "zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "creation", "-r", ds)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if s, ok := strings.CutPrefix(line, ds+"@"); ok {
			names = append(names, s)
		}
	}
	return names, nil
}

func guid(ctx context.Context, snapshot string) string {
	out, err := output(ctx, "zfs", "get", "-H", "-o", "value", "guid", snapshot)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(out)
}

// sendInc sends the changes between two snapshots of a dataset into
// target (rolled back to its latest snapshot first).
func sendInc(ctx context.Context, from, to, target string) error {
	send := exec.CommandContext(ctx, "zfs", "send", "-i", from, to)
	recv := exec.CommandContext(ctx, "zfs", "recv", "-F", target)
	var sendErr, recvErr strings.Builder
	send.Stderr, recv.Stderr = &sendErr, &recvErr
	pipe, err := send.StdoutPipe()
	if err != nil {
		return err
	}
	recv.Stdin = pipe
	if err := send.Start(); err != nil {
		return fmt.Errorf("zfs send: %w", err)
	}
	rerr := recv.Run()
	// recv may stop early (out of space): without the read end, send
	// gets EPIPE instead of blocking on a full pipe forever.
	_ = pipe.Close()
	serr := send.Wait()
	if serr != nil || rerr != nil {
		return fmt.Errorf("zfs send -i %s %s | zfs recv %s: %s %s: %w", from, to, target,
			strings.TrimSpace(sendErr.String()), strings.TrimSpace(recvErr.String()), errors.Join(serr, rerr))
	}
	return nil
}

// CopyInstanceWithSnapshots implements storage.SnapshotsCopier: the
// snapshots, oldest first, then the volume's current content are sent
// into a temporary dataset (the first in full, the rest as increments),
// which is renamed into place and its snapshots exposed. All or nothing.
func (z *ZFS) CopyInstanceWithSnapshots(ctx context.Context, src, dst string, snaps []string) (err error) {
	srcDS, final := z.instanceDS(src), z.instanceDS(dst)
	if exists(ctx, final) {
		return fmt.Errorf("volume %s already exists", final)
	}
	all, err := snapshotsByCreation(ctx, srcDS)
	if err != nil {
		return err
	}
	var chain []string
	for _, s := range all {
		if name, ok := strings.CutPrefix(s, "snapshot-"); ok && slices.Contains(snaps, name) {
			chain = append(chain, s)
		}
	}
	if len(chain) != len(snaps) {
		return fmt.Errorf("copy %s: snapshots %v not all found on pool %s", src, snaps, z.name)
	}
	tmp := final + ".tmp"
	if err := destroy(ctx, tmp); err != nil {
		return err
	}
	now := fmt.Sprintf("copy-%d", time.Now().UnixNano())
	if err := run(ctx, "zfs", "snapshot", srcDS+"@"+now); err != nil {
		return fmt.Errorf("snapshot source volume: %w", err)
	}
	defer func() { _ = run(context.WithoutCancel(ctx), "zfs", "destroy", srcDS+"@"+now) }()
	chain = append(chain, now)
	var exposed []string
	defer func() {
		if err != nil {
			for _, s := range exposed {
				_ = destroy(context.WithoutCancel(ctx), z.snapDS(dst, s))
			}
			_ = destroy(context.WithoutCancel(ctx), tmp)
			_ = destroy(context.WithoutCancel(ctx), final)
		}
	}()
	if err := sendRecv(ctx, srcDS+"@"+chain[0], tmp); err != nil {
		return fmt.Errorf("copy volume: %w", err)
	}
	for i := 1; i < len(chain); i++ {
		if err := sendInc(ctx, srcDS+"@"+chain[i-1], srcDS+"@"+chain[i], tmp); err != nil {
			return fmt.Errorf("copy volume: %w", err)
		}
	}
	if err := run(ctx, "zfs", "destroy", tmp+"@"+now); err != nil {
		return err
	}
	if err := run(ctx, "zfs", "rename", tmp, final); err != nil {
		return fmt.Errorf("copy volume: %w", err)
	}
	if err := ensureMounted(ctx, final); err != nil {
		return err
	}
	for _, s := range snaps {
		if err := z.expose(ctx, dst, s); err != nil {
			return err
		}
		exposed = append(exposed, s)
	}
	return nil
}

// expose makes the read-only clone of a snapshot at SnapshotPath.
func (z *ZFS) expose(ctx context.Context, instance, snap string) error {
	if !exists(ctx, z.snapshotsDS(instance)) {
		if err := run(ctx, "zfs", "create", "-o", "canmount=off", z.snapshotsDS(instance)); err != nil {
			return fmt.Errorf("create snapshots dataset: %w", err)
		}
	}
	if err := run(ctx, "zfs", "clone", "-o", "readonly=on", z.zfsSnap(instance, snap), z.snapDS(instance, snap)); err != nil {
		return fmt.Errorf("expose snapshot: %w", err)
	}
	return nil
}

// commonBase returns dst's latest snapshot when srcInst holds the same
// one (same name and guid: dst's was received from it), else "".
func (z *ZFS) commonBase(ctx context.Context, srcInst, dstInst string) (string, error) {
	infos, err := snapshotInfos(ctx, z.instanceDS(dstInst))
	if err != nil {
		return "", err
	}
	var have []string
	for _, s := range infos {
		if !s.hidden {
			have = append(have, s.name)
		}
	}
	if len(have) == 0 {
		return "", nil
	}
	last := have[len(have)-1]
	g := guid(ctx, z.instanceDS(srcInst)+"@"+last)
	if g == "" || g != guid(ctx, z.instanceDS(dstInst)+"@"+last) {
		return "", nil
	}
	return last, nil
}

// CopySnapshot implements storage.Driver. A zfs snapshot belongs to its
// volume's history: snap is sent as an increment from dstInst's latest
// snapshot, which must be one dstInst received from srcInst, and snap
// newer than it. The volume's content becomes snap's (a refresh then
// brings it up to date).
func (z *ZFS) CopySnapshot(ctx context.Context, srcInst, snap, dstInst string) error {
	base, err := z.commonBase(ctx, srcInst, dstInst)
	if err != nil {
		return err
	}
	if base == "" {
		have, err := snapshotsByCreation(ctx, z.instanceDS(dstInst))
		if err != nil {
			return err
		}
		if len(have) > 0 {
			return fmt.Errorf("%w: snapshot %s/%s cannot be added to %s on a zfs pool: %s has no snapshot in common with %s to build on; copy it again (without --refresh)",
				storage.ErrInvalidConfig, srcInst, snap, dstInst, dstInst, srcInst)
		}
		// No history to keep: dst becomes a full copy of the snapshot.
		if err := z.swapIn(ctx, z.zfsSnap(srcInst, snap), dstInst, true); err != nil {
			return err
		}
		return z.expose(ctx, dstInst, snap)
	}
	newer, _, err := z.newer(ctx, srcInst, strings.TrimPrefix(base, "snapshot-"))
	if err != nil || !slices.Contains(newer, snap) {
		return fmt.Errorf("%w: snapshot %s/%s is older than %s's latest snapshot %s: zfs cannot insert it; copy %s again (without --refresh)",
			storage.ErrInvalidConfig, srcInst, snap, dstInst, strings.TrimPrefix(base, "snapshot-"), dstInst)
	}
	if err := sendInc(ctx, z.instanceDS(srcInst)+"@"+base, z.zfsSnap(srcInst, snap), z.instanceDS(dstInst)); err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	if err := ensureMounted(ctx, z.instanceDS(dstInst)); err != nil {
		return err
	}
	if err := z.expose(ctx, dstInst, snap); err != nil {
		_ = run(context.WithoutCancel(ctx), "zfs", "destroy", z.zfsSnap(dstInst, snap))
		return err
	}
	return nil
}

// RefreshInstance implements storage.Driver: the changes since the latest
// snapshot both share are received into dst in one step (zfs recv is
// atomic); without a common snapshot, a full copy is received next to dst
// and swapped in (dst has no snapshots to keep then).
func (z *ZFS) RefreshInstance(ctx context.Context, src, dst string) error {
	srcDS, dstDS := z.instanceDS(src), z.instanceDS(dst)
	base, err := z.commonBase(ctx, src, dst)
	if err != nil {
		return err
	}
	now := fmt.Sprintf("copy-%d", time.Now().UnixNano())
	if err := run(ctx, "zfs", "snapshot", srcDS+"@"+now); err != nil {
		return fmt.Errorf("snapshot source volume: %w", err)
	}
	defer func() { _ = run(context.WithoutCancel(ctx), "zfs", "destroy", srcDS+"@"+now) }()
	if base != "" {
		if err := sendInc(ctx, srcDS+"@"+base, srcDS+"@"+now, dstDS); err != nil {
			return fmt.Errorf("refresh volume: %w", err)
		}
		if err := ensureMounted(ctx, dstDS); err != nil {
			return err
		}
		return run(ctx, "zfs", "destroy", dstDS+"@"+now)
	}
	if have, err := snapshotsByCreation(ctx, dstDS); err != nil || len(have) > 0 {
		return fmt.Errorf("%w: %s has snapshots that %s does not share: zfs cannot refresh it; copy it again (without --refresh)", storage.ErrInvalidConfig, dst, src)
	}
	return z.swapIn(ctx, srcDS+"@"+now, dst, false)
}

// swapIn replaces instance volume dst, which has no snapshots, by a full
// copy of snapshot (kept as dst's snapshot when keep is set): received
// next to dst, then swapped in by two renames. A crash between them
// leaves dst.old, which Open puts back when dst is missing.
func (z *ZFS) swapIn(ctx context.Context, snapshot, dst string, keep bool) error {
	dstDS := z.instanceDS(dst)
	old, tmp := dstDS+".old", dstDS+".tmp"
	if err := destroy(ctx, old); err != nil {
		return err
	}
	if err := destroy(ctx, tmp); err != nil {
		return err
	}
	if err := sendRecv(ctx, snapshot, tmp); err != nil {
		_ = destroy(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("copy volume: %w", err)
	}
	if !keep {
		_, name, _ := strings.Cut(snapshot, "@")
		if err := run(ctx, "zfs", "destroy", tmp+"@"+name); err != nil {
			_ = destroy(context.WithoutCancel(ctx), tmp)
			return err
		}
	}
	if err := run(ctx, "zfs", "rename", dstDS, old); err != nil {
		_ = destroy(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("swap volume: %w", err)
	}
	if err := run(ctx, "zfs", "rename", tmp, dstDS); err != nil {
		_ = run(context.WithoutCancel(ctx), "zfs", "rename", old, dstDS)
		_ = destroy(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("swap volume: %w", err)
	}
	if err := destroy(ctx, old); err != nil {
		slog.Warn("remove replaced volume", "dataset", old, "err", err)
	}
	return ensureMounted(ctx, dstDS)
}
