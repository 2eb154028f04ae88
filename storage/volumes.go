package storage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// VolumeDriver is implemented by drivers that store custom volumes: plain
// filesystems a user creates on a pool and attaches to instances as disk
// devices. A custom volume's top directory is what the instance sees at
// the device's path. It is a separate interface from Driver so that a
// driver without custom volumes still is a Driver; the daemon refuses
// custom volumes on such a pool.
type VolumeDriver interface {
	// VolumePath is where custom volume name is on the host.
	VolumePath(name string) string
	// CreateVolume makes an empty custom volume (owned by root, mode
	// 0711). Either the whole volume exists afterwards or nothing does.
	CreateVolume(ctx context.Context, name string) error
	// DeleteVolume removes a custom volume; a missing one is not an error.
	DeleteVolume(ctx context.Context, name string) error
	// RenameVolume renames a custom volume.
	RenameVolume(ctx context.Context, oldName, newName string) error
	// CopyVolume makes custom volume dst as a copy of custom volume src
	// (not its snapshots), as cheaply as the driver can. All or nothing.
	CopyVolume(ctx context.Context, src, dst string) error
	// CreateVolumeSnapshot makes a read-only snapshot of a custom volume.
	// All or nothing.
	CreateVolumeSnapshot(ctx context.Context, volume, snap string) error
	// DeleteVolumeSnapshot removes a snapshot; a missing one is not an
	// error. DeleteVolume removes a volume's snapshots with it, and
	// RenameVolume moves them.
	DeleteVolumeSnapshot(ctx context.Context, volume, snap string) error
	// RestoreVolumeSnapshot replaces a custom volume's content by its
	// snapshot's, whole: a failure or a crash leaves the old content or
	// the snapshot's, never a mix. The snapshots stay (zfs, which can
	// only roll back to the latest, refuses an older one with an error
	// wrapping ErrInvalidConfig).
	RestoreVolumeSnapshot(ctx context.Context, volume, snap string) error
	// OpenVolumeSnapshot returns a directory holding a snapshot's files,
	// read-only, and the function that lets go of it (zfs makes a
	// temporary clone; dir and btrfs give the snapshot's own directory).
	OpenVolumeSnapshot(ctx context.Context, volume, snap string) (path string, release func(), err error)
}

// mirror makes directory dst's content exactly src's: files dst has that
// src lacks go, the rest is copied where its content differs (files the
// same stay, sharing their blocks with dst's snapshots). As root, so that
// ownership is kept (numerically: the ids belong to containers, not to
// the host's user database), with hard links, ACLs, xattrs, device nodes
// and holes in sparse files.
func mirror(ctx context.Context, src, dst string) error {
	// --checksum: a file rewritten within the same second with the same
	// size (a snapshot, then a change) escapes rsync's size and time check.
	cmd := exec.CommandContext(ctx, "rsync", "-aHAXS", "--checksum", "--numeric-ids", "--delete",
		strings.TrimSuffix(src, "/")+"/", strings.TrimSuffix(dst, "/")+"/")
	// rsync must not outlive the daemon (as copyTree).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s to %s: %s: %w", src, dst, strings.TrimSpace(string(out)), err)
	}
	return nil
}

// CopyVolumeBetween makes custom volume dstName on pool dst as a copy of
// custom volume srcName on pool src, which may be another pool and
// another driver: the named snapshots, oldest first, are each copied into
// the new volume by rsync and snapshotted there (so that on btrfs and zfs
// the copy's snapshots share the blocks they have in common, as the
// source's do), then the volume's current content. All or nothing: a
// failure removes the new volume with its snapshots.
func CopyVolumeBetween(ctx context.Context, src VolumeDriver, srcName string, dst VolumeDriver, dstName string, snaps []string) (err error) {
	if err := dst.CreateVolume(ctx, dstName); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if derr := dst.DeleteVolume(context.WithoutCancel(ctx), dstName); derr != nil {
				slog.Error("remove a volume after a failed copy", "volume", dstName, "err", derr)
			}
		}
	}()
	target := dst.VolumePath(dstName)
	for _, snap := range snaps {
		path, release, err := src.OpenVolumeSnapshot(ctx, srcName, snap)
		if err != nil {
			return fmt.Errorf("read snapshot %s/%s: %w", srcName, snap, err)
		}
		err = mirror(ctx, path, target)
		release()
		if err != nil {
			return err
		}
		if err := os.Chmod(target, customMode); err != nil {
			return fmt.Errorf("set volume mode: %w", err)
		}
		if err := dst.CreateVolumeSnapshot(ctx, dstName, snap); err != nil {
			return fmt.Errorf("snapshot %s/%s: %w", dstName, snap, err)
		}
	}
	if err := mirror(ctx, src.VolumePath(srcName), target); err != nil {
		return err
	}
	if err := os.Chmod(target, customMode); err != nil {
		return fmt.Errorf("set volume mode: %w", err)
	}
	return nil
}

// OpenVolumeSnapshot implements VolumeDriver.
func (d *Dir) OpenVolumeSnapshot(ctx context.Context, volume, snap string) (string, func(), error) {
	path := filepath.Join(d.volumeSnapshotsDir(volume), snap)
	if _, err := os.Stat(path); err != nil {
		return "", nil, fmt.Errorf("snapshot %s/%s: %w", volume, snap, err)
	}
	return path, func() {}, nil
}

// OpenVolumeSnapshot implements VolumeDriver.
func (b *Btrfs) OpenVolumeSnapshot(ctx context.Context, volume, snap string) (string, func(), error) {
	path := filepath.Join(b.volumeSnapshotsDir(volume), snap)
	if _, err := os.Stat(path); err != nil {
		return "", nil, fmt.Errorf("snapshot %s/%s: %w", volume, snap, err)
	}
	return path, func() {}, nil
}

// customMode is a custom volume's top directory's mode: the container's
// root, which owns it once attached, must reach it; other host users only
// traverse it.
const customMode = 0o711

func (d *Dir) customDir() string { return filepath.Join(d.root, "custom") }

// VolumePath implements VolumeDriver.
func (d *Dir) VolumePath(name string) string { return filepath.Join(d.customDir(), name) }

// CreateVolume implements VolumeDriver.
func (d *Dir) CreateVolume(ctx context.Context, name string) error {
	if err := os.MkdirAll(d.customDir(), 0o711); err != nil {
		return fmt.Errorf("create custom volumes dir: %w", err)
	}
	final := d.VolumePath(name)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("volume %s already exists", final)
	}
	if err := buildAtomically(final, func(tmp string) error { return os.Mkdir(tmp, 0o700) }); err != nil {
		return err
	}
	return os.Chmod(final, customMode)
}

// DeleteVolume implements VolumeDriver: the volume, then its snapshots.
func (d *Dir) DeleteVolume(ctx context.Context, name string) error {
	if err := removeVolume(d.VolumePath(name)); err != nil {
		return err
	}
	return removeVolume(d.volumeSnapshotsDir(name))
}

func (d *Dir) volumeSnapshotsDir(name string) string {
	return filepath.Join(d.root, "custom-snapshots", name)
}

// CreateVolumeSnapshot implements VolumeDriver: a full copy (reflinked
// where the filesystem can), built under a temporary name.
func (d *Dir) CreateVolumeSnapshot(ctx context.Context, volume, snap string) error {
	if err := os.MkdirAll(d.volumeSnapshotsDir(volume), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	return d.copyVolume(ctx, d.VolumePath(volume), filepath.Join(d.volumeSnapshotsDir(volume), snap))
}

// DeleteVolumeSnapshot implements VolumeDriver.
func (d *Dir) DeleteVolumeSnapshot(ctx context.Context, volume, snap string) error {
	return removeVolume(filepath.Join(d.volumeSnapshotsDir(volume), snap))
}

// RenameVolume implements VolumeDriver.
func (d *Dir) RenameVolume(ctx context.Context, oldName, newName string) error {
	if _, err := os.Lstat(d.VolumePath(newName)); err == nil {
		return fmt.Errorf("volume %s already exists", newName)
	}
	if err := renameSnapshotsDir(d.volumeSnapshotsDir(oldName), d.volumeSnapshotsDir(newName)); err != nil {
		return err
	}
	if err := os.Rename(d.VolumePath(oldName), d.VolumePath(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	return nil
}

// CopyVolume implements VolumeDriver: a full copy (reflinked where the
// filesystem can).
func (d *Dir) CopyVolume(ctx context.Context, src, dst string) error {
	if err := d.copyVolume(ctx, d.VolumePath(src), d.VolumePath(dst)); err != nil {
		return err
	}
	return os.Chmod(d.VolumePath(dst), customMode)
}

func (b *Btrfs) customDir() string { return filepath.Join(b.root, "custom") }

// VolumePath implements VolumeDriver.
func (b *Btrfs) VolumePath(name string) string { return filepath.Join(b.customDir(), name) }

// CreateVolume implements VolumeDriver: a subvolume of its own.
func (b *Btrfs) CreateVolume(ctx context.Context, name string) error {
	if err := os.MkdirAll(b.customDir(), 0o711); err != nil {
		return fmt.Errorf("create custom volumes dir: %w", err)
	}
	final := b.VolumePath(name)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("volume %s already exists", final)
	}
	return b.buildSubvolume(ctx, final, func(tmp string) error {
		return os.Chmod(tmp, customMode)
	})
}

// DeleteVolume implements VolumeDriver: the volume, then its snapshots.
func (b *Btrfs) DeleteVolume(ctx context.Context, name string) error {
	if err := b.removeSubvolume(ctx, b.VolumePath(name)); err != nil {
		return err
	}
	return b.removeSubvolume(ctx, b.volumeSnapshotsDir(name))
}

func (b *Btrfs) volumeSnapshotsDir(name string) string {
	return filepath.Join(b.root, "custom-snapshots", name)
}

// CreateVolumeSnapshot implements VolumeDriver: a read-only snapshot of
// the volume's subvolume, which appears whole or not at all.
func (b *Btrfs) CreateVolumeSnapshot(ctx context.Context, volume, snap string) error {
	if err := os.MkdirAll(b.volumeSnapshotsDir(volume), volumeMode); err != nil {
		return fmt.Errorf("create snapshots dir: %w", err)
	}
	return b.snapshotVolume(ctx, b.VolumePath(volume), filepath.Join(b.volumeSnapshotsDir(volume), snap), true)
}

// DeleteVolumeSnapshot implements VolumeDriver.
func (b *Btrfs) DeleteVolumeSnapshot(ctx context.Context, volume, snap string) error {
	return b.removeSubvolume(ctx, filepath.Join(b.volumeSnapshotsDir(volume), snap))
}

// RenameVolume implements VolumeDriver.
func (b *Btrfs) RenameVolume(ctx context.Context, oldName, newName string) error {
	if _, err := os.Lstat(b.VolumePath(newName)); err == nil {
		return fmt.Errorf("volume %s already exists", newName)
	}
	if err := renameSnapshotsDir(b.volumeSnapshotsDir(oldName), b.volumeSnapshotsDir(newName)); err != nil {
		return err
	}
	if err := os.Rename(b.VolumePath(oldName), b.VolumePath(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	return nil
}

// CopyVolume implements VolumeDriver: a writable snapshot, which shares
// every block with src.
func (b *Btrfs) CopyVolume(ctx context.Context, src, dst string) error {
	return b.snapshotVolume(ctx, b.VolumePath(src), b.VolumePath(dst), false)
}

// RestoreVolumeSnapshot implements VolumeDriver: a copy of the snapshot,
// built next to the volume and swapped in.
func (d *Dir) RestoreVolumeSnapshot(ctx context.Context, volume, snap string) error {
	src := filepath.Join(d.volumeSnapshotsDir(volume), snap)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("snapshot %s/%s: %w", volume, snap, err)
	}
	vol := d.VolumePath(volume)
	tmp := restorePath(vol)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := copyTree(ctx, src, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Chmod(tmp, customMode); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("set volume mode: %w", err)
	}
	if err := exchange(tmp, vol); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	// tmp holds the old content now (a crash leaves it to the next open).
	if err := os.RemoveAll(tmp); err != nil {
		slog.Warn("remove replaced volume", "path", tmp, "err", err)
	}
	return nil
}

// RestoreVolumeSnapshot implements VolumeDriver: a writable snapshot of
// the snapshot, swapped in; the old subvolume is deleted afterwards.
func (b *Btrfs) RestoreVolumeSnapshot(ctx context.Context, volume, snap string) error {
	src := filepath.Join(b.volumeSnapshotsDir(volume), snap)
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("snapshot %s/%s: %w", volume, snap, err)
	}
	vol := b.VolumePath(volume)
	tmp := restorePath(vol)
	if err := deleteSubvolumeTree(ctx, tmp); err != nil {
		return fmt.Errorf("clear leftover %s: %w", tmp, err)
	}
	if err := run(ctx, "btrfs", "subvolume", "snapshot", src, tmp); err != nil {
		return fmt.Errorf("snapshot the snapshot: %w", err)
	}
	if err := os.Chmod(tmp, customMode); err != nil {
		_ = deleteSubvolumeTree(context.WithoutCancel(ctx), tmp)
		return fmt.Errorf("set volume mode: %w", err)
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

var (
	_ VolumeDriver = (*Dir)(nil)
	_ VolumeDriver = (*Btrfs)(nil)
)
