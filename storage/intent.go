package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A pool's creation touches the disk (a loop file, a filesystem, a mount,
// a zpool) before the daemon records the pool in its database. So that a
// crash in between leaves nothing behind, Create first writes an intent
// file next to the pools' directories (.creating-NAME.json: the driver
// and the config asked for); the daemon removes it with Created once the
// pool is recorded. At the next start, Recover finds the intents left:
// a pool the database has is kept, one it lacks is abandoned, which
// removes whatever that creation can have made.

type intent struct {
	Driver string            `json:"driver"`
	Config map[string]string `json:"config"`
}

func intentPath(p Pool) string {
	return filepath.Join(filepath.Dir(p.Dir), ".creating-"+p.Name+".json")
}

// writeIntent records that pool p is being created with driver, durably
// (the file and its directory synced) before anything else is done.
func writeIntent(p Pool, driver string) error {
	data, err := json.Marshal(intent{Driver: driver, Config: p.Config})
	if err != nil {
		return err
	}
	path := intentPath(p)
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return fmt.Errorf("record pool creation: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("record pool creation: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("record pool creation: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

// Created drops the intent of pool p's creation: the pool is recorded (or
// its creation failed and was undone).
func Created(p Pool) {
	if err := os.Remove(intentPath(p)); err != nil && !errors.Is(err, os.ErrNotExist) {
		slog.Warn("remove pool creation intent", "pool", p.Name, "err", err)
	}
}

// Recover finishes the pool creations a crash interrupted, in poolsDir
// (the parent of every pool's Dir): those known (recorded in the
// database) are kept, the others abandoned. describe gives the Pool of a
// name and config as the daemon describes pools to drivers.
func Recover(ctx context.Context, poolsDir string, describe func(name string, config map[string]string) Pool, known func(name string) bool) {
	paths, err := filepath.Glob(filepath.Join(poolsDir, ".creating-*.json"))
	if err != nil {
		slog.Error("list interrupted pool creations", "err", err)
		return
	}
	for _, path := range paths {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), ".creating-"), ".json")
		data, err := os.ReadFile(path)
		var in intent
		if err == nil {
			err = json.Unmarshal(data, &in)
		}
		if err != nil {
			slog.Error("read interrupted pool creation", "path", path, "err", err)
			continue
		}
		p := describe(name, in.Config)
		if !known(name) {
			if err := abandon(ctx, in.Driver, p); err != nil {
				slog.Error("remove what an interrupted pool creation made", "pool", name, "err", err)
				continue
			}
			slog.Info("removed an interrupted pool creation", "pool", name, "driver", in.Driver)
		}
		Created(p)
	}
}

// abandon removes whatever creating pool p can have made, from any point
// of Create; what was not made is not an error.
func abandon(ctx context.Context, driver string, p Pool) error {
	source := p.Config["source"]
	switch driver {
	case "dir":
		if source == "" {
			return os.RemoveAll(p.Dir)
		}
		return removeEmpty(source, "images", "containers", "snapshots")
	case "btrfs":
		if mounted, err := isMountPoint(p.Dir); err == nil && mounted {
			if err := unix.Unmount(p.Dir, 0); err != nil {
				return fmt.Errorf("unmount %s: %w", p.Dir, err)
			}
		}
		if st, err := os.Stat(source); err == nil && st.IsDir() {
			return removeEmpty(source, "images", "containers", "snapshots")
		}
		if source == "" {
			file := filepath.Join(p.DisksDir, p.Name+".img")
			if err := DetachLoops(ctx, file); err != nil {
				return err
			}
			if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove loop file: %w", err)
			}
		}
		if err := removeEmpty(p.Dir, "images", "containers", "snapshots"); err != nil {
			return err
		}
		if err := os.Remove(p.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove pool directory: %w", err)
		}
		return nil
	}
	if r, ok := registered[driver]; ok && r.Abandon != nil {
		return r.Abandon(ctx, p)
	}
	return nil
}

// removeEmpty removes the directories subs under dir that are empty (a
// pool's layout in a directory a user gave: the directory stays).
func removeEmpty(dir string, subs ...string) error {
	for _, sub := range subs {
		if err := os.Remove(filepath.Join(dir, sub)); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return fmt.Errorf("remove %s: %w", sub, err)
		}
	}
	return nil
}
