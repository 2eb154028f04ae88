package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Snapshot is an instance snapshot's row: the instance's config, devices
// and profiles as they were when it was taken.
type Snapshot struct {
	ID           int64
	InstanceID   int64
	Instance     string // the instance's name
	Pool         string // the instance's pool
	Name         string
	Description  string
	Architecture string
	Ephemeral    bool
	Stateful     bool
	Config       map[string]string
	Devices      map[string]map[string]string
	Profiles     []string
	CreatedAt    time.Time
	ExpiresAt    time.Time // zero: never
	Ready        bool
}

const snapshotColumns = `s.id, s.instance_id, i.name, i.pool, s.name, s.description, s.architecture, s.ephemeral, s.stateful,
	s.config, s.devices, s.profiles, s.created_at, s.expires_at, s.ready`

func (d *DB) querySnapshots(ctx context.Context, where string, args ...any) ([]Snapshot, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+snapshotColumns+
		" FROM instances_snapshots s JOIN instances i ON i.id = s.instance_id "+where+" ORDER BY s.created_at, s.id", args...)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	defer rows.Close()
	var out []Snapshot
	for rows.Next() {
		var s Snapshot
		var config, devices, profiles string
		var created, expires int64
		if err := rows.Scan(&s.ID, &s.InstanceID, &s.Instance, &s.Pool, &s.Name, &s.Description, &s.Architecture,
			&s.Ephemeral, &s.Stateful, &config, &devices, &profiles, &created, &expires, &s.Ready); err != nil {
			return nil, err
		}
		s.CreatedAt = time.Unix(0, created).UTC()
		if expires > 0 {
			s.ExpiresAt = time.Unix(0, expires).UTC()
		}
		if err := json.Unmarshal([]byte(config), &s.Config); err != nil {
			return nil, fmt.Errorf("snapshot %s: decode config: %w", s.Name, err)
		}
		if err := json.Unmarshal([]byte(devices), &s.Devices); err != nil {
			return nil, fmt.Errorf("snapshot %s: decode devices: %w", s.Name, err)
		}
		if err := json.Unmarshal([]byte(profiles), &s.Profiles); err != nil {
			return nil, fmt.Errorf("snapshot %s: decode profiles: %w", s.Name, err)
		}
		if s.Config == nil {
			s.Config = map[string]string{}
		}
		if s.Devices == nil {
			s.Devices = map[string]map[string]string{}
		}
		if s.Profiles == nil {
			s.Profiles = []string{}
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Snapshots returns the ready snapshots of an instance, oldest first.
func (d *DB) Snapshots(ctx context.Context, instanceID int64) ([]Snapshot, error) {
	return d.querySnapshots(ctx, "WHERE s.instance_id = ? AND s.ready = 1", instanceID)
}

// AllSnapshots returns every ready snapshot by instance id.
func (d *DB) AllSnapshots(ctx context.Context) (map[int64][]Snapshot, error) {
	list, err := d.querySnapshots(ctx, "WHERE s.ready = 1")
	if err != nil {
		return nil, err
	}
	out := map[int64][]Snapshot{}
	for _, s := range list {
		out[s.InstanceID] = append(out[s.InstanceID], s)
	}
	return out, nil
}

// Snapshot returns one ready snapshot of an instance.
func (d *DB) Snapshot(ctx context.Context, instanceID int64, name string) (Snapshot, error) {
	list, err := d.querySnapshots(ctx, "WHERE s.instance_id = ? AND s.name = ? AND s.ready = 1", instanceID, name)
	if err != nil {
		return Snapshot{}, err
	}
	if len(list) == 0 {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", name, ErrNotFound)
	}
	return list[0], nil
}

// SnapshotNames returns the names of every snapshot row of an instance,
// ready or not (a name is taken as soon as its row exists).
func (d *DB) SnapshotNames(ctx context.Context, instanceID int64) ([]string, error) {
	return d.names(ctx, "SELECT name FROM instances_snapshots WHERE instance_id = ? ORDER BY name", instanceID)
}

// UnfinishedSnapshots returns the rows of snapshots whose creation or
// deletion never completed.
func (d *DB) UnfinishedSnapshots(ctx context.Context) ([]Snapshot, error) {
	return d.querySnapshots(ctx, "WHERE s.ready = 0")
}

// CreateSnapshot inserts a snapshot row that is not ready yet.
func (d *DB) CreateSnapshot(ctx context.Context, s Snapshot) (int64, error) {
	var expires int64
	if !s.ExpiresAt.IsZero() {
		expires = s.ExpiresAt.UnixNano()
	}
	if s.Profiles == nil {
		s.Profiles = []string{}
	}
	res, err := d.sql.ExecContext(ctx, `INSERT INTO instances_snapshots (instance_id, name, description, architecture,
		ephemeral, stateful, config, devices, profiles, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.InstanceID, s.Name, s.Description, s.Architecture, s.Ephemeral, s.Stateful,
		mustJSON(s.Config), mustJSON(s.Devices), mustJSON(s.Profiles), s.CreatedAt.UnixNano(), expires)
	if isUniqueViolation(err) {
		return 0, fmt.Errorf("snapshot %q: %w", s.Name, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("insert snapshot %s: %w", s.Name, err)
	}
	return res.LastInsertId()
}

// SetSnapshotReady shows a made snapshot, or hides one being deleted.
func (d *DB) SetSnapshotReady(ctx context.Context, id int64, ready bool) error {
	if _, err := d.sql.ExecContext(ctx, "UPDATE instances_snapshots SET ready = ? WHERE id = ?", ready, id); err != nil {
		return fmt.Errorf("mark snapshot ready: %w", err)
	}
	return nil
}

// RenameSnapshot renames a snapshot.
func (d *DB) RenameSnapshot(ctx context.Context, id int64, newName string) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE instances_snapshots SET name = ? WHERE id = ?", newName, id)
	if isUniqueViolation(err) {
		return fmt.Errorf("snapshot %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename snapshot: %w", err)
	}
	return nil
}

// SetSnapshotExpiry changes when a snapshot expires (zero: never).
func (d *DB) SetSnapshotExpiry(ctx context.Context, id int64, at time.Time) error {
	var expires int64
	if !at.IsZero() {
		expires = at.UnixNano()
	}
	if _, err := d.sql.ExecContext(ctx, "UPDATE instances_snapshots SET expires_at = ? WHERE id = ?", expires, id); err != nil {
		return fmt.Errorf("set snapshot expiry: %w", err)
	}
	return nil
}

// DeleteSnapshot removes a snapshot's row.
func (d *DB) DeleteSnapshot(ctx context.Context, id int64) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM instances_snapshots WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete snapshot: %w", err)
	}
	return nil
}
