// Package storage holds the storage driver interface and the drivers that
// need nothing but the kernel's own filesystems (dir; btrfs comes next).
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
)

// ErrUnknownDriver is returned for a driver name that has no implementation.
var ErrUnknownDriver = errors.New("unknown storage driver")

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
}

// Open returns the driver for a pool.
func Open(driver, poolDir string, config map[string]string) (Driver, error) {
	switch driver {
	case "dir":
		return NewDir(poolDir)
	default:
		return nil, fmt.Errorf("%w %q: supported drivers are dir", ErrUnknownDriver, driver)
	}
}
