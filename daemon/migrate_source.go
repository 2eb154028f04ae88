package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/migration"
	"cell/shared/api"
	"cell/storage"
)

// migrationConnectTimeout bounds how long a migration operation waits for
// its peer to connect to its websockets.
const migrationConnectTimeout = 30 * time.Second

// migrationSockets are the websockets of one side of a migration
// (control, fs, and criu when live), each reached with its own secret.
type migrationSockets struct {
	secrets map[string]string

	mu        sync.Mutex
	conns     map[string]*websocket.Conn
	connected chan struct{} // closed once every websocket is connected
	closed    bool
}

func newMigrationSockets(names ...string) *migrationSockets {
	s := &migrationSockets{secrets: map[string]string{}, conns: map[string]*websocket.Conn{}, connected: make(chan struct{})}
	for _, n := range names {
		s.secrets[n] = newSecret()
	}
	return s
}

// Secrets implements operations.Websockets.
func (s *migrationSockets) Secrets() map[string]string { return s.secrets }

// SecretsAsMetadata tells the operation to list the secrets directly in
// its metadata, as LXD's migration operations do (its clients read them
// from there), rather than under "fds".
func (s *migrationSockets) SecretsAsMetadata() {}

// Connect implements operations.Websockets.
func (s *migrationSockets) Connect(w http.ResponseWriter, r *http.Request, name string) error {
	s.mu.Lock()
	_, dup := s.conns[name]
	s.mu.Unlock()
	if dup {
		return forbidden("websocket %s is already connected", name)
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // Upgrade has answered the client already.
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.conns[name]; dup || s.closed {
		conn.Close()
		return nil
	}
	s.conns[name] = conn
	if len(s.conns) == len(s.secrets) {
		close(s.connected)
	}
	return nil
}

// wait waits until every websocket is connected.
func (s *migrationSockets) wait(ctx context.Context) error {
	select {
	case <-s.connected:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(migrationConnectTimeout):
		return fmt.Errorf("the migration target did not connect within %s", migrationConnectTimeout)
	}
}

func (s *migrationSockets) conn(name string) *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[name]
}

// close closes every websocket: whatever blocks on one is released.
func (s *migrationSockets) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
}

// migrateSource answers POST /1.0/instances/NAME with migration true: an
// operation whose websockets the target connects to (pull mode), or,
// with a target given, that connects to the target's (push mode), to send
// the instance. The source instance is only read (a live migration stops
// it once the target runs it).
func (d *Daemon) migrateSource(w http.ResponseWriter, r *http.Request, name string, req api.InstancePost) error {
	inst, err := d.loadInstance(r.Context(), name)
	if err != nil {
		return err
	}
	names := []string{"control", "fs"}
	if req.Live {
		if d.runtimeState(name) != liblxc.Running {
			return badRequest("instance %q is not running: migrate it without live", name)
		}
		names = append(names, "criu")
	}
	instanceOnly := req.InstanceOnly || req.ContainerOnly
	spec := operations.Spec{Description: "Migrating instance", Resources: instanceResources(name), MayCancel: true}
	// Pull: the target connects to this operation's websockets. Push
	// (a target given): celld connects to the target's.
	var sockets *migrationSockets
	var peer migrationPeer
	if req.Target != nil {
		if peer, err = parseMigrationPeer(req.Target.Operation, req.Target.Certificate, req.Target.Websockets, names); err != nil {
			return err
		}
	} else {
		sockets = newMigrationSockets(names...)
		spec.Class, spec.Websockets = api.OperationClassWebsocket, sockets
	}
	spec.Run = func(ctx context.Context, op *operations.Operation) error {
		sockets := sockets
		if req.Target != nil {
			var err error
			if sockets, err = d.dialSockets(ctx, peer, names); err != nil {
				return err
			}
		}
		defer sockets.close()
		err := d.sendInstance(ctx, op, inst, sockets, instanceOnly, req.Live)
		if err != nil {
			slog.Error("migrate instance (source)", "instance", name, "err", err)
		}
		return err
	}
	return asyncResponse(w, d.ops.Start(r.Context(), spec))
}

// sendInstance runs the source side of the protocol: the header, the
// target's answer, the filesystem of each snapshot then of the instance,
// and the target's final word.
func (d *Daemon) sendInstance(ctx context.Context, op *operations.Operation, inst *instance, sockets *migrationSockets, instanceOnly, live bool) error {
	if err := sockets.wait(ctx); err != nil {
		return err
	}
	if !live {
		// Not deleted, renamed or restored while its files are read. (A
		// live migration stops the instance itself, which takes the lock.)
		defer d.locks.Lock("instance/" + inst.Name)()
	}
	control := sockets.conn("control")
	var snaps []db.Snapshot
	if !instanceOnly {
		var err error
		if snaps, err = d.db.Snapshots(ctx, inst.ID); err != nil {
			return err
		}
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	// The best method this pool has; the target answers with what it
	// takes (rsync when its pool is of another kind).
	offer := migration.MigrationFSType_RSYNC
	if pool.Name() == "btrfs" {
		offer = migration.MigrationFSType_BTRFS
	}
	header := &migration.MigrationHeader{
		Fs:            offer.Enum(),
		Criu:          migration.CRIUType_NONE.Enum(),
		RsyncFeatures: &migration.RsyncFeatures{Xattrs: proto.Bool(true), Delete: proto.Bool(true), Compress: proto.Bool(false)},
	}
	if live {
		header.Criu = migration.CRIUType_CRIU_RSYNC.Enum()
	}
	for _, s := range snaps {
		header.SnapshotNames = append(header.SnapshotNames, s.Name)
		header.Snapshots = append(header.Snapshots, snapshotToProto(s))
	}
	if err := migration.SendControl(control, header); err != nil {
		return err
	}
	var answer migration.MigrationHeader
	if err := migration.RecvControl(control, &answer); err != nil {
		return fmt.Errorf("migration target: %w", err)
	}
	if fs := answer.GetFs(); fs != migration.MigrationFSType_RSYNC && fs != offer {
		return fmt.Errorf("migration target asked for a %s transfer: %s or rsync were offered", fs, offer)
	}
	opts := migration.RsyncOptionsFrom(answer.GetRsyncFeatures(), false)

	// From now on the target reports a failure on the control websocket
	// at any time: watch for it while sending, and stop sending then.
	result := make(chan error, 1)
	go func() {
		var msg migration.MigrationControl
		if err := migration.RecvControl(control, &msg); err != nil {
			result <- fmt.Errorf("migration target: %w", err)
			return
		}
		if !msg.GetSuccess() {
			result <- fmt.Errorf("migration target failed: %s", msg.GetMessage())
			return
		}
		result <- nil
	}()
	var sendErr error
	if answer.GetFs() == migration.MigrationFSType_BTRFS {
		sendErr = sendBtrfs(ctx, pool, inst.Name, snaps, migration.NewStream(sockets.conn("fs")))
	} else {
		sendErr = sendFilesystems(ctx, pool, inst.Name, snaps, migration.NewStream(sockets.conn("fs")), opts)
	}
	var frozenAt time.Time
	if sendErr == nil && live {
		frozenAt = time.Now()
		sendErr = d.sendState(ctx, inst, pool, sockets, opts)
	}
	if sendErr != nil {
		sockets.close()
		if live && !frozenAt.IsZero() {
			d.resumeAfterFailedMigration(ctx, inst.Name)
		}
		if err := <-result; err != nil {
			// The target's reason says more than the broken stream.
			return errors.Join(err, sendErr)
		}
		return sendErr
	}
	select {
	case err := <-result:
		if live {
			if err != nil {
				d.resumeAfterFailedMigration(ctx, inst.Name)
				return err
			}
			// The target restored it before answering: it runs there.
			downtime := time.Since(frozenAt).Round(time.Millisecond)
			op.SetMetadata(map[string]any{"downtime": downtime.String()})
			slog.Info("live migration done", "instance", inst.Name, "downtime", downtime)
		}
		return err
	case <-ctx.Done():
		if live {
			d.resumeAfterFailedMigration(ctx, inst.Name)
		}
		return ctx.Err()
	}
}

// sendState ends a live migration's transfer: the instance is dumped
// (frozen, its state written into its volume, stopped), the volume's
// final changes follow on the filesystem websocket, and the checkpoint on
// the criu one.
func (d *Daemon) sendState(ctx context.Context, inst *instance, pool storage.Driver, sockets *migrationSockets, opts migration.RsyncOptions) error {
	if err := d.stopInstanceStateful(ctx, inst.Name); err != nil {
		return fmt.Errorf("checkpoint %s: %w", inst.Name, err)
	}
	if err := migration.RsyncSend(ctx, pool.InstancePath(inst.Name), migration.NewStream(sockets.conn("fs")), opts, nil); err != nil {
		return fmt.Errorf("send the final changes of %s: %w", inst.Name, err)
	}
	dir, err := d.stateDir(inst)
	if err != nil {
		return err
	}
	if err := migration.RsyncSend(ctx, dir, migration.NewStream(sockets.conn("criu")), opts, nil); err != nil {
		return fmt.Errorf("send the checkpoint of %s: %w", inst.Name, err)
	}
	return nil
}

// resumeAfterFailedMigration restarts an instance a failed live
// migration stopped, from the checkpoint it left: the source keeps
// running it.
func (d *Daemon) resumeAfterFailedMigration(ctx context.Context, name string) {
	ctx = context.WithoutCancel(ctx)
	if d.runtimeState(name) != liblxc.Stopped {
		return
	}
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		slog.Error("resume after a failed live migration", "instance", name, "err", err)
		return
	}
	if err := d.startInstanceState(ctx, name, inst.Stateful); err != nil {
		slog.Error("resume after a failed live migration", "instance", name, "err", err)
		return
	}
	slog.Info("resumed after a failed live migration", "instance", name)
}

// sendFilesystems sends the volume of each snapshot, oldest first, then
// the instance's, each as one rsync transfer.
func sendFilesystems(ctx context.Context, pool storage.Driver, name string, snaps []db.Snapshot, conn *migration.Stream, opts migration.RsyncOptions) error {
	for _, s := range snaps {
		if err := migration.RsyncSend(ctx, pool.SnapshotPath(name, s.Name), conn, opts, nil); err != nil {
			return fmt.Errorf("send snapshot %s: %w", s.Name, err)
		}
	}
	if err := migration.RsyncSend(ctx, pool.InstancePath(name), conn, opts, nil); err != nil {
		return fmt.Errorf("send instance %s: %w", name, err)
	}
	return nil
}

// btrfsMigrationVolume is the name of the read-only snapshot of the
// instance's volume that btrfs send needs; it is made next to the
// instance's snapshots (the same filesystem) and, on the target,
// received there too.
const btrfsMigrationVolume = ".migration"

// sendBtrfs sends the snapshots' subvolumes (read-only already), then a
// read-only snapshot of the instance's, each from the one before.
func sendBtrfs(ctx context.Context, pool storage.Driver, name string, snaps []db.Snapshot, conn *migration.Stream) error {
	dir := filepath.Dir(pool.SnapshotPath(name, btrfsMigrationVolume))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("send instance %s: %w", name, err)
	}
	tmp := filepath.Join(dir, btrfsMigrationVolume)
	if out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "snapshot", "-r", pool.InstancePath(name), tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("snapshot %s to send it: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	defer func() {
		if out, err := exec.Command("btrfs", "subvolume", "delete", tmp).CombinedOutput(); err != nil {
			slog.Warn("delete the migration snapshot", "path", tmp, "err", err, "output", string(out))
		}
	}()
	var volumes []string
	for _, s := range snaps {
		volumes = append(volumes, pool.SnapshotPath(name, s.Name))
	}
	if err := migration.BtrfsSend(ctx, conn, append(volumes, tmp), "", nil); err != nil {
		return fmt.Errorf("send instance %s: %w", name, err)
	}
	return nil
}

// snapshotToProto describes a snapshot in the migration header.
func snapshotToProto(s db.Snapshot) *migration.Snapshot {
	out := &migration.Snapshot{
		Name: proto.String(s.Name), Profiles: s.Profiles, Ephemeral: proto.Bool(s.Ephemeral),
		Architecture: proto.Int32(0), Stateful: proto.Bool(s.Stateful),
		CreationDate: proto.Int64(s.CreatedAt.Unix()),
	}
	if !s.ExpiresAt.IsZero() {
		out.ExpiryDate = proto.Int64(s.ExpiresAt.Unix())
	}
	for k, v := range s.Config {
		out.LocalConfig = append(out.LocalConfig, &migration.Config{Key: proto.String(k), Value: proto.String(v)})
	}
	for name, dev := range s.Devices {
		pd := &migration.Device{Name: proto.String(name)}
		for k, v := range dev {
			pd.Config = append(pd.Config, &migration.Config{Key: proto.String(k), Value: proto.String(v)})
		}
		out.LocalDevices = append(out.LocalDevices, pd)
	}
	return out
}
