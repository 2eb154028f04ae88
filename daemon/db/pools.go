package db

import (
	"context"
	"encoding/json"
	"fmt"
)

// StoragePool is a storage pool's row.
type StoragePool struct {
	ID          int64
	Name        string
	Driver      string
	Description string
	Config      map[string]string
}

// StoragePools returns every pool, sorted by name.
func (d *DB) StoragePools(ctx context.Context) ([]StoragePool, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT id, name, driver, description, config FROM storage_pools ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list storage pools: %w", err)
	}
	defer rows.Close()
	var out []StoragePool
	for rows.Next() {
		var p StoragePool
		var config string
		if err := rows.Scan(&p.ID, &p.Name, &p.Driver, &p.Description, &config); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(config), &p.Config); err != nil {
			return nil, fmt.Errorf("pool %s: decode config: %w", p.Name, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CreateStoragePool inserts a pool.
func (d *DB) CreateStoragePool(ctx context.Context, p StoragePool) error {
	_, err := d.sql.ExecContext(ctx, "INSERT INTO storage_pools (name, driver, description, config) VALUES (?, ?, ?, ?)",
		p.Name, p.Driver, p.Description, mustJSON(p.Config))
	if isUniqueViolation(err) {
		return fmt.Errorf("storage pool %q: %w", p.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create storage pool %s: %w", p.Name, err)
	}
	return nil
}
