package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Volume is a custom storage volume's row.
type Volume struct {
	ID          int64
	Pool        string
	Name        string
	Description string
	Config      map[string]string
	CreatedAt   time.Time
	Ready       bool
}

const volumeQuery = `SELECT v.id, p.name, v.name, v.description, v.config, v.created_at, v.ready
FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id`

func scanVolume(row interface{ Scan(...any) error }) (Volume, error) {
	var v Volume
	var config string
	var created int64
	if err := row.Scan(&v.ID, &v.Pool, &v.Name, &v.Description, &config, &created, &v.Ready); err != nil {
		return v, err
	}
	v.CreatedAt = time.Unix(0, created).UTC()
	if err := json.Unmarshal([]byte(config), &v.Config); err != nil {
		return v, fmt.Errorf("volume %s: decode config: %w", v.Name, err)
	}
	if v.Config == nil {
		v.Config = map[string]string{}
	}
	return v, nil
}

func (d *DB) queryVolumes(ctx context.Context, where string, args ...any) ([]Volume, error) {
	rows, err := d.sql.QueryContext(ctx, volumeQuery+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	defer rows.Close()
	out := []Volume{}
	for rows.Next() {
		v, err := scanVolume(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Volumes returns a pool's ready custom volumes, sorted by name.
func (d *DB) Volumes(ctx context.Context, pool string) ([]Volume, error) {
	return d.queryVolumes(ctx, "WHERE p.name = ? AND v.ready = 1 ORDER BY v.name", pool)
}

// PoolVolumeNames returns the names of every custom volume on a pool,
// including those being made or deleted.
func (d *DB) PoolVolumeNames(ctx context.Context, pool string) ([]string, error) {
	return d.names(ctx, `SELECT v.name FROM storage_volumes v JOIN storage_pools p ON p.id = v.pool_id
		WHERE p.name = ? ORDER BY v.name`, pool)
}

// UnfinishedVolumes returns the rows of volumes whose creation or deletion
// never completed.
func (d *DB) UnfinishedVolumes(ctx context.Context) ([]Volume, error) {
	return d.queryVolumes(ctx, "WHERE v.ready = 0")
}

// Volume returns one ready custom volume.
func (d *DB) Volume(ctx context.Context, pool, name string) (Volume, error) {
	v, err := scanVolume(d.sql.QueryRowContext(ctx, volumeQuery+" WHERE p.name = ? AND v.name = ? AND v.ready = 1", pool, name))
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("storage volume %q on pool %q: %w", name, pool, ErrNotFound)
	}
	return v, err
}

// CreateVolume inserts a volume's row, not ready: hidden until
// SetVolumeReady.
func (d *DB) CreateVolume(ctx context.Context, v Volume) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO storage_volumes (pool_id, name, description, config, created_at)
		SELECT id, ?, ?, ?, ? FROM storage_pools WHERE name = ?`,
		v.Name, v.Description, mustJSON(v.Config), v.CreatedAt.UnixNano(), v.Pool)
	if isUniqueViolation(err) {
		return 0, fmt.Errorf("storage volume %q: %w", v.Name, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("insert volume %s: %w", v.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, fmt.Errorf("storage pool %q: %w", v.Pool, ErrNotFound)
	}
	return res.LastInsertId()
}

// SetVolumeReady shows (or, during a deletion, hides) a volume.
func (d *DB) SetVolumeReady(ctx context.Context, id int64, ready bool) error {
	if _, err := d.sql.ExecContext(ctx, "UPDATE storage_volumes SET ready = ? WHERE id = ?", ready, id); err != nil {
		return fmt.Errorf("mark volume ready: %w", err)
	}
	return nil
}

// UpdateVolume replaces a volume's description and config.
func (d *DB) UpdateVolume(ctx context.Context, id int64, description string, config map[string]string) error {
	if _, err := d.sql.ExecContext(ctx, "UPDATE storage_volumes SET description = ?, config = ? WHERE id = ?",
		description, mustJSON(config), id); err != nil {
		return fmt.Errorf("update volume: %w", err)
	}
	return nil
}

// RenameVolume renames a volume.
func (d *DB) RenameVolume(ctx context.Context, id int64, newName string) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE storage_volumes SET name = ? WHERE id = ?", newName, id)
	if isUniqueViolation(err) {
		return fmt.Errorf("storage volume %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename volume: %w", err)
	}
	return nil
}

// DeleteVolume removes a volume's row.
func (d *DB) DeleteVolume(ctx context.Context, id int64) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM storage_volumes WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete volume: %w", err)
	}
	return nil
}

const diskUses = `SELECT 1 FROM json_each(%s) WHERE json_extract(value, '$.type') = 'disk'
	AND json_extract(value, '$.pool') = ? AND json_extract(value, '$.source') = ?`

// VolumeUsers returns the instances whose disk devices use a custom
// volume, directly or through a profile, and the profiles that do.
func (d *DB) VolumeUsers(ctx context.Context, pool, name string) (instances, profiles []string, err error) {
	instances, err = d.names(ctx, `SELECT i.name FROM instances i WHERE EXISTS (`+fmt.Sprintf(diskUses, "i.devices")+`)
		OR EXISTS (SELECT 1 FROM instances_profiles ip JOIN profiles p ON p.id = ip.profile_id
			WHERE ip.instance_id = i.id AND EXISTS (`+fmt.Sprintf(diskUses, "p.devices")+`))
		ORDER BY i.name`, pool, name, pool, name)
	if err != nil {
		return nil, nil, err
	}
	profiles, err = d.names(ctx, `SELECT p.name FROM profiles p WHERE EXISTS (`+fmt.Sprintf(diskUses, "p.devices")+`) ORDER BY p.name`, pool, name)
	if err != nil {
		return nil, nil, err
	}
	return instances, profiles, nil
}

// VolumeSnapshot is a custom volume snapshot's row.
type VolumeSnapshot struct {
	ID          int64
	VolumeID    int64
	Pool        string
	Volume      string
	Name        string
	Description string
	CreatedAt   time.Time
}

const volumeSnapshotQuery = `SELECT s.id, s.volume_id, p.name, v.name, s.name, s.description, s.created_at
FROM storage_volumes_snapshots s JOIN storage_volumes v ON v.id = s.volume_id JOIN storage_pools p ON p.id = v.pool_id`

func (d *DB) queryVolumeSnapshots(ctx context.Context, where string, args ...any) ([]VolumeSnapshot, error) {
	rows, err := d.sql.QueryContext(ctx, volumeSnapshotQuery+" "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list volume snapshots: %w", err)
	}
	defer rows.Close()
	out := []VolumeSnapshot{}
	for rows.Next() {
		var s VolumeSnapshot
		var created int64
		if err := rows.Scan(&s.ID, &s.VolumeID, &s.Pool, &s.Volume, &s.Name, &s.Description, &created); err != nil {
			return nil, err
		}
		s.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, s)
	}
	return out, rows.Err()
}

// VolumeSnapshots returns a volume's ready snapshots, oldest first.
func (d *DB) VolumeSnapshots(ctx context.Context, volumeID int64) ([]VolumeSnapshot, error) {
	return d.queryVolumeSnapshots(ctx, "WHERE s.volume_id = ? AND s.ready = 1 ORDER BY s.created_at, s.id", volumeID)
}

// VolumeSnapshotNames returns the names of all of a volume's snapshots,
// including those being made or deleted.
func (d *DB) VolumeSnapshotNames(ctx context.Context, volumeID int64) ([]string, error) {
	return d.names(ctx, "SELECT name FROM storage_volumes_snapshots WHERE volume_id = ? ORDER BY name", volumeID)
}

// UnfinishedVolumeSnapshots returns the rows of volume snapshots whose
// creation or deletion never completed.
func (d *DB) UnfinishedVolumeSnapshots(ctx context.Context) ([]VolumeSnapshot, error) {
	return d.queryVolumeSnapshots(ctx, "WHERE s.ready = 0")
}

// VolumeSnapshot returns one ready snapshot of a volume.
func (d *DB) VolumeSnapshot(ctx context.Context, volumeID int64, name string) (VolumeSnapshot, error) {
	list, err := d.queryVolumeSnapshots(ctx, "WHERE s.volume_id = ? AND s.name = ? AND s.ready = 1", volumeID, name)
	if err != nil {
		return VolumeSnapshot{}, err
	}
	if len(list) == 0 {
		return VolumeSnapshot{}, fmt.Errorf("volume snapshot %q: %w", name, ErrNotFound)
	}
	return list[0], nil
}

// CreateVolumeSnapshot inserts a snapshot's row, not ready.
func (d *DB) CreateVolumeSnapshot(ctx context.Context, s VolumeSnapshot) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO storage_volumes_snapshots (volume_id, name, description, created_at)
		VALUES (?, ?, ?, ?)`, s.VolumeID, s.Name, s.Description, s.CreatedAt.UnixNano())
	if isUniqueViolation(err) {
		return 0, fmt.Errorf("volume snapshot %q: %w", s.Name, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("insert volume snapshot %s: %w", s.Name, err)
	}
	return res.LastInsertId()
}

// SetVolumeSnapshotReady shows (or, during a deletion, hides) a snapshot.
func (d *DB) SetVolumeSnapshotReady(ctx context.Context, id int64, ready bool) error {
	if _, err := d.sql.ExecContext(ctx, "UPDATE storage_volumes_snapshots SET ready = ? WHERE id = ?", ready, id); err != nil {
		return fmt.Errorf("mark volume snapshot ready: %w", err)
	}
	return nil
}

// DeleteVolumeSnapshot removes a snapshot's row.
func (d *DB) DeleteVolumeSnapshot(ctx context.Context, id int64) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM storage_volumes_snapshots WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete volume snapshot: %w", err)
	}
	return nil
}
