package db

import (
	"context"
	"database/sql"
	"fmt"
)

// ServerConfig returns the server's config keys.
func (d *DB) ServerConfig(ctx context.Context) (map[string]string, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT key, value FROM config")
	if err != nil {
		return nil, fmt.Errorf("read server config: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// ReplaceServerConfig replaces the whole server config.
func (d *DB) ReplaceServerConfig(ctx context.Context, config map[string]string) error {
	return d.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM config"); err != nil {
			return fmt.Errorf("clear server config: %w", err)
		}
		for k, v := range config {
			if _, err := tx.ExecContext(ctx, "INSERT INTO config (key, value) VALUES (?, ?)", k, v); err != nil {
				return fmt.Errorf("write server config %s: %w", k, err)
			}
		}
		return nil
	})
}
