package db

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; the schema version is the number of
// migrations applied. Never edit one that has shipped: add a new one.
var migrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE config (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE storage_pools (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	driver      TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	config      TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE profiles (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	config      TEXT NOT NULL DEFAULT '{}',
	devices     TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE instances (
	id           INTEGER PRIMARY KEY,
	name         TEXT NOT NULL UNIQUE,
	type         TEXT NOT NULL DEFAULT 'container',
	architecture TEXT NOT NULL DEFAULT '',
	ephemeral    INTEGER NOT NULL DEFAULT 0,
	stateful     INTEGER NOT NULL DEFAULT 0,
	description  TEXT NOT NULL DEFAULT '',
	config       TEXT NOT NULL DEFAULT '{}',
	devices      TEXT NOT NULL DEFAULT '{}',
	pool         TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0,
	-- ready is 0 while the instance is being created: such a row is not
	-- shown, and a daemon that restarts after a crash removes it.
	ready        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE instances_profiles (
	instance_id INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
	profile_id  INTEGER NOT NULL REFERENCES profiles(id) ON DELETE RESTRICT,
	apply_order INTEGER NOT NULL,
	PRIMARY KEY (instance_id, profile_id)
);
CREATE TABLE images (
	id           INTEGER PRIMARY KEY,
	fingerprint  TEXT NOT NULL UNIQUE,
	filename     TEXT NOT NULL DEFAULT '',
	size         INTEGER NOT NULL,
	public       INTEGER NOT NULL DEFAULT 0,
	auto_update  INTEGER NOT NULL DEFAULT 0,
	cached       INTEGER NOT NULL DEFAULT 0,
	architecture TEXT NOT NULL,
	type         TEXT NOT NULL DEFAULT 'container',
	properties   TEXT NOT NULL DEFAULT '{}',
	created_at   INTEGER NOT NULL DEFAULT 0,
	expires_at   INTEGER NOT NULL DEFAULT 0,
	uploaded_at  INTEGER NOT NULL,
	last_used_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE images_aliases (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	image_id    INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
	description TEXT NOT NULL DEFAULT ''
);
INSERT INTO profiles (name, description) VALUES ('default', 'Default Cell profile');
`,
	// 2: host-local pool config (source, size) apart from the shared one.
	`
CREATE TABLE storage_pools_local (
	pool_id INTEGER PRIMARY KEY REFERENCES storage_pools(id) ON DELETE CASCADE,
	config  TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO storage_pools_local (pool_id, config)
	SELECT id, json_object('source', json_extract(config, '$.source')) FROM storage_pools
	WHERE json_extract(config, '$.source') IS NOT NULL;
UPDATE storage_pools SET config = json_remove(config, '$.source', '$.size');
`,
	// 3: instance snapshots, with the instance's config as it was.
	`
CREATE TABLE instances_snapshots (
	id           INTEGER PRIMARY KEY,
	instance_id  INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	description  TEXT NOT NULL DEFAULT '',
	architecture TEXT NOT NULL DEFAULT '',
	ephemeral    INTEGER NOT NULL DEFAULT 0,
	stateful     INTEGER NOT NULL DEFAULT 0,
	config       TEXT NOT NULL DEFAULT '{}',
	devices      TEXT NOT NULL DEFAULT '{}',
	profiles     TEXT NOT NULL DEFAULT '[]',
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL DEFAULT 0,
	-- ready is 0 while the snapshot is being made or deleted: such a row is
	-- not shown, and a daemon that restarts after a crash removes it.
	ready        INTEGER NOT NULL DEFAULT 0,
	UNIQUE (instance_id, name)
);
`,
	// 4: where a downloaded image came from (for refresh and auto-update).
	`
CREATE TABLE images_source (
	image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
	server   TEXT NOT NULL,
	protocol TEXT NOT NULL,
	alias    TEXT NOT NULL DEFAULT ''
);
`,
	// 5: custom storage volumes.
	`
CREATE TABLE storage_volumes (
	id          INTEGER PRIMARY KEY,
	pool_id     INTEGER NOT NULL REFERENCES storage_pools(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	config      TEXT NOT NULL DEFAULT '{}',
	created_at  INTEGER NOT NULL,
	-- ready is 0 while the volume is being made or deleted: such a row is
	-- not shown, and a daemon that restarts after a crash removes it.
	ready       INTEGER NOT NULL DEFAULT 0,
	UNIQUE (pool_id, name)
);
CREATE TABLE storage_volumes_snapshots (
	id          INTEGER PRIMARY KEY,
	volume_id   INTEGER NOT NULL REFERENCES storage_volumes(id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	ready       INTEGER NOT NULL DEFAULT 0,
	UNIQUE (volume_id, name)
);
`,
	// 6: the TLS trust store (client certificates allowed on the HTTPS
	// listener) and pending join tokens (only a hash of each secret is kept).
	`
CREATE TABLE certificates (
	id          INTEGER PRIMARY KEY,
	fingerprint TEXT NOT NULL UNIQUE,
	type        TEXT NOT NULL DEFAULT 'client',
	name        TEXT NOT NULL,
	certificate TEXT NOT NULL,
	restricted  INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL
);
CREATE TABLE certificate_tokens (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL,
	secret_hash TEXT NOT NULL UNIQUE,
	restricted  INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL DEFAULT 0
);
`,
	// 7: managed networks. ready is 0 while the bridge is being made or
	// deleted: a daemon that restarts after a crash finishes the job.
	`
CREATE TABLE networks (
	id          INTEGER PRIMARY KEY,
	name        TEXT NOT NULL UNIQUE,
	description TEXT NOT NULL DEFAULT '',
	type        TEXT NOT NULL DEFAULT 'bridge',
	config      TEXT NOT NULL DEFAULT '{}',
	created_at  INTEGER NOT NULL,
	ready       INTEGER NOT NULL DEFAULT 0
);
`,
	// 8: the certificate an LXD-protocol image server presented (pinned),
	// so that auto-update can go back to it.
	`ALTER TABLE images_source ADD COLUMN certificate TEXT NOT NULL DEFAULT '';`,
	// 9: the operations in flight (host-local, like the daemon that runs
	// them). A row lives while its operation runs; rows a crash leaves are
	// reported as failed operations by the next start.
	`
CREATE TABLE operations (
	id          TEXT PRIMARY KEY,
	class       TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	resources   TEXT NOT NULL DEFAULT '{}',
	created_at  INTEGER NOT NULL
);
`,
}

func (d *DB) migrate(ctx context.Context) error {
	return d.Tx(ctx, func(tx *sql.Tx) error {
		var version int
		if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("database schema version %d is newer than this celld (%d): refusing to downgrade", version, len(migrations))
		}
		for i := version; i < len(migrations); i++ {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return fmt.Errorf("apply schema migration %d: %w", i+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		return nil
	})
}
