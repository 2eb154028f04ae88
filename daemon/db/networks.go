package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Network is a managed network's row. Ready is false while its bridge is
// being made or removed: a daemon that restarts after a crash finishes
// (or undoes) the job.
type Network struct {
	ID          int64
	Name        string
	Description string
	Type        string
	Config      map[string]string
	CreatedAt   time.Time
	Ready       bool
}

const networkColumns = `id, name, description, type, config, created_at, ready`

func scanNetwork(row interface{ Scan(...any) error }) (Network, error) {
	var n Network
	var config string
	var created int64
	if err := row.Scan(&n.ID, &n.Name, &n.Description, &n.Type, &config, &created, &n.Ready); err != nil {
		return n, err
	}
	n.CreatedAt = time.Unix(0, created).UTC()
	if err := json.Unmarshal([]byte(config), &n.Config); err != nil {
		return n, fmt.Errorf("network %s: decode config: %w", n.Name, err)
	}
	if n.Config == nil {
		n.Config = map[string]string{}
	}
	return n, nil
}

func (d *DB) queryNetworks(ctx context.Context, where string, args ...any) ([]Network, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+networkColumns+" FROM networks "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	defer rows.Close()
	var out []Network
	for rows.Next() {
		n, err := scanNetwork(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list networks: %w", err)
	}
	return out, nil
}

// Networks returns every ready network, sorted by name.
func (d *DB) Networks(ctx context.Context) ([]Network, error) {
	return d.queryNetworks(ctx, "WHERE ready = 1 ORDER BY name")
}

// AllNetworks returns every network row, ready or not: subnets of a network
// being created are taken too.
func (d *DB) AllNetworks(ctx context.Context) ([]Network, error) {
	return d.queryNetworks(ctx, "ORDER BY name")
}

// UnfinishedNetworks returns the rows of creations or deletions that never
// completed.
func (d *DB) UnfinishedNetworks(ctx context.Context) ([]Network, error) {
	return d.queryNetworks(ctx, "WHERE ready = 0 ORDER BY name")
}

// Network returns one ready network by name.
func (d *DB) Network(ctx context.Context, name string) (Network, error) {
	n, err := scanNetwork(d.sql.QueryRowContext(ctx, "SELECT "+networkColumns+" FROM networks WHERE name = ? AND ready = 1", name))
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("network %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return n, fmt.Errorf("read network %s: %w", name, err)
	}
	return n, nil
}

// CreateNetwork inserts a network row that is not ready yet; MarkNetworkReady
// publishes it once its bridge is up.
func (d *DB) CreateNetwork(ctx context.Context, n Network) (int64, error) {
	if n.Type == "" {
		n.Type = "bridge"
	}
	res, err := d.sql.ExecContext(ctx, "INSERT INTO networks (name, description, type, config, created_at, ready) VALUES (?, ?, ?, ?, ?, 0)",
		n.Name, n.Description, n.Type, mustJSON(n.Config), time.Now().UnixNano())
	if isUniqueViolation(err) {
		return 0, fmt.Errorf("network %q: %w", n.Name, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	return res.LastInsertId()
}

// SetNetworkReady marks a network ready (made) or not (being removed).
func (d *DB) SetNetworkReady(ctx context.Context, id int64, ready bool) error {
	if _, err := d.sql.ExecContext(ctx, "UPDATE networks SET ready = ? WHERE id = ?", ready, id); err != nil {
		return fmt.Errorf("mark network %d ready=%v: %w", id, ready, err)
	}
	return nil
}

// UpdateNetwork replaces a network's description and config.
func (d *DB) UpdateNetwork(ctx context.Context, n Network) error {
	res, err := d.sql.ExecContext(ctx, "UPDATE networks SET description = ?, config = ? WHERE id = ?",
		n.Description, mustJSON(n.Config), n.ID)
	if err != nil {
		return fmt.Errorf("update network %s: %w", n.Name, err)
	}
	if c, _ := res.RowsAffected(); c == 0 {
		return fmt.Errorf("network %q: %w", n.Name, ErrNotFound)
	}
	return nil
}

// RenameNetwork renames a network.
func (d *DB) RenameNetwork(ctx context.Context, id int64, newName string) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE networks SET name = ? WHERE id = ?", newName, id)
	if isUniqueViolation(err) {
		return fmt.Errorf("network %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename network to %s: %w", newName, err)
	}
	return nil
}

// DeleteNetwork removes a network's row.
func (d *DB) DeleteNetwork(ctx context.Context, id int64) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM networks WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete network %d: %w", id, err)
	}
	return nil
}
