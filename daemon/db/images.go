package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Image is an image's row with its aliases.
type Image struct {
	ID           int64
	Fingerprint  string
	Filename     string
	Size         int64
	Public       bool
	AutoUpdate   bool
	Cached       bool
	Architecture string
	Type         string
	Properties   map[string]string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	UploadedAt   time.Time
	LastUsedAt   time.Time
	Aliases      []ImageAlias
}

// ImageAlias is an alias's row.
type ImageAlias struct {
	Name        string
	Description string
	Fingerprint string
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func fromUnix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

const imageColumns = `id, fingerprint, filename, size, public, auto_update, cached, architecture, type, properties, created_at, expires_at, uploaded_at, last_used_at`

func scanImage(row interface{ Scan(...any) error }) (Image, error) {
	var i Image
	var props string
	var created, expires, uploaded, used int64
	err := row.Scan(&i.ID, &i.Fingerprint, &i.Filename, &i.Size, &i.Public, &i.AutoUpdate, &i.Cached,
		&i.Architecture, &i.Type, &props, &created, &expires, &uploaded, &used)
	if err != nil {
		return i, err
	}
	if err := json.Unmarshal([]byte(props), &i.Properties); err != nil {
		return i, fmt.Errorf("image %s: decode properties: %w", i.Fingerprint, err)
	}
	i.CreatedAt, i.ExpiresAt, i.UploadedAt, i.LastUsedAt = fromUnix(created), fromUnix(expires), fromUnix(uploaded), fromUnix(used)
	return i, nil
}

// Images returns every image with its aliases.
func (d *DB) Images(ctx context.Context) ([]Image, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+imageColumns+" FROM images ORDER BY uploaded_at, fingerprint")
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Image
	for rows.Next() {
		i, err := scanImage(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, i)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	aliases, err := d.ImageAliases(ctx)
	if err != nil {
		return nil, err
	}
	for k := range out {
		for _, a := range aliases {
			if a.Fingerprint == out[k].Fingerprint {
				out[k].Aliases = append(out[k].Aliases, a)
			}
		}
	}
	return out, nil
}

// ErrAmbiguous is returned when a fingerprint prefix matches several images.
var ErrAmbiguous = errors.New("matches more than one image")

// Image returns the image whose fingerprint starts with prefix.
func (d *DB) Image(ctx context.Context, prefix string) (Image, error) {
	if prefix == "" || strings.ContainsAny(prefix, "%_") {
		return Image{}, fmt.Errorf("image %q: %w", prefix, ErrNotFound)
	}
	rows, err := d.sql.QueryContext(ctx, "SELECT "+imageColumns+" FROM images WHERE fingerprint LIKE ? LIMIT 2", prefix+"%")
	if err != nil {
		return Image{}, fmt.Errorf("find image: %w", err)
	}
	var found []Image
	for rows.Next() {
		i, err := scanImage(rows)
		if err != nil {
			rows.Close()
			return Image{}, err
		}
		found = append(found, i)
	}
	rows.Close()
	switch len(found) {
	case 0:
		return Image{}, fmt.Errorf("image %q: %w", prefix, ErrNotFound)
	case 2:
		return Image{}, fmt.Errorf("image %q: %w", prefix, ErrAmbiguous)
	}
	i := found[0]
	aliases, err := d.ImageAliases(ctx)
	if err != nil {
		return Image{}, err
	}
	for _, a := range aliases {
		if a.Fingerprint == i.Fingerprint {
			i.Aliases = append(i.Aliases, a)
		}
	}
	return i, nil
}

// CreateImage inserts an image.
func (d *DB) CreateImage(ctx context.Context, i Image) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO images (fingerprint, filename, size, public, auto_update, cached, architecture, type,
		properties, created_at, expires_at, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		i.Fingerprint, i.Filename, i.Size, i.Public, i.AutoUpdate, i.Cached, i.Architecture, i.Type,
		mustJSON(i.Properties), unixOrZero(i.CreatedAt), unixOrZero(i.ExpiresAt), unixOrZero(i.UploadedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("image %s: %w", i.Fingerprint, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create image: %w", err)
	}
	return nil
}

// UpdateImage replaces an image's writable fields.
func (d *DB) UpdateImage(ctx context.Context, i Image) error {
	_, err := d.sql.ExecContext(ctx, `UPDATE images SET public = ?, auto_update = ?, cached = ?, properties = ?, expires_at = ? WHERE fingerprint = ?`,
		i.Public, i.AutoUpdate, i.Cached, mustJSON(i.Properties), unixOrZero(i.ExpiresAt), i.Fingerprint)
	if err != nil {
		return fmt.Errorf("update image: %w", err)
	}
	return nil
}

// TouchImage records that an image was just used to create an instance.
func (d *DB) TouchImage(ctx context.Context, fingerprint string, at time.Time) error {
	_, err := d.sql.ExecContext(ctx, "UPDATE images SET last_used_at = ? WHERE fingerprint = ?", at.Unix(), fingerprint)
	if err != nil {
		return fmt.Errorf("record image use: %w", err)
	}
	return nil
}

// DeleteImage removes an image and its aliases.
func (d *DB) DeleteImage(ctx context.Context, fingerprint string) error {
	_, err := d.sql.ExecContext(ctx, "DELETE FROM images WHERE fingerprint = ?", fingerprint)
	if err != nil {
		return fmt.Errorf("delete image: %w", err)
	}
	return nil
}

// ImageAliases returns every alias, sorted by name.
func (d *DB) ImageAliases(ctx context.Context) ([]ImageAlias, error) {
	rows, err := d.sql.QueryContext(ctx, `SELECT a.name, a.description, i.fingerprint FROM images_aliases a
		JOIN images i ON i.id = a.image_id ORDER BY a.name`)
	if err != nil {
		return nil, fmt.Errorf("list image aliases: %w", err)
	}
	defer rows.Close()
	var out []ImageAlias
	for rows.Next() {
		var a ImageAlias
		if err := rows.Scan(&a.Name, &a.Description, &a.Fingerprint); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// ImageAlias returns one alias.
func (d *DB) ImageAlias(ctx context.Context, name string) (ImageAlias, error) {
	var a ImageAlias
	err := d.sql.QueryRowContext(ctx, `SELECT a.name, a.description, i.fingerprint FROM images_aliases a
		JOIN images i ON i.id = a.image_id WHERE a.name = ?`, name).Scan(&a.Name, &a.Description, &a.Fingerprint)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("image alias %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("find image alias: %w", err)
	}
	return a, nil
}

// CreateImageAlias adds an alias to an image.
func (d *DB) CreateImageAlias(ctx context.Context, a ImageAlias) error {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO images_aliases (name, image_id, description)
		SELECT ?, id, ? FROM images WHERE fingerprint = ?`, a.Name, a.Description, a.Fingerprint)
	if isUniqueViolation(err) {
		return fmt.Errorf("image alias %q: %w", a.Name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create image alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image %s: %w", a.Fingerprint, ErrNotFound)
	}
	return nil
}

// UpdateImageAlias points an alias at another image and/or changes its description.
func (d *DB) UpdateImageAlias(ctx context.Context, a ImageAlias) error {
	res, err := d.sql.ExecContext(ctx, `UPDATE images_aliases SET description = ?,
		image_id = (SELECT id FROM images WHERE fingerprint = ?) WHERE name = ?`, a.Description, a.Fingerprint, a.Name)
	if err != nil {
		return fmt.Errorf("update image alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image alias %q: %w", a.Name, ErrNotFound)
	}
	return nil
}

// RenameImageAlias renames an alias.
func (d *DB) RenameImageAlias(ctx context.Context, oldName, newName string) error {
	res, err := d.sql.ExecContext(ctx, "UPDATE images_aliases SET name = ? WHERE name = ?", newName, oldName)
	if isUniqueViolation(err) {
		return fmt.Errorf("image alias %q: %w", newName, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("rename image alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image alias %q: %w", oldName, ErrNotFound)
	}
	return nil
}

// DeleteImageAlias removes an alias.
func (d *DB) DeleteImageAlias(ctx context.Context, name string) error {
	res, err := d.sql.ExecContext(ctx, "DELETE FROM images_aliases WHERE name = ?", name)
	if err != nil {
		return fmt.Errorf("delete image alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image alias %q: %w", name, ErrNotFound)
	}
	return nil
}
