package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// volumeMode keeps every host user but root out of a volume: a rootfs holds
// the container's setuid programs, and running one from the host would make
// a user the container's root there (or the host's, for a privileged
// container). The daemon opens an instance volume to the container's root
// alone when it starts the instance.
const volumeMode = 0o700

// Dir stores volumes as plain directories.
type Dir struct {
	root string
	// owned is true when root is the pool's own directory, made by celld
	// (rather than a directory the user gave as source): deleting the pool
	// removes it.
	owned bool
}

// NewDir opens (creating if needed) a dir pool rooted at root. Temporary
// volumes are removed: a pool is opened when the daemon starts, so they are
// what a crash left half built or half deleted, and nothing refers to them.
func NewDir(root string) (*Dir, error) {
	for _, sub := range []string{"containers", "images", "snapshots"} {
		dir := filepath.Join(root, sub)
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create dir pool: %w", err)
		}
		stale, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
		if err != nil {
			return nil, fmt.Errorf("list dir pool: %w", err)
		}
		if sub == "snapshots" {
			// Snapshots being made or removed: snapshots/INSTANCE/.tmp-SNAP.
			nested, err := filepath.Glob(filepath.Join(dir, "*", ".tmp-*"))
			if err != nil {
				return nil, fmt.Errorf("list dir pool: %w", err)
			}
			stale = append(stale, nested...)
		}
		for _, p := range stale {
			if err := os.RemoveAll(p); err != nil {
				// Only space is lost: a later build of the same volume
				// clears it first.
				slog.Warn("remove leftover temporary volume", "path", p, "err", err)
			}
		}
	}
	return &Dir{root: root}, nil
}

// createDir makes a dir pool in the given source, which must be an empty
// directory, or in the pool's own directory.
func createDir(p Pool) (Driver, map[string]string, error) {
	config := map[string]string{"source": p.Config["source"]}
	if config["source"] == "" {
		config["source"] = p.Dir
		if _, err := os.Stat(p.Dir); err == nil {
			return nil, nil, fmt.Errorf("pool directory %s already exists", p.Dir)
		}
	} else {
		if !filepath.IsAbs(config["source"]) {
			return nil, nil, fmt.Errorf("%w: source %q must be an absolute path", ErrInvalidConfig, config["source"])
		}
		entries, err := os.ReadDir(config["source"])
		if err != nil {
			return nil, nil, fmt.Errorf("%w: source must be an existing empty directory: %v", ErrInvalidConfig, err)
		}
		if len(entries) > 0 {
			return nil, nil, fmt.Errorf("%w: source %s is not empty", ErrInvalidConfig, config["source"])
		}
	}
	d, err := NewDir(config["source"])
	if err != nil {
		if config["source"] == p.Dir {
			_ = os.RemoveAll(p.Dir)
		}
		return nil, nil, err
	}
	d.owned = config["source"] == p.Dir
	return d, config, nil
}

// Name implements Driver.
func (d *Dir) Name() string { return "dir" }

// Usage implements Driver.
func (d *Dir) Usage() (Usage, error) { return statUsage(d.root) }

// Update implements Driver: a dir pool has no key that can change.
func (d *Dir) Update(ctx context.Context, config map[string]string) error { return nil }

// Delete implements Driver.
func (d *Dir) Delete(ctx context.Context) error {
	if d.owned {
		return removeVolume(d.root)
	}
	for _, sub := range []string{"images", "containers", "snapshots", "custom", "custom-snapshots"} {
		if err := removeVolume(filepath.Join(d.root, sub)); err != nil {
			return err
		}
	}
	return nil
}

// InstancePath implements Driver.
func (d *Dir) InstancePath(name string) string { return filepath.Join(d.root, "containers", name) }

func (d *Dir) imagePath(fp string) string { return filepath.Join(d.root, "images", fp) }

// tmpPath is where a volume is built before it is renamed into place; the
// leading dot keeps it out of Instances.
func tmpPath(final string) string {
	return filepath.Join(filepath.Dir(final), ".tmp-"+filepath.Base(final))
}

// HasImage implements Driver.
func (d *Dir) HasImage(fp string) bool {
	_, err := os.Stat(d.imagePath(fp))
	return err == nil
}

// CreateImage implements Driver.
func (d *Dir) CreateImage(ctx context.Context, fp string, fill func(dir string) error) error {
	return buildAtomically(d.imagePath(fp), func(tmp string) error {
		if err := os.Mkdir(tmp, 0o700); err != nil {
			return err
		}
		return fill(tmp)
	})
}

// buildAtomically builds a volume in a temporary dir and renames it into
// place, so that a failure (or a crash) never leaves a half-made volume
// under its real name.
func buildAtomically(final string, build func(tmp string) error) error {
	tmp := tmpPath(final)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := build(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, volumeMode); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("set volume mode: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("move volume into place: %w", err)
	}
	return nil
}

// DeleteImage implements Driver.
func (d *Dir) DeleteImage(ctx context.Context, fp string) error {
	return removeVolume(d.imagePath(fp))
}

// CreateInstanceFromImage implements Driver: a full copy that keeps
// owners, modes, hard links and extended attributes.
func (d *Dir) CreateInstanceFromImage(ctx context.Context, name, fp string) error {
	src := d.imagePath(fp)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("image volume %s: %w", fp, err)
	}
	return buildAtomically(d.InstancePath(name), func(tmp string) error {
		return copyTree(ctx, src, tmp)
	})
}

// copyTree copies a directory tree exactly. cp(1) handles every corner
// (hard links, sparse files, xattrs, device nodes) and reflinks when the
// filesystem can.
func copyTree(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", src, dst)
	// cp dies with the daemon: one that outlived a crash would go on
	// writing into the temporary volume while the restarted daemon removes
	// it, or while a new creation of the same name fills it again.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s: %s: %w", src, strings.TrimSpace(string(out)), err)
	}
	return nil
}

// syncTree makes dst (absent) an exact copy of src, hard-linking from base
// (an older copy of src, left untouched) the files src has unchanged and
// copying the rest. It runs as root so that ownership is kept (numerically:
// the ids belong to the container, not to the host's user database), with
// hard links, ACLs, xattrs, device nodes and holes in sparse files.
func syncTree(ctx context.Context, src, base, dst string) error {
	absBase, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("sync %s: %w", src, err)
	}
	// Trailing slashes: the contents of src go into dst, not src itself.
	cmd := exec.CommandContext(ctx, "rsync", "-aHAXS", "--numeric-ids",
		"--link-dest="+absBase, strings.TrimSuffix(src, "/")+"/", strings.TrimSuffix(dst, "/")+"/")
	// As for copyTree: rsync must not outlive the daemon.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("sync %s: %s: %w", src, strings.TrimSpace(string(out)), err)
	}
	return nil
}

// CreateInstanceEmpty implements Driver.
func (d *Dir) CreateInstanceEmpty(ctx context.Context, name string) error {
	return buildAtomically(d.InstancePath(name), func(tmp string) error {
		if err := os.Mkdir(tmp, 0o700); err != nil {
			return err
		}
		return os.Mkdir(filepath.Join(tmp, "rootfs"), 0o755)
	})
}

// DeleteInstance implements Driver: the volume, then its snapshots.
func (d *Dir) DeleteInstance(ctx context.Context, name string) error {
	if err := removeVolume(d.InstancePath(name)); err != nil {
		return err
	}
	return removeVolume(d.snapshotsDir(name))
}

func (d *Dir) snapshotsDir(instance string) string {
	return filepath.Join(d.root, "snapshots", instance)
}

// SnapshotPath implements Driver.
func (d *Dir) SnapshotPath(instance, snap string) string {
	return filepath.Join(d.snapshotsDir(instance), snap)
}

// CreateSnapshot implements Driver: a full copy (reflinked where the
// filesystem can), built under a temporary name.
func (d *Dir) CreateSnapshot(ctx context.Context, instance, snap string) error {
	src := d.InstancePath(instance)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("instance volume %s: %w", instance, err)
	}
	if err := os.MkdirAll(d.snapshotsDir(instance), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	return buildAtomically(d.SnapshotPath(instance, snap), func(tmp string) error {
		return copyTree(ctx, src, tmp)
	})
}

// DeleteSnapshot implements Driver.
func (d *Dir) DeleteSnapshot(ctx context.Context, instance, snap string) error {
	return removeVolume(d.SnapshotPath(instance, snap))
}

// RenameSnapshot implements Driver.
func (d *Dir) RenameSnapshot(ctx context.Context, instance, oldName, newName string) error {
	if err := os.Rename(d.SnapshotPath(instance, oldName), d.SnapshotPath(instance, newName)); err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	return nil
}

// RestoreSnapshot implements Driver: a copy of the snapshot is built next
// to the volume, swapped with it in one step, and the old content removed.
func (d *Dir) RestoreSnapshot(ctx context.Context, instance, snap string) error {
	src := d.SnapshotPath(instance, snap)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("snapshot %s/%s: %w", instance, snap, err)
	}
	vol := d.InstancePath(instance)
	tmp := restorePath(vol)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := copyTree(ctx, src, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := exchange(tmp, vol); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	// tmp now holds the old content; a crash here leaves it to the next
	// opening of the pool.
	if err := os.RemoveAll(tmp); err != nil {
		slog.Warn("remove replaced volume", "path", tmp, "err", err)
	}
	return nil
}

// restorePath is where a volume's restored content is built; the .tmp-
// prefix makes opening the pool remove it after a crash.
func restorePath(vol string) string {
	return filepath.Join(filepath.Dir(vol), ".tmp-restore-"+filepath.Base(vol))
}

// removeVolume renames the volume out of the way first, so that a crash
// during a long removal leaves a temporary dir, never a half-deleted volume
// under its real name.
func removeVolume(path string) error {
	tmp := tmpPath(path)
	if err := os.Rename(path, tmp); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove volume: %w", err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove volume: %w", err)
	}
	return nil
}

// RenameInstance implements Driver: its snapshots move first, so that a
// rename finished after a crash (the volume still under the old name)
// finds them moved or still to move.
func (d *Dir) RenameInstance(ctx context.Context, oldName, newName string) error {
	if err := renameSnapshotsDir(d.snapshotsDir(oldName), d.snapshotsDir(newName)); err != nil {
		return err
	}
	if err := os.Rename(d.InstancePath(oldName), d.InstancePath(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	return nil
}

// Instances implements Driver.
func (d *Dir) Instances() ([]string, error) {
	return listVolumes(filepath.Join(d.root, "containers"))
}

// listVolumes lists the volumes in dir, leaving out those being built or
// removed (opening the pool removed those of a crash).
func listVolumes(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// renameSnapshotsDir moves an instance's snapshots dir; none is fine.
func renameSnapshotsDir(oldDir, newDir string) error {
	if err := os.Rename(oldDir, newDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rename snapshots: %w", err)
	}
	return nil
}

// CopyInstance implements Driver: a full copy (reflinked where the
// filesystem can), built under a temporary name.
func (d *Dir) CopyInstance(ctx context.Context, src, dst string) error {
	return d.copyVolume(ctx, d.InstancePath(src), d.InstancePath(dst))
}

// CopySnapshotToInstance implements Driver.
func (d *Dir) CopySnapshotToInstance(ctx context.Context, inst, snap, dst string) error {
	return d.copyVolume(ctx, d.SnapshotPath(inst, snap), d.InstancePath(dst))
}

// CopySnapshot implements Driver.
func (d *Dir) CopySnapshot(ctx context.Context, srcInst, snap, dstInst string) error {
	if err := os.MkdirAll(d.snapshotsDir(dstInst), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	return d.copyVolume(ctx, d.SnapshotPath(srcInst, snap), d.SnapshotPath(dstInst, snap))
}

func (d *Dir) copyVolume(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("source volume: %w", err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fmt.Errorf("volume %s already exists", dst)
	}
	return buildAtomically(dst, func(tmp string) error {
		return copyTree(ctx, src, tmp)
	})
}

// RefreshInstance implements Driver, incrementally: rsync builds the new
// content of dst next to it, hard-linking from dst every file that src has
// unchanged (same size, mtime, mode, owner, xattrs and ACLs) and copying
// only the others from src; the result is swapped with dst in one step and
// the old content removed (as a restore). Only changed files are
// transferred, yet dst itself is never written: a failure or a crash leaves
// it with its old content (the .tmp- leftover is removed when the pool
// opens), never a mix of old and new files. A file unchanged on src keeps
// its inode in dst.
func (d *Dir) RefreshInstance(ctx context.Context, src, dst string) error {
	from := d.InstancePath(src)
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("instance volume %s: %w", src, err)
	}
	vol := d.InstancePath(dst)
	tmp := restorePath(vol)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := syncTree(ctx, from, vol, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, volumeMode); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("set volume mode: %w", err)
	}
	if err := exchange(tmp, vol); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.RemoveAll(tmp); err != nil {
		slog.Warn("remove replaced volume", "path", tmp, "err", err)
	}
	return nil
}

// SetQuota implements Driver: a dir pool has no way to limit a volume.
func (d *Dir) SetQuota(_ context.Context, instance string, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	return fmt.Errorf("%w: dir pools cannot limit disk size (instance %s); use btrfs or zfs", ErrQuotaUnsupported, instance)
}
