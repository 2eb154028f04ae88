package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Certificate is a trusted client certificate.
type Certificate struct {
	ID          int64
	Fingerprint string
	Type        string
	Name        string
	Certificate string // PEM
	Restricted  bool
	CreatedAt   time.Time
}

// CertificateToken is a pending join token. Only a hash of its secret is
// kept: the database alone cannot be used to join.
type CertificateToken struct {
	ID         int64
	Name       string
	SecretHash string
	Restricted bool
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never
}

const certColumns = "id, fingerprint, type, name, certificate, restricted, created_at"

func scanCertificate(row interface{ Scan(...any) error }) (Certificate, error) {
	var c Certificate
	var created int64
	err := row.Scan(&c.ID, &c.Fingerprint, &c.Type, &c.Name, &c.Certificate, &c.Restricted, &created)
	c.CreatedAt = time.Unix(created, 0).UTC()
	return c, err
}

// Certificates returns the trust store, sorted by name.
func (d *DB) Certificates(ctx context.Context) ([]Certificate, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+certColumns+" FROM certificates ORDER BY name, fingerprint")
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	defer rows.Close()
	var out []Certificate
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return nil, fmt.Errorf("read certificate: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Certificate returns the certificate whose fingerprint starts with
// prefix; ErrAmbiguous when several do.
func (d *DB) Certificate(ctx context.Context, prefix string) (Certificate, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT "+certColumns+" FROM certificates WHERE substr(fingerprint, 1, ?) = ? LIMIT 2",
		len(prefix), prefix)
	if err != nil {
		return Certificate{}, fmt.Errorf("find certificate: %w", err)
	}
	defer rows.Close()
	var found []Certificate
	for rows.Next() {
		c, err := scanCertificate(rows)
		if err != nil {
			return Certificate{}, fmt.Errorf("read certificate: %w", err)
		}
		found = append(found, c)
	}
	if err := rows.Err(); err != nil {
		return Certificate{}, fmt.Errorf("find certificate: %w", err)
	}
	switch len(found) {
	case 0:
		return Certificate{}, fmt.Errorf("certificate %s: %w", prefix, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return Certificate{}, fmt.Errorf("certificate %s: %w", prefix, ErrAmbiguous)
}

// CreateCertificate adds a certificate to the trust store.
func (d *DB) CreateCertificate(ctx context.Context, c Certificate) error {
	_, err := d.sql.ExecContext(ctx, `INSERT INTO certificates (fingerprint, type, name, certificate, restricted, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, c.Fingerprint, c.Type, c.Name, c.Certificate, c.Restricted, c.CreatedAt.Unix())
	if isUniqueViolation(err) {
		return fmt.Errorf("certificate %s: %w", c.Fingerprint, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("add certificate: %w", err)
	}
	return nil
}

// UpdateCertificate changes a certificate's name, type and restricted flag.
func (d *DB) UpdateCertificate(ctx context.Context, c Certificate) error {
	res, err := d.sql.ExecContext(ctx, "UPDATE certificates SET name = ?, type = ?, restricted = ? WHERE fingerprint = ?",
		c.Name, c.Type, c.Restricted, c.Fingerprint)
	if err != nil {
		return fmt.Errorf("update certificate: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("certificate %s: %w", c.Fingerprint, ErrNotFound)
	}
	return nil
}

// DeleteCertificate removes a certificate from the trust store.
func (d *DB) DeleteCertificate(ctx context.Context, fingerprint string) error {
	res, err := d.sql.ExecContext(ctx, "DELETE FROM certificates WHERE fingerprint = ?", fingerprint)
	if err != nil {
		return fmt.Errorf("delete certificate: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("certificate %s: %w", fingerprint, ErrNotFound)
	}
	return nil
}

// CreateCertificateToken records a join token and returns its id.
func (d *DB) CreateCertificateToken(ctx context.Context, t CertificateToken) (int64, error) {
	res, err := d.sql.ExecContext(ctx, `INSERT INTO certificate_tokens (name, secret_hash, restricted, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?)`, t.Name, t.SecretHash, t.Restricted, t.CreatedAt.Unix(), unixOrZero(t.ExpiresAt))
	if err != nil {
		return 0, fmt.Errorf("record join token: %w", err)
	}
	return res.LastInsertId()
}

func scanToken(row interface{ Scan(...any) error }) (CertificateToken, error) {
	var t CertificateToken
	var created, expires int64
	err := row.Scan(&t.ID, &t.Name, &t.SecretHash, &t.Restricted, &created, &expires)
	t.CreatedAt = time.Unix(created, 0).UTC()
	if expires != 0 {
		t.ExpiresAt = time.Unix(expires, 0).UTC()
	}
	return t, err
}

// CertificateTokens returns the pending join tokens, oldest first.
func (d *DB) CertificateTokens(ctx context.Context) ([]CertificateToken, error) {
	rows, err := d.sql.QueryContext(ctx, "SELECT id, name, secret_hash, restricted, created_at, expires_at FROM certificate_tokens ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	defer rows.Close()
	var out []CertificateToken
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("read join token: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteCertificateToken removes a join token by id (revoked or expired).
func (d *DB) DeleteCertificateToken(ctx context.Context, id int64) error {
	if _, err := d.sql.ExecContext(ctx, "DELETE FROM certificate_tokens WHERE id = ?", id); err != nil {
		return fmt.Errorf("delete join token: %w", err)
	}
	return nil
}

// UseCertificateToken spends the token whose secret hashes to secretHash
// and adds cert to the trust store under the token's name, in one
// transaction: a token is good for one certificate only, even when two
// clients race with it. An unknown (or already used) token is
// ErrNotFound; an expired one is removed and also ErrNotFound.
func (d *DB) UseCertificateToken(ctx context.Context, secretHash string, now time.Time, cert Certificate) (CertificateToken, error) {
	var t CertificateToken
	err := d.Tx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanToken(tx.QueryRowContext(ctx, `SELECT id, name, secret_hash, restricted, created_at, expires_at
			FROM certificate_tokens WHERE secret_hash = ?`, secretHash))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("join token: %w", ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("find join token: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM certificate_tokens WHERE id = ?", t.ID); err != nil {
			return fmt.Errorf("spend join token: %w", err)
		}
		if !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt) {
			// Removing it is all there is left to do: commit that.
			return nil
		}
		cert.Name, cert.Restricted = t.Name, t.Restricted
		_, err = tx.ExecContext(ctx, `INSERT INTO certificates (fingerprint, type, name, certificate, restricted, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, cert.Fingerprint, cert.Type, cert.Name, cert.Certificate, cert.Restricted, cert.CreatedAt.Unix())
		if isUniqueViolation(err) {
			return fmt.Errorf("certificate %s: %w", cert.Fingerprint, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("add certificate: %w", err)
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	if !t.ExpiresAt.IsZero() && now.After(t.ExpiresAt) {
		return t, fmt.Errorf("join token %q expired at %s: %w", t.Name, t.ExpiresAt.Format(time.RFC3339), ErrExpired)
	}
	return t, nil
}

// ErrExpired is a join token used after its expiry.
var ErrExpired = errors.New("expired")
