package zfs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"cell/storage"
)

// customMode is a custom volume's top directory's mode (as storage's).
const customMode = 0o711

func (z *ZFS) customDS(name string) string { return z.root + "/custom/" + name }

// ensureCustom makes the parent dataset of custom volumes (pools made
// before custom volumes have none).
func (z *ZFS) ensureCustom(ctx context.Context) error {
	ds := z.root + "/custom"
	if exists(ctx, ds) {
		return nil
	}
	if err := run(ctx, "zfs", "create", "-o", "canmount=off", "-o", "mountpoint="+filepath.Join(z.dir, "custom"), ds); err != nil {
		return fmt.Errorf("create custom volumes dataset: %w", err)
	}
	return nil
}

// VolumePath implements storage.VolumeDriver.
func (z *ZFS) VolumePath(name string) string { return filepath.Join(z.dir, "custom", name) }

// CreateVolume implements storage.VolumeDriver: a dataset of its own.
func (z *ZFS) CreateVolume(ctx context.Context, name string) error {
	if err := z.ensureCustom(ctx); err != nil {
		return err
	}
	ds := z.customDS(name)
	if exists(ctx, ds) {
		return fmt.Errorf("volume %s already exists", ds)
	}
	if err := run(ctx, "zfs", "create", ds); err != nil {
		return fmt.Errorf("create volume dataset: %w", err)
	}
	if err := os.Chmod(z.VolumePath(name), customMode); err != nil {
		_ = destroy(context.WithoutCancel(ctx), ds)
		return fmt.Errorf("set volume mode: %w", err)
	}
	return nil
}

// DeleteVolume implements storage.VolumeDriver.
func (z *ZFS) DeleteVolume(ctx context.Context, name string) error {
	if err := destroy(ctx, z.customDS(name)); err != nil {
		return err
	}
	_ = os.Remove(z.VolumePath(name))
	return nil
}

// RenameVolume implements storage.VolumeDriver.
func (z *ZFS) RenameVolume(ctx context.Context, oldName, newName string) error {
	if exists(ctx, z.customDS(newName)) {
		return fmt.Errorf("volume %s already exists", newName)
	}
	if err := run(ctx, "zfs", "rename", z.customDS(oldName), z.customDS(newName)); err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	_ = os.Remove(z.VolumePath(oldName))
	return nil
}

// CopyVolume implements storage.VolumeDriver: a temporary snapshot of src
// sent to a temporary dataset, which is renamed into place (an
// independent copy: no clone ties dst to src).
func (z *ZFS) CopyVolume(ctx context.Context, src, dst string) error {
	final := z.customDS(dst)
	if exists(ctx, final) {
		return fmt.Errorf("volume %s already exists", final)
	}
	if !exists(ctx, z.customDS(src)) {
		return fmt.Errorf("source volume %s does not exist", src)
	}
	name := fmt.Sprintf("copy-%d", time.Now().UnixNano())
	snap := z.customDS(src) + "@" + name
	if err := run(ctx, "zfs", "snapshot", snap); err != nil {
		return fmt.Errorf("snapshot source volume: %w", err)
	}
	defer func() { _ = run(context.WithoutCancel(ctx), "zfs", "destroy", snap) }()
	tmp := final + ".tmp"
	if err := destroy(ctx, tmp); err != nil {
		return err
	}
	err := sendRecv(ctx, snap, tmp)
	if err == nil {
		err = run(ctx, "zfs", "destroy", tmp+"@"+name)
	}
	if err == nil {
		err = run(ctx, "zfs", "rename", tmp, final)
	}
	if err != nil {
		_ = destroy(context.WithoutCancel(ctx), tmp)
		_ = os.Remove(filepath.Join(z.dir, "custom", dst+".tmp"))
		return fmt.Errorf("copy volume: %w", err)
	}
	return nil
}

// CreateVolumeSnapshot implements storage.VolumeDriver: a zfs snapshot of
// the volume's dataset (destroyed and renamed with it).
func (z *ZFS) CreateVolumeSnapshot(ctx context.Context, volume, snap string) error {
	if err := run(ctx, "zfs", "snapshot", z.customDS(volume)+"@snapshot-"+snap); err != nil {
		return fmt.Errorf("snapshot volume: %w", err)
	}
	return nil
}

// DeleteVolumeSnapshot implements storage.VolumeDriver.
func (z *ZFS) DeleteVolumeSnapshot(ctx context.Context, volume, snap string) error {
	ds := z.customDS(volume) + "@snapshot-" + snap
	if !exists(ctx, ds) {
		return nil
	}
	if err := run(ctx, "zfs", "destroy", ds); err != nil {
		return fmt.Errorf("destroy volume snapshot: %w", err)
	}
	return nil
}

// RestoreVolumeSnapshot implements storage.VolumeDriver: `zfs rollback`,
// atomic, to the volume's latest snapshot only (an older one would need
// the newer ones destroyed: refused, the user deletes them first).
func (z *ZFS) RestoreVolumeSnapshot(ctx context.Context, volume, snap string) error {
	ds := z.customDS(volume)
	snaps, err := snapshotInfos(ctx, ds)
	if err != nil {
		return err
	}
	target := "snapshot-" + snap
	i := slices.IndexFunc(snaps, func(s snapInfo) bool { return s.name == target })
	if i < 0 {
		return fmt.Errorf("snapshot %s/%s not found on pool %s", volume, snap, z.name)
	}
	var newer []string
	for _, s := range snaps[i+1:] {
		if name, ok := strings.CutPrefix(s.name, "snapshot-"); ok {
			newer = append(newer, name)
		} else if err := run(ctx, "zfs", "destroy", s.full); err != nil {
			// A leftover temporary snapshot of a copy.
			return fmt.Errorf("destroy snapshot: %w", err)
		}
	}
	if len(newer) > 0 {
		return fmt.Errorf("%w: snapshot %q is not the latest snapshot of volume %q (newer: %s); ZFS can only restore the latest: delete the newer snapshots first",
			storage.ErrInvalidConfig, snap, volume, strings.Join(newer, ", "))
	}
	if err := run(ctx, "zfs", "rollback", ds+"@"+target); err != nil {
		return fmt.Errorf("roll back volume: %w", err)
	}
	return nil
}

// OpenVolumeSnapshot implements storage.VolumeDriver: zfs-fuse has no
// .zfs/snapshot directory, so the snapshot is cloned read-only for the
// time it is read (a .tmp dataset, which opening the pool removes after a
// crash).
func (z *ZFS) OpenVolumeSnapshot(ctx context.Context, volume, snap string) (string, func(), error) {
	name := fmt.Sprintf("read-%d.tmp", time.Now().UnixNano())
	clone := z.customDS(name)
	if err := run(ctx, "zfs", "clone", "-o", "readonly=on", z.customDS(volume)+"@snapshot-"+snap, clone); err != nil {
		return "", nil, fmt.Errorf("expose snapshot %s/%s: %w", volume, snap, err)
	}
	release := func() {
		if err := destroy(context.WithoutCancel(ctx), clone); err != nil {
			slog.Warn("remove a snapshot's temporary clone", "dataset", clone, "err", err)
		}
		_ = os.Remove(z.VolumePath(name))
	}
	return z.VolumePath(name), release, nil
}

var _ storage.VolumeDriver = (*ZFS)(nil)
