package daemon

import (
	"context"
	"errors"
	"fmt"

	"cell/daemon/db"
	"cell/storage"
)

// rootSize parses the size of an instance's expanded root disk device
// (0: no limit), refusing a size the pool's driver cannot apply.
func rootSize(root map[string]string, driver string) (int64, error) {
	v := root["size"]
	if v == "" {
		return 0, nil
	}
	n, err := storage.ParseSize(v)
	if err != nil {
		return 0, badRequest("root disk size: %v", err)
	}
	if !storage.QuotaSupported(driver) {
		return 0, badRequest("root disk size=%s: %s pools cannot limit disk size; use btrfs or zfs", v, driver)
	}
	return n, nil
}

// quotaError answers a driver's refusal of a quota as a user error.
func quotaError(err error) error {
	if errors.Is(err, storage.ErrQuotaBelowUsed) || errors.Is(err, storage.ErrQuotaUnsupported) {
		return badRequest("root disk size: %v", err)
	}
	return fmt.Errorf("root disk size: %w", err)
}

// applyRootSize sets the quota of a new instance's volume from its
// expanded root disk device (at create and copy, before it is shown), or
// of a volume a restore or refresh replaced (replaced: a volume made anew
// has lost its limit, one rolled back may keep a limit now unset).
func (d *Daemon) applyRootSize(ctx context.Context, row db.Instance, pool storage.Driver, replaced bool) error {
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	size, err := rootSize(expand(row, profiles).expandedDevices["root"], pool.Name())
	if err != nil || (size == 0 && !replaced) || !storage.QuotaSupported(pool.Name()) {
		return err
	}
	if err := pool.SetQuota(ctx, row.Name, size); err != nil {
		return quotaError(err)
	}
	return nil
}
