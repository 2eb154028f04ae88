package storage

import (
	"context"
	"fmt"
	"log/slog"
)

// Across copies instance volumes from pool src to pool dst, which may use
// another driver: nothing is shared between two pools, so the files are
// copied (by rsync, keeping ownership, hard links, ACLs and xattrs), and
// each snapshot is rebuilt on dst as a snapshot of dst's volume, so that
// on btrfs and zfs the copy's snapshots share their common blocks as the
// source's do.
func Across(src, dst Driver) SnapshotsCopier { return across{src, dst} }

type across struct{ src, dst Driver }

// CopyInstanceWithSnapshots implements SnapshotsCopier: the snapshots,
// oldest first, each copied into the new volume and snapshotted there,
// then the volume's current content. All or nothing.
func (a across) CopyInstanceWithSnapshots(ctx context.Context, src, dst string, snaps []string) (err error) {
	if err := a.dst.CreateInstanceEmpty(ctx, dst); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if derr := a.dst.DeleteInstance(context.WithoutCancel(ctx), dst); derr != nil {
				slog.Error("remove a volume after a failed copy", "instance", dst, "err", derr)
			}
		}
	}()
	target := a.dst.InstancePath(dst)
	for _, snap := range snaps {
		if err := mirror(ctx, a.src.SnapshotPath(src, snap), target); err != nil {
			return err
		}
		if err := a.dst.CreateSnapshot(ctx, dst, snap); err != nil {
			return fmt.Errorf("snapshot %s/%s: %w", dst, snap, err)
		}
	}
	return mirror(ctx, a.src.InstancePath(src), target)
}

// CopySnapshotAcross makes instance volume dst on pool to as a copy of
// snapshot snap of instance inst on pool from. All or nothing.
func CopySnapshotAcross(ctx context.Context, from Driver, inst, snap string, to Driver, dst string) error {
	if err := to.CreateInstanceEmpty(ctx, dst); err != nil {
		return err
	}
	if err := mirror(ctx, from.SnapshotPath(inst, snap), to.InstancePath(dst)); err != nil {
		if derr := to.DeleteInstance(context.WithoutCancel(ctx), dst); derr != nil {
			slog.Error("remove a volume after a failed copy", "instance", dst, "err", derr)
		}
		return err
	}
	return nil
}
