package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Profile is a profile's row.
type Profile struct {
	ID          int64
	Name        string
	Description string
	Config      map[string]string
	Devices     map[string]map[string]string
}

// Profiles returns every profile, sorted by name.
func (d *DB) Profiles(ctx context.Context) ([]Profile, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT id, name, description, config, devices FROM profiles ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list profiles: %w", err)
	}
	defer rows.Close()
	var out []Profile
	for rows.Next() {
		p, err := scanProfile(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func scanProfile(row interface{ Scan(...any) error }) (Profile, error) {
	var p Profile
	var config, devices string
	if err := row.Scan(&p.ID, &p.Name, &p.Description, &config, &devices); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(config), &p.Config); err != nil {
		return p, fmt.Errorf("profile %s: decode config: %w", p.Name, err)
	}
	if err := json.Unmarshal([]byte(devices), &p.Devices); err != nil {
		return p, fmt.Errorf("profile %s: decode devices: %w", p.Name, err)
	}
	if p.Config == nil {
		p.Config = map[string]string{}
	}
	if p.Devices == nil {
		p.Devices = map[string]map[string]string{}
	}
	return p, nil
}

// Profile returns one profile by name.
func (d *DB) Profile(ctx context.Context, name string) (Profile, error) {
	p, err := scanProfile(d.sql.QueryRowContext(ctx, "SELECT id, name, description, config, devices FROM profiles WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("profile %q: %w", name, ErrNotFound)
	}
	return p, err
}

// CreateProfile inserts a profile.
func (d *DB) CreateProfile(ctx context.Context, p Profile) error {
	_, err := d.sql.ExecContext(ctx, "INSERT INTO profiles (name, description, config, devices) VALUES (?, ?, ?, ?)",
		p.Name, p.Description, mustJSON(p.Config), mustJSON(p.Devices))
	if isUniqueViolation(err) {
		return fmt.Errorf("profile %q: %w", p.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create profile %s: %w", p.Name, err)
	}
	return nil
}

// UpdateProfile replaces a profile's description, config and devices.
func (d *DB) UpdateProfile(ctx context.Context, p Profile) error {
	res, err := d.sql.ExecContext(ctx, "UPDATE profiles SET description = ?, config = ?, devices = ? WHERE name = ?",
		p.Description, mustJSON(p.Config), mustJSON(p.Devices), p.Name)
	if err != nil {
		return fmt.Errorf("update profile %s: %w", p.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("profile %q: %w", p.Name, ErrNotFound)
	}
	return nil
}

// RenameProfile renames a profile.
func (d *DB) RenameProfile(ctx context.Context, oldName, newName string) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE profiles SET name = ? WHERE name = ?", newName, oldName)
	if isUniqueViolation(err) {
		return fmt.Errorf("profile %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename profile: %w", err)
	}
	return nil
}

// DeleteProfile removes a profile.
func (d *DB) DeleteProfile(ctx context.Context, name string) error {
	_, err := d.sql.ExecContext(ctx, "DELETE FROM profiles WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete profile %s: %w", name, err)
	}
	return nil
}
