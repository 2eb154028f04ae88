// Package daemon is celld: the REST API, the instance lifecycle and the
// background tasks, built on the database, the liblxc runtime, the image
// store and the storage pools.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"cell/daemon/db"
	"cell/daemon/events"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/images"
	"cell/network"
	"cell/shared/idmap"
	"cell/storage"
	"cell/zfs"
)

// Version is celld's version, reported as server_version.
const Version = "0.1.0"

// Daemon is a running celld.
type Daemon struct {
	dir     string
	db      *db.DB
	events  *events.Hub
	ops     *operations.Registry
	images  *images.Store
	runtime *liblxc.Runtime
	idmap   idmap.Map

	poolsMu sync.RWMutex
	pools   map[string]storage.Driver

	locks keyedMutex

	// networks runs the managed bridges and their dnsmasq (networks.go).
	networks *network.Manager

	// proxies are the running proxy devices (devices_proxy.go).
	proxies proxySet

	server       *http.Server
	listener     net.Listener
	shutdownCh   chan struct{}
	shutdownOnce sync.Once

	// tls is the HTTPS API: key pair, listener, trust store (https.go).
	tls *tlsState

	// ctx ends when the daemon stops; background work watches it.
	ctx    context.Context
	cancel context.CancelFunc
}

// Options configure a daemon.
type Options struct {
	// Dir is CELL_DIR: database, socket, pools, images, logs.
	Dir string
	// NoDefaultNetwork skips creating cellbr0 on first start.
	NoDefaultNetwork bool
}

// New opens the daemon's state in dir (creating it on first start),
// reconciles it with what is on disk after a crash, and returns a daemon
// ready to Serve.
// The zfs driver lives in its own package (storage must not import it).
func init() { zfs.Register() }

func New(ctx context.Context, opts Options) (*Daemon, error) {
	if err := os.MkdirAll(opts.Dir, 0o711); err != nil {
		return nil, fmt.Errorf("create %s: %w", opts.Dir, err)
	}
	if err := checkTraversable(opts.Dir); err != nil {
		return nil, err
	}
	m, err := idmap.Default()
	if err != nil {
		return nil, fmt.Errorf("read the host's id allowance: %w", err)
	}
	_, statErr := os.Stat(filepath.Join(opts.Dir, "cell.db"))
	firstStart := errors.Is(statErr, os.ErrNotExist)
	database, err := db.Open(ctx, filepath.Join(opts.Dir, "cell.db"))
	if err != nil {
		return nil, err
	}
	store, err := images.NewStore(filepath.Join(opts.Dir, "images"))
	if err != nil {
		database.Close()
		return nil, fmt.Errorf("open image store: %w", err)
	}
	rt, err := liblxc.New(filepath.Join(opts.Dir, "lxc"), filepath.Join(opts.Dir, "logs"))
	if err != nil {
		database.Close()
		return nil, err
	}
	hub := events.NewHub()
	// The daemon's log also goes to /1.0/events listeners of type logging.
	slog.SetDefault(slog.New(events.NewLogHandler(hub, slog.Default().Handler())))
	dctx, cancel := context.WithCancel(context.Background())
	d := &Daemon{
		dir: opts.Dir, db: database, events: hub, ops: operations.NewRegistry(hub), images: store,
		runtime: rt, idmap: m, pools: map[string]storage.Driver{}, ctx: dctx, cancel: cancel,
		shutdownCh: make(chan struct{}),
	}
	if err := d.initStorage(ctx); err != nil {
		d.close()
		return nil, err
	}
	if err := d.recover(ctx); err != nil {
		d.close()
		return nil, err
	}
	d.recoverVolumes(ctx)
	// Before autostart: instances' nics need their bridges.
	if err := d.initNetworks(ctx, firstStart && !opts.NoDefaultNetwork); err != nil {
		d.close()
		return nil, err
	}
	if err := d.initTLS(ctx); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) close() {
	d.cancel()
	d.db.Close()
}

// initStorage opens every pool, creating the "default" dir pool on first
// start. A pool that cannot be opened (its disk is gone) is logged and left
// unavailable; the daemon still starts.
func (d *Daemon) initStorage(ctx context.Context) error {
	pools, err := d.db.StoragePools(ctx)
	if err != nil {
		return err
	}
	if len(pools) == 0 {
		p := db.StoragePool{Name: "default", Driver: "dir", Description: "Default dir pool",
			Config: map[string]string{}, Local: map[string]string{"source": d.poolDir("default")}}
		if err := d.db.CreateStoragePool(ctx, p); err != nil {
			return err
		}
		pools = append(pools, p)
		// New instances get their root disk from the default pool, as with
		// LXD after `lxd init`.
		prof, err := d.db.Profile(ctx, "default")
		if err != nil {
			return err
		}
		if _, ok := prof.Devices["root"]; !ok {
			prof.Devices["root"] = map[string]string{"type": "disk", "path": "/", "pool": "default"}
			if err := d.db.UpdateProfile(ctx, prof); err != nil {
				return err
			}
		}
	}
	// Pool creations a crash interrupted: kept if recorded, else undone.
	storage.Recover(ctx, filepath.Join(d.dir, "storage-pools"), d.storagePool, func(name string) bool {
		for _, p := range pools {
			if p.Name == name {
				return true
			}
		}
		return false
	})
	for _, p := range pools {
		drv, err := storage.Open(ctx, p.Driver, d.storagePool(p.Name, poolConfig(p)))
		if err != nil {
			slog.Error("storage pool unavailable", "pool", p.Name, "err", err)
			continue
		}
		d.pools[p.Name] = drv
	}
	return nil
}

// poolDir is a pool's own directory: its mount point, or a dir pool's
// default source.
func (d *Daemon) poolDir(name string) string { return filepath.Join(d.dir, "storage-pools", name) }

// storagePool describes a pool to its driver.
func (d *Daemon) storagePool(name string, config map[string]string) storage.Pool {
	return storage.Pool{Name: name, Config: config, Dir: d.poolDir(name), DisksDir: filepath.Join(d.dir, "disks")}
}

func (d *Daemon) pool(name string) (storage.Driver, error) {
	d.poolsMu.RLock()
	defer d.poolsMu.RUnlock()
	p, ok := d.pools[name]
	if !ok {
		return nil, notFound("storage pool %q not found", name)
	}
	return p, nil
}

// recover makes the database and the disk agree after a crash. Creation
// and deletion both keep the instance's row not-ready while they touch the
// disk, so a row that is not ready is exactly an interrupted creation or
// deletion: finish the job by removing its volume and row. A volume with
// no row at all was not made by celld: it is reported, never deleted.
func (d *Daemon) recover(ctx context.Context) error {
	unfinished, err := d.db.UnfinishedInstances(ctx)
	if err != nil {
		return err
	}
	for _, inst := range unfinished {
		slog.Warn("removing instance whose creation was interrupted", "instance", inst.Name)
		if p, err := d.pool(inst.Pool); err == nil {
			if err := p.DeleteInstance(ctx, inst.Name); err != nil {
				return err
			}
		}
		_ = d.runtime.Remove(inst.Name)
		if err := d.db.DeleteInstance(ctx, inst.ID); err != nil {
			return err
		}
	}
	if err := d.recoverSnapshots(ctx); err != nil {
		return err
	}
	if err := d.recoverImages(ctx); err != nil {
		return err
	}
	if err := d.recoverRenames(ctx); err != nil {
		return err
	}
	known := map[string]map[string]bool{}
	list, err := d.db.Instances(ctx)
	if err != nil {
		return err
	}
	for _, inst := range list {
		if known[inst.Pool] == nil {
			known[inst.Pool] = map[string]bool{}
		}
		known[inst.Pool][inst.Name] = true
	}
	for name, p := range d.pools {
		vols, err := p.Instances()
		if err != nil {
			return err
		}
		for _, v := range vols {
			if !known[name][v] {
				slog.Warn("instance volume without an instance; leaving it alone", "pool", name, "volume", v)
			}
		}
	}
	return nil
}

// SocketPath is the unix socket the API listens on.
func (d *Daemon) SocketPath() string { return filepath.Join(d.dir, "unix.socket") }

// Serve listens on the unix socket and serves the API until Stop.
func (d *Daemon) Serve() error {
	path := d.SocketPath()
	// A socket left by a killed daemon would make Listen fail.
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return fmt.Errorf("another celld is already listening on %s", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return fmt.Errorf("chmod socket: %w", err)
	}
	d.listener = l
	d.server = &http.Server{Handler: d.router(), ReadHeaderTimeout: 30 * time.Second}
	// Before autostart and the API: a running instance's proxies listen
	// again before anything can change its devices.
	d.restoreProxies(d.ctx)
	d.startHTTPS(d.ctx)
	go d.autostart(d.ctx)
	go d.snapshotTask(d.ctx)
	go d.imageTask(d.ctx)
	slog.Info("celld ready", "dir", d.dir, "socket", path)
	err = d.server.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Stop stops serving and closes the database; containers keep running
// (that is how celld upgrades without disturbing them).
func (d *Daemon) Stop(ctx context.Context) error {
	d.cancel()
	var err error
	if d.server != nil {
		// Hijacked websockets (exec, events) are not waited for.
		err = d.server.Shutdown(ctx)
	}
	d.stopHTTPS(ctx)
	d.db.Close()
	return err
}

// keyedMutex serialises changes to one instance (or image) by name.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// Lock locks key and returns its unlock function.
func (k *keyedMutex) Lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

// recoverImages removes image files that have no database row: an upload
// that the daemon died in the middle of recording.
func (d *Daemon) recoverImages(ctx context.Context) error {
	rows, err := d.db.Images(ctx)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, img := range rows {
		known[img.Fingerprint] = true
	}
	stored, err := d.images.Fingerprints()
	if err != nil {
		return err
	}
	for _, fp := range stored {
		if !known[fp] {
			slog.Warn("removing image whose import was interrupted", "fingerprint", fp)
			if err := d.images.Delete(fp); err != nil {
				return err
			}
		}
	}
	return nil
}

// recoverSnapshots removes the snapshots whose creation or deletion a
// crash interrupted: their rows are hidden, their volumes (whole, or a
// temporary the pool's opening already removed) go with them.
func (d *Daemon) recoverSnapshots(ctx context.Context) error {
	unfinished, err := d.db.UnfinishedSnapshots(ctx)
	if err != nil {
		return err
	}
	for _, s := range unfinished {
		slog.Warn("removing snapshot whose creation or deletion was interrupted", "instance", s.Instance, "snapshot", s.Name)
		if p, err := d.pool(s.Pool); err == nil {
			if err := p.DeleteSnapshot(ctx, s.Instance, s.Name); err != nil {
				return err
			}
		}
		if err := d.db.DeleteSnapshot(ctx, s.ID); err != nil {
			return err
		}
	}
	return nil
}

// recoverRenames finishes renames a crash interrupted: the row carries the
// old name in volatile.rename_from until the volume has moved too.
func (d *Daemon) recoverRenames(ctx context.Context) error {
	rows, err := d.db.Instances(ctx)
	if err != nil {
		return err
	}
	for _, row := range rows {
		old := row.Config[keyRenameFrom]
		if old == "" {
			continue
		}
		p, err := d.pool(row.Pool)
		if err != nil {
			slog.Warn("cannot finish interrupted rename: pool unavailable", "instance", row.Name, "pool", row.Pool)
			continue
		}
		if old != row.Name {
			if _, err := os.Stat(p.InstancePath(row.Name)); errors.Is(err, os.ErrNotExist) {
				slog.Warn("finishing interrupted rename", "from", old, "to", row.Name)
				if err := p.RenameInstance(ctx, old, row.Name); err != nil {
					return err
				}
			}
			_ = d.runtime.Rename(old, row.Name)
		}
		if err := d.db.SetInstanceConfig(ctx, row.ID, map[string]string{keyRenameFrom: ""}); err != nil {
			return err
		}
	}
	for _, row := range rows {
		if err := d.recoverSnapshotRename(ctx, row); err != nil {
			return err
		}
	}
	return nil
}

// recoverSnapshotRename finishes a snapshot rename a crash interrupted:
// the instance carries "OLD/NEW" in volatile.snapshot_rename until both the
// row and the snapshot on disk have the new name.
func (d *Daemon) recoverSnapshotRename(ctx context.Context, row db.Instance) error {
	oldName, newName, ok := strings.Cut(row.Config[keySnapshotRename], "/")
	if !ok {
		return nil
	}
	p, err := d.pool(row.Pool)
	if err != nil {
		slog.Warn("cannot finish interrupted snapshot rename: pool unavailable", "instance", row.Name, "pool", row.Pool)
		return nil
	}
	slog.Warn("finishing interrupted snapshot rename", "instance", row.Name, "from", oldName, "to", newName)
	if s, err := d.db.Snapshot(ctx, row.ID, oldName); err == nil {
		if err := d.db.RenameSnapshot(ctx, s.ID, newName); err != nil {
			return err
		}
	}
	if _, err := os.Stat(p.SnapshotPath(row.Name, newName)); errors.Is(err, os.ErrNotExist) {
		if err := p.RenameSnapshot(ctx, row.Name, oldName, newName); err != nil {
			return err
		}
	}
	return d.db.SetInstanceConfig(ctx, row.ID, map[string]string{keySnapshotRename: ""})
}

// checkTraversable makes sure an unprivileged container's root, which is
// "other" to the host, can reach its rootfs under dir: liblxc otherwise
// fails every start with a permission error deep in its log. celld's own
// dir is fixed (LXD keeps its dir 0711 too); a parent that is closed is the
// administrator's choice (privileged containers still work), so it is
// only warned about.
func checkTraversable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("stat %s: %w", abs, err)
	}
	if fi.Mode().Perm()&0o001 == 0 {
		if err := os.Chmod(abs, fi.Mode().Perm()|0o011); err != nil {
			return fmt.Errorf("make %s traversable for containers: %w", abs, err)
		}
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			slog.Warn("a parent of the data dir is not searchable by other users: unprivileged containers will fail to start (privileged ones work); chmod o+x it or choose another CELL_DIR",
				"dir", p, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "data_dir", abs)
			return nil
		}
		if p == "/" {
			return nil
		}
	}
}
