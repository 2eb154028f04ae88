// Package storage holds the storage driver interface and the drivers that
// need nothing but the kernel's own filesystems: dir and btrfs.
//
// A pool stores two kinds of volume: image volumes, an image unpacked once
// (already shifted for unprivileged use), and instance volumes, made from
// an image volume as cheaply as the driver can (a copy for dir, a snapshot
// for btrfs and zfs). A volume holds rootfs/, metadata.yaml and templates/.
package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUnknownDriver is returned for a driver name that has no implementation.
var ErrUnknownDriver = errors.New("unknown storage driver")

// ErrInvalidConfig is returned for a pool config a user got wrong: an
// unknown key, a bad value, a source that cannot be used.
var ErrInvalidConfig = errors.New("invalid storage pool config")

// ErrQuotaUnsupported is returned by SetQuota on a driver that cannot
// limit an instance's disk space.
var ErrQuotaUnsupported = errors.New("this pool cannot limit disk size")

// ErrQuotaBelowUsed is returned by SetQuota for a limit below the space
// the volume already uses.
var ErrQuotaBelowUsed = errors.New("disk size below the space already used")

// QuotaSupported reports whether a driver can limit an instance's size.
func QuotaSupported(driver string) bool { return driver != "dir" }

// BelowUsed is the error of a quota below the used space, with both numbers.
func BelowUsed(instance string, limit, used int64) error {
	return fmt.Errorf("%w: instance %s already uses %d bytes (%s), more than the requested size %d bytes (%s): free space first or choose a larger size",
		ErrQuotaBelowUsed, instance, used, FormatSize(used), limit, FormatSize(limit))
}

// FormatSize writes bytes in binary units (5GiB, 64MiB, 1.5KiB).
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", f), "0"), ".0") + units[i]
}

// SnapshotsCopier is implemented by drivers whose snapshots are the
// history of a volume (zfs): an instance is copied with its snapshots in
// one step, the volume and the snapshots (oldest first) together.
type SnapshotsCopier interface {
	CopyInstanceWithSnapshots(ctx context.Context, src, dst string, snaps []string) error
}

// Drivers lists the drivers this package implements.
var Drivers = []string{"btrfs", "dir"}

// Driver is one storage pool.
type Driver interface {
	// Name is the driver's name ("dir").
	Name() string
	// InstancePath is where an instance's volume is mounted on the host.
	InstancePath(name string) string
	// HasImage reports whether the image's volume already exists.
	HasImage(fingerprint string) bool
	// CreateImage creates an image volume, filled by fill(dir). Either the
	// whole volume exists afterwards or nothing does.
	CreateImage(ctx context.Context, fingerprint string, fill func(dir string) error) error
	// DeleteImage removes an image volume.
	DeleteImage(ctx context.Context, fingerprint string) error
	// CreateInstanceFromImage makes a new instance volume from an image volume.
	CreateInstanceFromImage(ctx context.Context, name, fingerprint string) error
	// CreateInstanceEmpty makes a new instance volume with an empty rootfs.
	CreateInstanceEmpty(ctx context.Context, name string) error
	// DeleteInstance removes an instance volume; a missing one is not an error.
	DeleteInstance(ctx context.Context, name string) error
	// RenameInstance renames an instance volume.
	RenameInstance(ctx context.Context, oldName, newName string) error
	// Instances lists the instance volumes on disk (to reconcile with the
	// database after a crash).
	Instances() ([]string, error)
	// CreateSnapshot makes a snapshot of an instance volume. Either the
	// whole snapshot exists afterwards or nothing does.
	CreateSnapshot(ctx context.Context, instance, snap string) error
	// DeleteSnapshot removes a snapshot; a missing one is not an error.
	DeleteSnapshot(ctx context.Context, instance, snap string) error
	// RenameSnapshot renames a snapshot.
	RenameSnapshot(ctx context.Context, instance, oldName, newName string) error
	// RestoreSnapshot replaces an instance volume's content by the
	// snapshot's. The volume is swapped whole: a failure (or a crash)
	// leaves either the old content or the snapshot's, never a mix.
	RestoreSnapshot(ctx context.Context, instance, snap string) error
	// SnapshotPath is where a snapshot is on the host.
	SnapshotPath(instance, snap string) string
	// CopyInstance makes instance volume dst as a copy of instance
	// volume src (which may be in use: a running instance is copied as it
	// is). Only the volume: src's snapshots are not copied. As cheap as
	// the driver can (btrfs: writable snapshot; zfs: clone or send).
	// Either the whole volume exists afterwards or nothing does.
	CopyInstance(ctx context.Context, src, dst string) error
	// CopySnapshotToInstance makes instance volume dst as a writable copy
	// of snapshot snap of instance inst. All or nothing, as CopyInstance.
	CopySnapshotToInstance(ctx context.Context, inst, snap, dst string) error
	// CopySnapshot makes snapshot snap of instance dstInst as a copy of
	// snapshot snap of instance srcInst (copying an instance with its
	// snapshots; dstInst's volume already exists). All or nothing.
	CopySnapshot(ctx context.Context, srcInst, snap, dstInst string) error
	// RefreshInstance replaces the content of instance volume dst by that
	// of instance volume src (both exist; snapshots untouched). A failure
	// or a crash leaves dst with its old content or src's, never a mix
	// (dir: a copy built next to dst and swapped in; btrfs: a new
	// snapshot of src swapped in).
	RefreshInstance(ctx context.Context, src, dst string) error
	// SetQuota limits the space an instance volume may use to bytes (0
	// removes the limit), at once on a running instance. A limit below
	// the space already used fails with ErrQuotaBelowUsed and changes
	// nothing; drivers that cannot limit space return ErrQuotaUnsupported.
	SetQuota(ctx context.Context, instance string, bytes int64) error
	// Usage reports the space and inodes of the pool's filesystem.
	Usage() (Usage, error)
	// Update applies config keys that changed on an open pool (only those
	// ValidateUpdate allows).
	Update(ctx context.Context, config map[string]string) error
	// Delete removes the whole pool: its image volumes, and whatever
	// Create made for it (a filesystem's mount, its loop device and loop
	// file, the pool's directory). The pool must hold no instance volume.
	Delete(ctx context.Context) error
}

// exchange swaps two paths atomically (renameat2 RENAME_EXCHANGE).
func exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("swap %s and %s: %w", a, b, err)
	}
	return nil
}

// Usage is the space and inodes of a pool, used and total, in bytes and
// inodes.
type Usage struct {
	SpaceUsed, SpaceTotal   uint64
	InodesUsed, InodesTotal uint64
}

// statUsage reads a filesystem's usage with statfs.
func statUsage(path string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Usage{
		SpaceUsed: (st.Blocks - st.Bfree) * bs, SpaceTotal: st.Blocks * bs,
		InodesUsed: st.Files - st.Ffree, InodesTotal: st.Files,
	}, nil
}

// Pool is what a driver is told about its pool.
type Pool struct {
	Name string
	// Config holds the pool's keys: source, size and the driver's own.
	Config map[string]string
	// Dir is the pool's own directory ($CELL_DIR/storage-pools/NAME): where
	// a filesystem the pool owns is mounted, or a dir pool's default source.
	Dir string
	// DisksDir holds the loop files of loop-backed pools ($CELL_DIR/disks).
	DisksDir string
}

// keys lists each driver's config keys; those marked true may change
// after the pool is created.
var keys = map[string]map[string]bool{
	"dir":   {"source": false},
	"btrfs": {"source": false, "size": false, "btrfs.mount_options": true},
}

// Registration is a driver implemented outside this package (zfs), which
// the daemon registers at start: storage must not import it.
type Registration struct {
	// Keys lists the driver's config keys; true marks those that may
	// change after the pool is created.
	Keys map[string]bool
	// Validate checks one key's value (nil: any value).
	Validate func(key, value string) error
	// Create and Open are as the package's Create and Open.
	Create func(ctx context.Context, p Pool) (Driver, map[string]string, error)
	Open   func(ctx context.Context, p Pool) (Driver, error)
	// Abandon removes whatever Create can have made for p (its config as
	// asked for) when a crash interrupted it: see Recover.
	Abandon func(ctx context.Context, p Pool) error
}

var registered = map[string]Registration{}

// Register adds a driver implemented in another package. Call it before
// any pool is opened (from the daemon's start); a second registration of
// the same name replaces the first.
func Register(name string, r Registration) {
	if _, ok := registered[name]; !ok {
		Drivers = append(Drivers, name)
		sort.Strings(Drivers)
	}
	registered[name] = r
	keys[name] = r.Keys
}

// RestoreChecker is implemented by drivers that cannot restore every
// snapshot as it is (zfs can only roll back to its latest snapshot).
// CheckRestore returns an error wrapping ErrInvalidConfig when the restore
// is refused, and the snapshots that the restore will remove with it.
type RestoreChecker interface {
	CheckRestore(ctx context.Context, instance, snap string) (removed []string, err error)
}

// ValidateConfig checks a new pool's config for driver.
func ValidateConfig(driver string, config map[string]string) error {
	known, ok := keys[driver]
	if !ok {
		return fmt.Errorf("%w %q: supported drivers are %s", ErrUnknownDriver, driver, strings.Join(Drivers, ", "))
	}
	for k, v := range config {
		if _, ok := known[k]; !ok {
			return fmt.Errorf("%w: unknown key %q for driver %s (allowed: %s)", ErrInvalidConfig, k, driver, keyList(known))
		}
		if err := validateValue(k, v); err != nil {
			return err
		}
		if r, ok := registered[driver]; ok && r.Validate != nil {
			if err := r.Validate(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ValidateUpdate checks a change of an existing pool's config: only the
// keys that can change on a live pool may differ.
func ValidateUpdate(driver string, old, updated map[string]string) error {
	if err := ValidateConfig(driver, updated); err != nil {
		return err
	}
	known := keys[driver]
	for k := range known {
		if old[k] != updated[k] && !known[k] {
			return fmt.Errorf("%w: %q cannot be changed on an existing %s pool", ErrInvalidConfig, k, driver)
		}
	}
	return nil
}

func keyList(known map[string]bool) string {
	var list []string
	for k := range known {
		list = append(list, k)
	}
	sort.Strings(list)
	return strings.Join(list, ", ")
}

func validateValue(key, value string) error {
	switch key {
	case "size":
		if _, err := ParseSize(value); err != nil {
			return fmt.Errorf("%w: size: %v", ErrInvalidConfig, err)
		}
	case "btrfs.mount_options":
		for _, r := range value {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_=,:", r)) {
				return fmt.Errorf("%w: btrfs.mount_options %q: only letters, digits and _=,: are allowed", ErrInvalidConfig, value)
			}
		}
	}
	return nil
}

// Open returns the driver of an existing pool, mounting its filesystem
// when it is not mounted (after a reboot).
func Open(ctx context.Context, driver string, p Pool) (Driver, error) {
	switch driver {
	case "dir":
		d, err := NewDir(p.Config["source"])
		if err != nil {
			return nil, err
		}
		d.owned = p.Config["source"] == p.Dir
		return d, nil
	case "btrfs":
		return openBtrfs(ctx, p)
	default:
		if r, ok := registered[driver]; ok {
			return r.Open(ctx, p)
		}
		return nil, fmt.Errorf("%w %q: supported drivers are %s", ErrUnknownDriver, driver, strings.Join(Drivers, ", "))
	}
}

// Create makes a new pool and returns its driver and its config as
// completed by the driver (the source and size it chose). A failed create
// leaves nothing behind; nor does a crash during a successful one, once
// the caller has called Recover at its next start: the caller calls
// Created once it has recorded the pool.
func Create(ctx context.Context, driver string, p Pool) (_ Driver, _ map[string]string, err error) {
	if err := ValidateConfig(driver, p.Config); err != nil {
		return nil, nil, err
	}
	if err := writeIntent(p, driver); err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			Created(p) // undone by the driver: nothing to recover
		}
	}()
	switch driver {
	case "dir":
		return createDir(p)
	case "btrfs":
		return createBtrfs(ctx, p)
	}
	if r, ok := registered[driver]; ok {
		return r.Create(ctx, p)
	}
	return nil, nil, fmt.Errorf("%w %q", ErrUnknownDriver, driver)
}

// ParseSize parses a size such as 2GiB, 500MB, 1G or a number of bytes.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscan(num, &n); err != nil || n <= 0 || fmt.Sprint(n) != num {
		return 0, fmt.Errorf("%q is not a size (use a number of bytes or a unit: 512MiB, 2GiB, 20GB)", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
