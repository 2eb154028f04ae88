package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

var (
	_ VolumeDriver = (*Dir)(nil)
	_ VolumeDriver = (*Btrfs)(nil)
)
