package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ImageSource is where a downloaded image came from: the server, its
// protocol ("simplestreams") and the alias it was asked for by (empty when
// asked for by fingerprint).
type ImageSource struct {
	Server   string
	Protocol string
	Alias    string
	// Certificate is the PEM certificate an LXD-protocol server is
	// pinned to ("" for simplestreams and for the system's CAs).
	Certificate string
}

// SetImageSource records (or replaces) an image's source.
func (d *DB) SetImageSource(ctx context.Context, fingerprint string, s ImageSource) error {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO images_source (image_id, server, protocol, alias, certificate)
		SELECT id, ?, ?, ?, ? FROM images WHERE fingerprint = ?
		ON CONFLICT (image_id) DO UPDATE SET server = excluded.server, protocol = excluded.protocol,
			alias = excluded.alias, certificate = excluded.certificate`,
		s.Server, s.Protocol, s.Alias, s.Certificate, fingerprint)
	if err != nil {
		return fmt.Errorf("record image source: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("record image source: image %s: %w", fingerprint, ErrNotFound)
	}
	return nil
}

// ImageSourceOf returns an image's source; ok is false for an image that
// was not downloaded.
func (d *DB) ImageSourceOf(ctx context.Context, fingerprint string) (s ImageSource, ok bool, err error) {
	err = d.sql.QueryRowContext(ctx, `SELECT s.server, s.protocol, s.alias, s.certificate FROM images_source s
		JOIN images i ON i.id = s.image_id WHERE i.fingerprint = ?`, fingerprint).Scan(&s.Server, &s.Protocol, &s.Alias, &s.Certificate)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("read image source: %w", err)
	}
	return s, true, nil
}
