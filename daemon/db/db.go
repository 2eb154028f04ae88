// Package db keeps celld's state in SQLite. Every SQL statement of the
// daemon lives in this package, so that the state a cluster would share can
// later move onto dqlite without touching the rest of the daemon.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// ErrNotFound is returned when a row asked for does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when a row with the same name already exists.
var ErrExists = errors.New("already exists")

// DB is the daemon's database.
type DB struct {
	sql *sql.DB
}

// Open opens (creating if needed) the database file and brings its schema
// up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	// WAL lets readers run while a write is in progress; foreign keys make
	// SQLite remove an instance's profile links with the instance; the busy
	// timeout absorbs short write contention instead of failing.
	dsn := "file:" + path + "?_journal_mode=WAL&_foreign_keys=on&_busy_timeout=10000&_synchronous=NORMAL&_txlock=immediate"
	s, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// SQLite allows one writer at a time; a single connection keeps
	// transactions strictly serialised and avoids SQLITE_BUSY surprises.
	s.SetMaxOpenConns(1)
	d := &DB{sql: s}
	if err := d.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return d, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.sql.Close() }

// Tx runs f in a transaction, committing if it returns nil.
func (d *DB) Tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
