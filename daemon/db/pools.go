package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// StoragePool is a storage pool's row.
type StoragePool struct {
	ID          int64
	Name        string
	Driver      string
	Description string
	// Config is the config a cluster would share between its hosts.
	Config map[string]string
	// Local is this host's own config of the pool (source, size): kept in
	// storage_pools_local, apart from the shared state.
	Local map[string]string
}

const poolQuery = `SELECT p.id, p.name, p.driver, p.description, p.config, COALESCE(l.config, '{}')
FROM storage_pools p LEFT JOIN storage_pools_local l ON l.pool_id = p.id`

func scanPool(row interface{ Scan(...any) error }) (StoragePool, error) {
	var p StoragePool
	var config, local string
	if err := row.Scan(&p.ID, &p.Name, &p.Driver, &p.Description, &config, &local); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(config), &p.Config); err != nil {
		return p, fmt.Errorf("pool %s: decode config: %w", p.Name, err)
	}
	if err := json.Unmarshal([]byte(local), &p.Local); err != nil {
		return p, fmt.Errorf("pool %s: decode local config: %w", p.Name, err)
	}
	if p.Config == nil {
		p.Config = map[string]string{}
	}
	if p.Local == nil {
		p.Local = map[string]string{}
	}
	return p, nil
}

// StoragePools returns every pool, sorted by name.
func (d *DB) StoragePools(ctx context.Context) ([]StoragePool, error) {
	rows, err := d.sql.QueryContext(ctx, poolQuery+" ORDER BY p.name")
	if err != nil {
		return nil, fmt.Errorf("list storage pools: %w", err)
	}
	defer rows.Close()
	var out []StoragePool
	for rows.Next() {
		p, err := scanPool(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// StoragePool returns one pool by name.
func (d *DB) StoragePool(ctx context.Context, name string) (StoragePool, error) {
	p, err := scanPool(d.sql.QueryRowContext(ctx, poolQuery+" WHERE p.name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("storage pool %q: %w", name, ErrNotFound)
	}
	return p, err
}

// CreateStoragePool inserts a pool with its shared and local config.
func (d *DB) CreateStoragePool(ctx context.Context, p StoragePool) error {
	return d.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO storage_pools (name, driver, description, config) VALUES (?, ?, ?, ?)",
			p.Name, p.Driver, p.Description, mustJSON(p.Config))
		if isUniqueViolation(err) {
			return fmt.Errorf("storage pool %q: %w", p.Name, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("create storage pool %s: %w", p.Name, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("create storage pool %s: %w", p.Name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO storage_pools_local (pool_id, config) VALUES (?, ?)", id, mustJSON(p.Local)); err != nil {
			return fmt.Errorf("create storage pool %s: %w", p.Name, err)
		}
		return nil
	})
}

// UpdateStoragePool replaces a pool's description and shared config.
func (d *DB) UpdateStoragePool(ctx context.Context, name, description string, config map[string]string) error {
	res, err := d.sql.ExecContext(ctx, "UPDATE storage_pools SET description = ?, config = ? WHERE name = ?",
		description, mustJSON(config), name)
	if err != nil {
		return fmt.Errorf("update storage pool %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("storage pool %q: %w", name, ErrNotFound)
	}
	return nil
}

// DeleteStoragePool removes a pool's rows.
func (d *DB) DeleteStoragePool(ctx context.Context, name string) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM storage_pools WHERE name = ?", name); err != nil {
		return fmt.Errorf("delete storage pool %s: %w", name, err)
	}
	return nil
}

// PoolUsers returns the instances stored on a pool (including those being
// created or deleted) and the profiles whose disks use it.
func (d *DB) PoolUsers(ctx context.Context, pool string) (instances, profiles []string, err error) {
	instances, err = d.names(ctx, "SELECT name FROM instances WHERE pool = ? ORDER BY name", pool)
	if err != nil {
		return nil, nil, err
	}
	profiles, err = d.names(ctx, `SELECT name FROM profiles WHERE EXISTS
		(SELECT 1 FROM json_each(profiles.devices) WHERE json_extract(value, '$.type') = 'disk' AND json_extract(value, '$.pool') = ?)
		ORDER BY name`, pool)
	if err != nil {
		return nil, nil, err
	}
	return instances, profiles, nil
}
