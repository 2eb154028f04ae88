package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/migration"
	"cell/shared/api"
	"cell/shared/tlsutil"
	"cell/storage"
)

// migrateTarget answers POST /1.0/instances with source type "migration":
// in pull mode celld connects to the source's migration operation, in
// push mode the source connects to this one, and the instance arrives. The instance row stays hidden until everything
// has arrived, so that a failure (or a crash, cleaned up at the next
// start) leaves nothing behind.
func (d *Daemon) migrateTarget(w http.ResponseWriter, r *http.Request, req api.InstancesPost) error {
	ctx := r.Context()
	src := req.Source
	if src.Mode != "" && src.Mode != "pull" && src.Mode != "push" {
		return badRequest("migration mode %q is not supported (use pull or push)", src.Mode)
	}
	if req.Name == "" {
		return badRequest("a migrated instance needs a name")
	}
	if err := config.ValidateInstanceName(req.Name); err != nil {
		return badRequest("%v", err)
	}
	if req.Type != "" && req.Type != "container" {
		return badRequest("instance type %q is not supported: celld runs containers only", req.Type)
	}
	needed := []string{"control", "fs"}
	if src.Live {
		needed = append(needed, "criu")
	}
	push := src.Mode == "push"
	var peer migrationPeer
	if !push {
		var err error
		if peer, err = parseMigrationPeer(src.Operation, src.Certificate, src.Websockets, needed); err != nil {
			return err
		}
	}

	// The instance's config as the client sent it (LXD's client sends the
	// source's): volatile keys are celld's own, except the ones that
	// describe the files that arrive.
	cfg := map[string]string{}
	for k, v := range req.Config {
		if !strings.HasPrefix(k, "volatile.") {
			cfg[k] = v
		}
	}
	if err := config.ValidateInstance(cfg); err != nil {
		return badRequest("%v", err)
	}
	for k, v := range req.Config {
		if strings.HasPrefix(k, "volatile.") && keepWhenCopying(k) {
			cfg[k] = v
		}
	}
	if req.Devices == nil {
		req.Devices = api.Devices{}
	}
	if err := validateDevices(req.Devices); err != nil {
		return err
	}
	arch := hostArchitecture()
	if req.Architecture != "" {
		var err error
		if arch, err = supportedArchitecture(req.Architecture); err != nil {
			return err
		}
	}
	if req.Profiles == nil {
		req.Profiles = []string{"default"}
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	for _, p := range req.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("profile %q does not exist", p)
		}
	}
	row := db.Instance{
		Name: req.Name, Type: "container", Architecture: arch, Ephemeral: req.Ephemeral,
		Description: req.Description, Config: cfg, Devices: maps.Clone(req.Devices), Profiles: req.Profiles,
		CreatedAt: time.Now().UTC(),
	}
	inst := expand(row, profiles)
	if err := checkDevicePaths(inst.expandedDevices); err != nil {
		return err
	}
	root := inst.expandedDevices["root"]
	if root["type"] != "disk" || root["path"] != "/" || root["pool"] == "" {
		return badRequest("instance has no root disk device: add one with a pool (for example to the default profile)")
	}
	pool, err := d.pool(root["pool"])
	if err != nil {
		return badRequest("root disk: %v", err)
	}
	if _, err := rootSize(root, pool.Name()); err != nil {
		return err
	}
	row.Pool = root["pool"]
	if err := d.checkNICs(ctx, inst.expandedDevices); err != nil {
		return err
	}

	id, err := d.db.CreateInstance(ctx, row)
	if errors.Is(err, db.ErrExists) {
		return conflict("an instance named %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	row.ID = id
	spec := operations.Spec{
		Description: "Creating instance",
		Resources:   instanceResources(req.Name),
		MayCancel:   true,
	}
	// Pull: celld connects to the source. Push: the source connects to
	// this operation's websockets.
	var sockets *migrationSockets
	if push {
		sockets = newMigrationSockets(needed...)
		spec.Class, spec.Websockets = api.OperationClassWebsocket, sockets
	}
	spec.Run = func(ctx context.Context, op *operations.Operation) error {
		var err error
		if push {
			err = sockets.wait(ctx)
		} else {
			sockets, err = d.dialSockets(ctx, peer, needed)
		}
		if err == nil {
			defer sockets.close()
			err = d.receiveInstance(ctx, op, row, sockets, src.Live)
		}
		if err != nil {
			slog.Error("migrate instance (target)", "instance", row.Name, "mode", src.Mode, "err", err)
			d.removeNICHostFiles(row.Name, nil)
			_ = pool.DeleteInstance(context.WithoutCancel(ctx), row.Name)
			_ = d.db.DeleteInstance(context.WithoutCancel(ctx), row.ID)
			return err
		}
		d.events.Lifecycle("instance-created", instanceURL(row.Name), nil)
		return nil
	}
	return asyncResponse(w, d.ops.Start(ctx, spec))
}

// migrationPeer is the other side's migration operation, which this side
// connects to: its URL, certificate and websocket secrets.
type migrationPeer struct {
	url     *url.URL
	cert    *x509.Certificate
	secrets map[string]string
}

// parseMigrationPeer checks what a client says of the peer's operation.
func parseMigrationPeer(operation, certPEM string, secrets map[string]string, needed []string) (migrationPeer, error) {
	u, err := url.Parse(operation)
	if err != nil || u.Scheme != "https" || u.Host == "" || !strings.HasPrefix(u.Path, "/1.0/operations/") {
		return migrationPeer{}, badRequest("migration operation %q must be https://HOST:PORT/1.0/operations/ID", operation)
	}
	for _, name := range needed {
		if secrets[name] == "" {
			return migrationPeer{}, badRequest("migration secrets must include %q", name)
		}
	}
	cert, err := tlsutil.ParseCertPEM([]byte(certPEM))
	if err != nil {
		return migrationPeer{}, badRequest("migration peer certificate: %v", err)
	}
	return migrationPeer{url: u, cert: cert, secrets: secrets}, nil
}

// dialSockets connects to the peer's websockets.
func (d *Daemon) dialSockets(ctx context.Context, peer migrationPeer, names []string) (*migrationSockets, error) {
	s := newMigrationSockets()
	for _, name := range names {
		conn, err := d.dialMigration(ctx, peer.url, peer.cert, peer.secrets[name])
		if err != nil {
			s.close()
			return nil, err
		}
		s.conns[name] = conn
	}
	close(s.connected)
	return s, nil
}

// dialMigration connects to one websocket of the peer's operation over
// HTTPS, presenting celld's own certificate and accepting only the
// peer's (the one the client vouched for).
func (d *Daemon) dialMigration(ctx context.Context, opURL *url.URL, pinned *x509.Certificate, secret string) (*websocket.Conn, error) {
	dialer := websocket.Dialer{TLSClientConfig: tlsutil.ClientConfig(&d.tls.cert, pinned), HandshakeTimeout: 30 * time.Second}
	u := url.URL{Scheme: "wss", Host: opURL.Host, Path: strings.TrimSuffix(opURL.Path, "/") + "/websocket",
		RawQuery: url.Values{"secret": {secret}}.Encode()}
	conn, resp, err := dialer.DialContext(ctx, u.String(), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("connect to the migration peer %s: %w", opURL.Host, err)
	}
	return conn, nil
}

// receiveInstance runs the target side of the protocol and makes the
// instance visible once everything has arrived.
func (d *Daemon) receiveInstance(ctx context.Context, op *operations.Operation, row db.Instance, sockets *migrationSockets, live bool) (err error) {
	pool, err := d.pool(row.Pool)
	if err != nil {
		return err
	}
	control, fs, criu := sockets.conn("control"), sockets.conn("fs"), sockets.conn("criu")
	// Whatever fails, the source hears why (and keeps its instance).
	defer func() {
		msg := &migration.MigrationControl{Success: proto.Bool(err == nil)}
		if err != nil {
			msg.Message = proto.String(err.Error())
		}
		_ = migration.SendControl(control, msg)
	}()
	// A cancelled operation or a stopping daemon ends the transfer.
	defer context.AfterFunc(ctx, sockets.close)()

	var header migration.MigrationHeader
	if err := migration.RecvControl(control, &header); err != nil {
		return fmt.Errorf("migration source: %w", err)
	}
	// btrfs send when both pools are btrfs; otherwise rsync, which every
	// pair of pools has in common.
	fsType := migration.MigrationFSType_RSYNC
	if header.GetFs() == migration.MigrationFSType_BTRFS && pool.Name() == "btrfs" {
		fsType = migration.MigrationFSType_BTRFS
	}
	features := header.GetRsyncFeatures()
	answer := &migration.MigrationHeader{
		Fs:            fsType.Enum(),
		Criu:          migration.CRIUType_NONE.Enum(),
		SnapshotNames: header.GetSnapshotNames(),
		Snapshots:     header.GetSnapshots(),
		RsyncFeatures: &migration.RsyncFeatures{Xattrs: proto.Bool(features.GetXattrs()), Delete: proto.Bool(features.GetDelete()), Compress: proto.Bool(features.GetCompress())},
	}
	if live {
		if header.GetCriu() != migration.CRIUType_CRIU_RSYNC {
			return fmt.Errorf("a live migration needs the source to send a CRIU checkpoint (it offers %s)", header.GetCriu())
		}
		answer.Criu = migration.CRIUType_CRIU_RSYNC.Enum()
	}
	if err := migration.SendControl(control, answer); err != nil {
		return err
	}
	opts := migration.RsyncOptionsFrom(answer.GetRsyncFeatures(), false)

	stream := migration.CountReads(migration.NewStream(fs), transferProgress(op, row.Name))
	if fsType == migration.MigrationFSType_BTRFS {
		if err := receiveBtrfs(ctx, pool, row.Name, stream, header.GetSnapshots()); err != nil {
			return err
		}
		for _, s := range header.GetSnapshots() {
			if err := d.receivedSnapshot(ctx, row, s, false); err != nil {
				return err
			}
		}
	} else if err := d.receiveRsync(ctx, pool, row, header.GetSnapshots(), stream, opts); err != nil {
		return err
	}
	if !live {
		return d.receivedInstance(ctx, row, pool)
	}
	// Live: the source's final changes, made after it froze, then its
	// checkpoint; restored here before the source hears of success.
	if err := migration.RsyncRecv(ctx, pool.InstancePath(row.Name), stream, opts); err != nil {
		return fmt.Errorf("receive the final changes of %s: %w", row.Name, err)
	}
	inst := &instance{Instance: row}
	stateDir, err := d.stateDir(inst)
	if err != nil {
		return err
	}
	if err := migration.RsyncRecv(ctx, stateDir, migration.NewStream(criu), opts); err != nil {
		return fmt.Errorf("receive the checkpoint of %s: %w", row.Name, err)
	}
	if err := d.receivedInstance(ctx, row, pool); err != nil {
		return err
	}
	if err := d.setStateful(ctx, row.Name, true); err != nil {
		return err
	}
	if err := d.startInstanceState(ctx, row.Name, true); err != nil {
		return fmt.Errorf("restore %s: %w", row.Name, err)
	}
	return nil
}

// receiveRsync receives each snapshot's files into the instance's volume,
// snapshotting it after each (any driver works, and rsync only sends what
// changed from one snapshot to the next), then the instance's files.
func (d *Daemon) receiveRsync(ctx context.Context, pool storage.Driver, row db.Instance, snaps []*migration.Snapshot, stream migration.Conn, opts migration.RsyncOptions) error {
	if err := pool.CreateInstanceEmpty(ctx, row.Name); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	dst := pool.InstancePath(row.Name)
	for _, s := range snaps {
		if err := migration.RsyncRecv(ctx, dst, stream, opts); err != nil {
			return fmt.Errorf("receive snapshot %s: %w", s.GetName(), err)
		}
		if err := d.receivedSnapshot(ctx, row, s, true); err != nil {
			return err
		}
	}
	if err := migration.RsyncRecv(ctx, dst, stream, opts); err != nil {
		return fmt.Errorf("receive instance %s: %w", row.Name, err)
	}
	return nil
}

// receivedInstance finishes an instance whose files have all arrived,
// and shows it.
func (d *Daemon) receivedInstance(ctx context.Context, row db.Instance, pool storage.Driver) error {
	if err := d.applyRootSize(ctx, row, pool, false); err != nil {
		return err
	}
	if err := d.db.SetInstanceReady(ctx, row.ID, true); err != nil {
		return err
	}
	// As for a create: the nic keys once the instance is visible.
	return d.createdNICs(ctx, row.Name)
}

// receivedSnapshot records snapshot s, and with snapshotVolume snapshots
// the volume as it now is into it: the row hidden while the disk is
// touched.
func (d *Daemon) receivedSnapshot(ctx context.Context, inst db.Instance, s *migration.Snapshot, snapshotVolume bool) error {
	if err := config.ValidateInstanceName(s.GetName()); err != nil {
		return fmt.Errorf("snapshot name: %w", err)
	}
	row := db.Snapshot{
		InstanceID: inst.ID, Name: s.GetName(), Architecture: inst.Architecture, Ephemeral: s.GetEphemeral(),
		Config: map[string]string{}, Devices: map[string]map[string]string{}, Profiles: s.GetProfiles(),
		CreatedAt: time.Unix(s.GetCreationDate(), 0).UTC(),
	}
	if s.GetCreationDate() == 0 {
		row.CreatedAt = time.Now().UTC()
	}
	if s.GetExpiryDate() > 0 {
		row.ExpiresAt = time.Unix(s.GetExpiryDate(), 0).UTC()
	}
	for _, c := range s.GetLocalConfig() {
		row.Config[c.GetKey()] = c.GetValue()
	}
	for _, dev := range s.GetLocalDevices() {
		m := map[string]string{}
		for _, c := range dev.GetConfig() {
			m[c.GetKey()] = c.GetValue()
		}
		row.Devices[dev.GetName()] = m
	}
	if row.Profiles == nil {
		row.Profiles = []string{}
	}
	id, err := d.db.CreateSnapshot(ctx, row)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", row.Name, err)
	}
	pool, err := d.pool(inst.Pool)
	if err != nil {
		return err
	}
	if snapshotVolume {
		if err := pool.CreateSnapshot(ctx, inst.Name, row.Name); err != nil {
			return fmt.Errorf("snapshot %s: %w", row.Name, err)
		}
	}
	return d.db.SetSnapshotReady(ctx, id, true)
}

// transferProgress reports the bytes received so far in the operation's
// metadata as "fs_progress", as LXD does (and as a number in
// "fs_progress_bytes", for a progress bar), at most once a second.
func transferProgress(op *operations.Operation, name string) *migration.Progress {
	var last time.Time
	return &migration.Progress{Report: func(total int64) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		op.SetMetadata(map[string]any{
			"fs_progress":       fmt.Sprintf("%s: %.2fMB", name, float64(total)/1e6),
			"fs_progress_bytes": total,
		})
	}}
}

// receiveBtrfs receives the subvolumes sendBtrfs sends: the snapshots
// land where the pool keeps them (named as on the source), then the
// instance's read-only copy, of which a writable snapshot becomes the
// instance's volume.
func receiveBtrfs(ctx context.Context, pool storage.Driver, name string, conn migration.Conn, snapshots []*migration.Snapshot) error {
	tmp := pool.SnapshotPath(name, btrfsMigrationVolume)
	dir := filepath.Dir(tmp)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("receive instance %s: %w", name, err)
	}
	for _, s := range snapshots {
		if err := config.ValidateInstanceName(s.GetName()); err != nil {
			return fmt.Errorf("snapshot name: %w", err)
		}
	}
	got, err := migration.BtrfsRecv(ctx, conn, dir, len(snapshots)+1)
	if err != nil {
		return fmt.Errorf("receive instance %s: %w", name, err)
	}
	// Each subvolume is named as the sender named it: it must be the one
	// the header announced, where the pool keeps it.
	for i, path := range got {
		want := tmp
		if i < len(snapshots) {
			want = pool.SnapshotPath(name, snapshots[i].GetName())
		}
		if path != want {
			return fmt.Errorf("receive instance %s: got subvolume %s, want %s", name, path, want)
		}
	}
	if out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "snapshot", tmp, pool.InstancePath(name)).CombinedOutput(); err != nil {
		return fmt.Errorf("receive instance %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.CommandContext(ctx, "btrfs", "subvolume", "delete", tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("receive instance %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
