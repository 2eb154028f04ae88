package daemon

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/shared/api"
)

// Backups are tarballs in LXD's layout, kept under DIR/backups/INSTANCE/:
//
//	backup/index.yaml            what is inside, and the instance's config
//	backup/container/...         the instance's volume (rootfs/, metadata.yaml)
//	backup/snapshots/NAME/...    each snapshot's volume
//
// NAME.tar.gz is the tarball and NAME.json its record (dates, options).
// Owners are stored as they are on disk, with the idmap they belong to
// (volatile.last_state.idmap) in the config: an import shifts them at its
// first start if it needs another map.

// backupIndex is backup/index.yaml.
type backupIndex struct {
	Name      string   `yaml:"name"`
	Backend   string   `yaml:"backend"`
	Pool      string   `yaml:"pool"`
	Snapshots []string `yaml:"snapshots,omitempty"`
	Optimized bool     `yaml:"optimized"`
	Type      string   `yaml:"type"`
	Config    struct {
		Container *api.Instance           `yaml:"container"`
		Snapshots []*api.InstanceSnapshot `yaml:"snapshots"`
	} `yaml:"config"`
}

func (d *Daemon) backupDir(inst string) string { return filepath.Join(d.dir, "backups", inst) }

// loadBackups lists an instance's backups, removing those that expired.
func (d *Daemon) loadBackups(inst string) ([]api.InstanceBackup, error) {
	entries, err := os.ReadDir(d.backupDir(inst))
	if errors.Is(err, os.ErrNotExist) {
		return []api.InstanceBackup{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	out := []api.InstanceBackup{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := d.loadBackup(inst, name)
		if err != nil {
			slog.Warn("unreadable backup record", "instance", inst, "backup", name, "err", err)
			continue
		}
		if !b.ExpiresAt.IsZero() && time.Now().After(b.ExpiresAt) {
			d.removeBackup(inst, name)
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b api.InstanceBackup) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

func (d *Daemon) loadBackup(inst, name string) (api.InstanceBackup, error) {
	var b api.InstanceBackup
	data, err := os.ReadFile(filepath.Join(d.backupDir(inst), name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return b, notFound("backup %q of instance %q not found", name, inst)
	}
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(data, &b)
}

func (d *Daemon) removeBackup(inst, name string) {
	for _, f := range []string{name + ".json", name + ".tar.gz"} {
		if err := os.Remove(filepath.Join(d.backupDir(inst), f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove backup", "instance", inst, "backup", name, "err", err)
		}
	}
}

// removeInstanceBackups drops every backup of a deleted instance.
func (d *Daemon) removeInstanceBackups(inst string) {
	if err := os.RemoveAll(d.backupDir(inst)); err != nil {
		slog.Warn("remove backups", "instance", inst, "err", err)
	}
}

func (d *Daemon) listBackups(w http.ResponseWriter, r *http.Request) error {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	list, err := d.loadBackups(inst.Name)
	if err != nil {
		return err
	}
	if recursion(r) > 0 {
		return syncResponse(w, list)
	}
	urls := []string{}
	for _, b := range list {
		urls = append(urls, instanceURL(inst.Name)+"/backups/"+b.Name)
	}
	return syncResponse(w, urls)
}

func (d *Daemon) getBackup(w http.ResponseWriter, r *http.Request) error {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	b, err := d.loadBackup(inst.Name, chi.URLParam(r, "backup"))
	if err != nil {
		return err
	}
	return syncResponse(w, b)
}

func (d *Daemon) deleteBackup(w http.ResponseWriter, r *http.Request) error {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	name := chi.URLParam(r, "backup")
	if _, err := d.loadBackup(inst.Name, name); err != nil {
		return err
	}
	d.removeBackup(inst.Name, name)
	return asyncResponse(w, d.ops.Start(r.Context(), operations.Spec{
		Description: "Deleting backup", Resources: instanceResources(inst.Name),
		Run: func(context.Context, *operations.Operation) error { return nil },
	}))
}

func (d *Daemon) exportBackup(w http.ResponseWriter, r *http.Request) error {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	name := chi.URLParam(r, "backup")
	if _, err := d.loadBackup(inst.Name, name); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(d.backupDir(inst.Name), name+".tar.gz"))
	if err != nil {
		return notFound("backup %q of instance %q has no tarball", name, inst.Name)
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+".tar.gz"))
	_, err = io.Copy(w, f)
	return err
}

// createBackup answers POST /1.0/instances/NAME/backups: an operation
// writes the tarball.
func (d *Daemon) createBackup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var req api.InstanceBackupsPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	inst, err := d.loadInstance(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	if req.OptimizedStorage {
		return badRequest("optimized storage backups are not supported yet: export without --optimized-storage")
	}
	if req.CompressionAlgorithm != "" && req.CompressionAlgorithm != "gzip" {
		return badRequest("compression algorithm %q is not supported (use gzip)", req.CompressionAlgorithm)
	}
	list, err := d.loadBackups(inst.Name)
	if err != nil {
		return err
	}
	if req.Name == "" {
		for i := 0; ; i++ {
			req.Name = fmt.Sprintf("backup%d", i)
			if !slices.ContainsFunc(list, func(b api.InstanceBackup) bool { return b.Name == req.Name }) {
				break
			}
		}
	}
	if err := config.ValidateEntityName("backup", req.Name); err != nil {
		return badRequest("%v", err)
	}
	if slices.ContainsFunc(list, func(b api.InstanceBackup) bool { return b.Name == req.Name }) {
		return conflict("instance %q already has a backup named %q", inst.Name, req.Name)
	}
	b := api.InstanceBackup{Name: req.Name, CreatedAt: time.Now().UTC(), ExpiresAt: req.ExpiresAt,
		InstanceOnly: req.InstanceOnly || req.ContainerOnly, ContainerOnly: req.InstanceOnly || req.ContainerOnly}
	resources := instanceResources(inst.Name)
	// LXD's client takes the backup's name from here, after this prefix.
	resources["backups"] = []string{"/1.0/backups/" + b.Name}
	return asyncResponse(w, d.ops.Start(ctx, operations.Spec{
		Description: "Backing up instance", Resources: resources,
		Run: func(ctx context.Context, op *operations.Operation) error {
			err := d.writeBackup(ctx, inst.Name, b)
			if err != nil {
				d.removeBackup(inst.Name, b.Name)
			}
			return err
		},
	}))
}

// writeBackup writes backup b of an instance: the tarball, then its record.
func (d *Daemon) writeBackup(ctx context.Context, name string, b api.InstanceBackup) error {
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	volume, pool, err := d.volumePath(inst)
	if err != nil {
		return err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	var snaps []db.Snapshot
	if !b.InstanceOnly {
		if snaps, err = d.db.Snapshots(ctx, inst.ID); err != nil {
			return err
		}
	}
	idx := backupIndex{Name: name, Backend: pool.Name(), Pool: inst.Pool, Type: "container"}
	ai := d.apiInstance(inst)
	idx.Config.Container = &ai
	for _, s := range snaps {
		as := d.apiSnapshot(s, profiles)
		idx.Snapshots = append(idx.Snapshots, s.Name)
		idx.Config.Snapshots = append(idx.Config.Snapshots, &as)
	}
	if err := os.MkdirAll(d.backupDir(name), 0o700); err != nil {
		return fmt.Errorf("create backup dir: %w", err)
	}
	final := filepath.Join(d.backupDir(name), b.Name+".tar.gz")
	f, err := os.CreateTemp(d.backupDir(name), ".tmp-")
	if err != nil {
		return fmt.Errorf("create backup file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	index, err := yaml.Marshal(idx)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "backup/index.yaml", Mode: 0o644, Size: int64(len(index)),
		ModTime: b.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(index); err != nil {
		return err
	}
	if err := writeTree(ctx, tw, volume, "backup/container"); err != nil {
		return err
	}
	for _, s := range snaps {
		if err := writeTree(ctx, tw, pool.SnapshotPath(name, s.Name), "backup/snapshots/"+s.Name); err != nil {
			return err
		}
	}
	if err := errors.Join(tw.Close(), gz.Close(), f.Sync()); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return fmt.Errorf("write backup: %w", err)
	}
	rec, err := json.Marshal(b)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d.backupDir(name), b.Name+".json"), rec, 0o600)
}

// writeTree adds the tree at root to the tarball under prefix, owners and
// modes as they are, never following a symlink; hard links stay links.
func writeTree(ctx context.Context, tw *tar.Writer, root, prefix string) error {
	links := map[[2]uint64]string{}
	return filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		target := ""
		if de.Type()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = path.Join(prefix, filepath.ToSlash(rel))
		hdr.Uname, hdr.Gname = "", ""
		if de.IsDir() {
			hdr.Name += "/"
		}
		st, _ := info.Sys().(*unix.Stat_t)
		if st != nil && info.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(hdr)
			}
			links[key] = hdr.Name
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		return nil
	})
}

// importBackup answers POST /1.0/instances with a backup tarball as the
// body (`lxc import`): the instance is made again, with its snapshots,
// under the name in the X-LXD-name header or the backup's own, on the
// pool in X-LXD-pool or the backup's (when this server has it) or the
// default profile's.
func (d *Daemon) importBackup(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	tmp, err := os.CreateTemp(d.dir, ".import-")
	if err != nil {
		return fmt.Errorf("store the uploaded backup: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, r.Body); err != nil {
		return badRequest("read the uploaded backup: %v", err)
	}
	idx, err := readBackupIndex(tmp)
	if err != nil {
		return badRequest("not a backup tarball: %v", err)
	}
	if idx.Optimized {
		return badRequest("optimized storage backups cannot be imported yet")
	}
	src := idx.Config.Container
	if src == nil {
		return badRequest("the backup's index.yaml has no instance config")
	}
	name := r.Header.Get("X-LXD-name")
	if name == "" {
		name = src.Name
	}
	if err := config.ValidateInstanceName(name); err != nil {
		return badRequest("%v", err)
	}
	cfg := map[string]string{}
	for k, v := range src.Config {
		if !strings.HasPrefix(k, "volatile.") || k == keyLastIdmap || k == keyBaseImage {
			cfg[k] = v
		}
	}
	if err := config.ValidateInstance(cfg); err != nil {
		return badRequest("backup config: %v", err)
	}
	if err := validateDevices(src.Devices); err != nil {
		return err
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		return err
	}
	for _, p := range src.Profiles {
		if _, ok := profiles[p]; !ok {
			return badRequest("the backup uses profile %q, which this server does not have", p)
		}
	}
	row := db.Instance{Name: name, Type: "container", Architecture: src.Architecture, Ephemeral: src.Ephemeral,
		Description: src.Description, Config: cfg, Devices: src.Devices, Profiles: src.Profiles, CreatedAt: src.CreatedAt}
	if row.Devices == nil {
		row.Devices = api.Devices{}
	}
	poolName := r.Header.Get("X-LXD-pool")
	if poolName == "" {
		if _, err := d.pool(idx.Pool); err == nil {
			poolName = idx.Pool
		} else {
			poolName = expand(row, profiles).expandedDevices["root"]["pool"]
		}
	}
	pool, err := d.pool(poolName)
	if err != nil {
		return badRequest("pool for the imported instance: %v", err)
	}
	if root := row.Devices["root"]; root != nil && root["pool"] != "" {
		root["pool"] = poolName
	}
	row.Pool = poolName
	id, err := d.db.CreateInstance(ctx, row)
	if errors.Is(err, db.ErrExists) {
		return conflict("an instance named %q already exists", name)
	}
	if err != nil {
		return err
	}
	row.ID = id
	keep = true
	return asyncResponse(w, d.ops.Start(ctx, operations.Spec{
		Description: "Importing instance", Resources: instanceResources(name),
		Run: func(ctx context.Context, op *operations.Operation) error {
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			err := d.restoreBackup(ctx, tmp, idx, row, poolName)
			if err != nil {
				slog.Error("import instance", "instance", name, "err", err)
				_ = pool.DeleteInstance(context.WithoutCancel(ctx), name)
				_ = d.db.DeleteInstance(context.WithoutCancel(ctx), id)
				return err
			}
			d.events.Lifecycle("instance-created", instanceURL(name), nil)
			return nil
		},
	}))
}

// restoreBackup fills an imported instance: each snapshot's content is
// extracted into the new volume and snapshotted, oldest first, then the
// instance's own content replaces it.
func (d *Daemon) restoreBackup(ctx context.Context, f *os.File, idx *backupIndex, row db.Instance, poolName string) error {
	unlock := d.locks.Lock("instance/" + row.Name)
	defer unlock()
	pool, err := d.pool(poolName)
	if err != nil {
		return err
	}
	if err := pool.CreateInstanceEmpty(ctx, row.Name); err != nil {
		return fmt.Errorf("create volume: %w", err)
	}
	volume := pool.InstancePath(row.Name)
	for _, s := range idx.Config.Snapshots {
		if err := validateSnapshotName(s.Name); err != nil {
			return badRequest("backup snapshot: %v", err)
		}
		if err := extractBackupTree(ctx, f, "backup/snapshots/"+s.Name, volume); err != nil {
			return err
		}
		snap := db.Snapshot{InstanceID: row.ID, Name: s.Name, Description: s.Description, Architecture: s.Architecture,
			Ephemeral: s.Ephemeral, Stateful: false, Config: s.Config, Devices: s.Devices, Profiles: s.Profiles,
			CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}
		if snap.Config == nil {
			snap.Config = map[string]string{}
		}
		if snap.Devices == nil {
			snap.Devices = api.Devices{}
		}
		sid, err := d.db.CreateSnapshot(ctx, snap)
		if err != nil {
			return fmt.Errorf("record snapshot %s: %w", s.Name, err)
		}
		if err := pool.CreateSnapshot(ctx, row.Name, s.Name); err != nil {
			return fmt.Errorf("snapshot %s: %w", s.Name, err)
		}
		if err := d.db.SetSnapshotReady(ctx, sid, true); err != nil {
			return err
		}
	}
	if err := extractBackupTree(ctx, f, "backup/container", volume); err != nil {
		return err
	}
	if err := d.applyRootSize(ctx, row, pool, false); err != nil {
		return err
	}
	return d.db.SetInstanceReady(ctx, row.ID, true)
}

// readBackupIndex reads backup/index.yaml from a backup tarball.
func readBackupIndex(f *os.File) (*backupIndex, error) {
	var idx *backupIndex
	err := walkBackup(f, func(hdr *tar.Header, r io.Reader) (bool, error) {
		if hdr.Name != "backup/index.yaml" {
			return true, nil
		}
		idx = &backupIndex{}
		if err := yaml.NewDecoder(io.LimitReader(r, 16<<20)).Decode(idx); err != nil {
			return false, fmt.Errorf("backup/index.yaml: %w", err)
		}
		return false, nil
	})
	if err == nil && idx == nil {
		err = errors.New("it has no backup/index.yaml")
	}
	return idx, err
}

// walkBackup calls fn for each entry of the gzip tarball f, from its
// start, until fn says to stop.
func walkBackup(f *os.File, fn func(*tar.Header, io.Reader) (bool, error)) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		more, err := fn(hdr, tr)
		if err != nil || !more {
			return err
		}
	}
}

// extractBackupTree replaces the content of dest by the tree under prefix
// in the tarball. Every entry is made through an os.Root of dest: neither
// ".." nor a symlink from the tarball leads outside it.
func extractBackupTree(ctx context.Context, f *os.File, prefix, dest string) error {
	entries, err := os.ReadDir(dest)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dest, e.Name())); err != nil {
			return fmt.Errorf("clear %s: %w", dest, err)
		}
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirTime struct {
		rel string
		t   time.Time
	}
	var dirs []dirTime
	found := false
	err = walkBackup(f, func(hdr *tar.Header, r io.Reader) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		rest, ok := strings.CutPrefix(strings.TrimSuffix(hdr.Name, "/"), prefix)
		if !ok || (rest != "" && rest[0] != '/') {
			return true, nil
		}
		found = true
		rel := strings.TrimPrefix(rest, "/")
		if rel == "" {
			rel = "."
		}
		if !fs.ValidPath(rel) {
			return false, badRequest("backup entry %q is not a clean relative path", hdr.Name)
		}
		mode := fs.FileMode(hdr.Mode) & fs.ModePerm
		switch hdr.Typeflag {
		case tar.TypeDir:
			if rel != "." {
				if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
					return false, err
				}
			}
			dirs = append(dirs, dirTime{rel, hdr.ModTime})
		case tar.TypeReg:
			out, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return false, err
			}
			_, err = io.Copy(out, r)
			if err := errors.Join(err, out.Close()); err != nil {
				return false, fmt.Errorf("extract %s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, rel); err != nil {
				return false, err
			}
		case tar.TypeLink:
			old, ok := strings.CutPrefix(hdr.Linkname, prefix+"/")
			if !ok || !fs.ValidPath(old) {
				return false, badRequest("backup entry %q links outside its tree", hdr.Name)
			}
			if err := root.Link(old, rel); err != nil {
				return false, err
			}
			return true, nil
		default:
			// Device nodes and fifos: lxc makes /dev; nothing else is kept.
			return true, nil
		}
		if err := root.Lchown(rel, hdr.Uid, hdr.Gid); err != nil {
			return false, err
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// After the chown, which clears setuid bits.
			if err := root.Chmod(rel, mode|modeBits(hdr.Mode)); err != nil {
				return false, err
			}
			if err := root.Chtimes(rel, hdr.AccessTime, hdr.ModTime); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if !found {
		return badRequest("the backup has no %s", prefix)
	}
	// Directory times last: entries made in them changed them.
	for _, dt := range slices.Backward(dirs) {
		_ = root.Chtimes(dt.rel, dt.t, dt.t)
	}
	return nil
}

// modeBits turns a tar header's setuid, setgid and sticky bits (Unix
// octal) into Go's.
func modeBits(m int64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}
