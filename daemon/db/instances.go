package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"time"

	"github.com/mattn/go-sqlite3"
)

// Instance is an instance's row, with its profiles in apply order.
type Instance struct {
	ID           int64
	Name         string
	Type         string
	Architecture string
	Ephemeral    bool
	Stateful     bool
	Description  string
	Config       map[string]string
	Devices      map[string]map[string]string
	Profiles     []string
	Pool         string
	CreatedAt    time.Time
	LastUsedAt   time.Time
	Ready        bool
}

const instanceColumns = `id, name, type, architecture, ephemeral, stateful, description, config, devices, pool, created_at, last_used_at, ready`

func scanInstance(row interface{ Scan(...any) error }) (Instance, error) {
	var i Instance
	var config, devices string
	var created, used int64
	err := row.Scan(&i.ID, &i.Name, &i.Type, &i.Architecture, &i.Ephemeral, &i.Stateful, &i.Description,
		&config, &devices, &i.Pool, &created, &used, &i.Ready)
	if err != nil {
		return i, err
	}
	i.CreatedAt = time.Unix(0, created).UTC()
	if used > 0 {
		i.LastUsedAt = time.Unix(0, used).UTC()
	}
	if err := json.Unmarshal([]byte(config), &i.Config); err != nil {
		return i, fmt.Errorf("instance %s: decode config: %w", i.Name, err)
	}
	if err := json.Unmarshal([]byte(devices), &i.Devices); err != nil {
		return i, fmt.Errorf("instance %s: decode devices: %w", i.Name, err)
	}
	if i.Config == nil {
		i.Config = map[string]string{}
	}
	if i.Devices == nil {
		i.Devices = map[string]map[string]string{}
	}
	return i, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return string(b)
}

func isUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique
}

// Instances returns every ready instance, sorted by name.
func (d *DB) Instances(ctx context.Context) ([]Instance, error) {
	return d.queryInstances(ctx, "WHERE ready = 1 ORDER BY name")
}

// UnfinishedInstances returns the rows left by creations that never
// completed (the daemon died half way).
func (d *DB) UnfinishedInstances(ctx context.Context) ([]Instance, error) {
	return d.queryInstances(ctx, "WHERE ready = 0")
}

func (d *DB) queryInstances(ctx context.Context, where string, args ...any) ([]Instance, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+instanceColumns+" FROM instances "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	var out []Instance
	for rows.Next() {
		i, err := scanInstance(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	profiles, err := d.instanceProfiles(ctx)
	if err != nil {
		return nil, err
	}
	for k := range out {
		out[k].Profiles = profiles[out[k].ID]
		if out[k].Profiles == nil {
			out[k].Profiles = []string{}
		}
	}
	return out, nil
}

func (d *DB) instanceProfiles(ctx context.Context) (map[int64][]string, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT ip.instance_id, p.name FROM instances_profiles ip
		JOIN profiles p ON p.id = ip.profile_id ORDER BY ip.instance_id, ip.apply_order`)
	if err != nil {
		return nil, fmt.Errorf("list instance profiles: %w", err)
	}
	defer rows.Close()
	out := map[int64][]string{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, err
		}
		out[id] = append(out[id], name)
	}
	return out, rows.Err()
}

// Instance returns one ready instance by name.
func (d *DB) Instance(ctx context.Context, name string) (Instance, error) {
	list, err := d.queryInstances(ctx, "WHERE name = ? AND ready = 1", name)
	if err != nil {
		return Instance{}, err
	}
	if len(list) == 0 {
		return Instance{}, fmt.Errorf("instance %q: %w", name, ErrNotFound)
	}
	return list[0], nil
}

// CreateInstance inserts a new instance row that is not ready yet: it stays
// hidden until MarkInstanceReady, so a crash half way leaves nothing visible.
func (d *DB) CreateInstance(ctx context.Context, i Instance) (int64, error) {
	var id int64
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO instances (name, type, architecture, ephemeral, stateful, description, config, devices, pool, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			i.Name, i.Type, i.Architecture, i.Ephemeral, i.Stateful, i.Description,
			mustJSON(i.Config), mustJSON(i.Devices), i.Pool, i.CreatedAt.UnixNano())
		if isUniqueViolation(err) {
			return fmt.Errorf("instance %q: %w", i.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("insert instance %s: %w", i.Name, err)
		}
		id, _ = res.LastInsertId()
		return setInstanceProfiles(ctx, tx, id, i.Profiles)
	})
	return id, err
}

func setInstanceProfiles(ctx context.Context, tx *sql.Tx, id int64, profiles []string) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM instances_profiles WHERE instance_id = ?", id); err != nil {
		return fmt.Errorf("clear profiles: %w", err)
	}
	for order, name := range profiles {
		res, err := tx.ExecContext(ctx, `INSERT INTO instances_profiles (instance_id, profile_id, apply_order)
			SELECT ?, id, ? FROM profiles WHERE name = ?`, id, order, name)
		if err != nil {
			return fmt.Errorf("link profile %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("profile %q: %w", name, ErrNotFound)
		}
	}
	return nil
}

// SetInstanceReady makes a created instance visible, or (ready false)
// hides an instance that is being deleted, so that a crash during the
// deletion is finished by the next start.
func (d *DB) SetInstanceReady(ctx context.Context, id int64, ready bool) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE instances SET ready = ? WHERE id = ?", ready, id)
	if err != nil {
		return fmt.Errorf("mark instance ready: %w", err)
	}
	return nil
}

// UpdateInstance replaces an instance's writable fields and profiles.
func (d *DB) UpdateInstance(ctx context.Context, i Instance) error {
	return d.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE instances SET architecture = ?, ephemeral = ?, stateful = ?, description = ?,
			config = ?, devices = ? WHERE id = ?`,
			i.Architecture, i.Ephemeral, i.Stateful, i.Description, mustJSON(i.Config), mustJSON(i.Devices), i.ID)
		if err != nil {
			return fmt.Errorf("update instance %s: %w", i.Name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("instance %q: %w", i.Name, ErrNotFound)
		}
		return setInstanceProfiles(ctx, tx, i.ID, i.Profiles)
	})
}

// SetInstanceConfig sets (or, with an empty value, removes) config keys of
// an instance in one transaction. It is how the daemon records volatile state.
func (d *DB) SetInstanceConfig(ctx context.Context, id int64, changes map[string]string) error {
	return d.Tx(ctx, func(tx *sql.Tx) error {
		var raw string
		if err := tx.QueryRowContext(ctx, "SELECT config FROM instances WHERE id = ?", id).Scan(&raw); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("instance %d: %w", id, ErrNotFound)
			}
			return fmt.Errorf("read instance config: %w", err)
		}
		config := map[string]string{}
		if err := json.Unmarshal([]byte(raw), &config); err != nil {
			return fmt.Errorf("decode instance config: %w", err)
		}
		for k, v := range changes {
			if v == "" {
				delete(config, k)
			} else {
				config[k] = v
			}
		}
		_, err := tx.ExecContext(ctx, "UPDATE instances SET config = ? WHERE id = ?", mustJSON(config), id)
		if err != nil {
			return fmt.Errorf("write instance config: %w", err)
		}
		return nil
	})
}

// TouchInstance records that an instance was just used (started).
func (d *DB) TouchInstance(ctx context.Context, id int64, at time.Time) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE instances SET last_used_at = ? WHERE id = ?", at.UnixNano(), id)
	if err != nil {
		return fmt.Errorf("record instance use: %w", err)
	}
	return nil
}

// RenameInstance renames an instance.
func (d *DB) RenameInstance(ctx context.Context, id int64, newName string) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE instances SET name = ? WHERE id = ?", newName, id)
	if isUniqueViolation(err) {
		return fmt.Errorf("instance %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename instance: %w", err)
	}
	return nil
}

// DeleteInstance removes an instance's row.
func (d *DB) DeleteInstance(ctx context.Context, id int64) error {
	_, err := d.sql.ExecContext(ctx, "DELETE FROM instances WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete instance: %w", err)
	}
	return nil
}

// InstancesUsingProfile returns the names of the instances that use a profile.
func (d *DB) InstancesUsingProfile(ctx context.Context, profile string) ([]string, error) {
	return d.names(ctx, `SELECT i.name FROM instances i JOIN instances_profiles ip ON ip.instance_id = i.id
		JOIN profiles p ON p.id = ip.profile_id WHERE p.name = ? AND i.ready = 1 ORDER BY i.name`, profile)
}

// InstancesInPool returns the names of the instances stored on a pool.
func (d *DB) InstancesInPool(ctx context.Context, pool string) ([]string, error) {
	return d.names(ctx, "SELECT name FROM instances WHERE pool = ? AND ready = 1 ORDER BY name", pool)
}

func (d *DB) names(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := d.sql.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
