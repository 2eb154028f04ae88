package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetStoragePoolVolumes lists a pool's volumes (custom and instance ones).
func (c *Client) GetStoragePoolVolumes(ctx context.Context, pool string) ([]api.StorageVolume, error) {
	var list []api.StorageVolume
	if _, err := c.get(ctx, urlPath("storage-pools", pool, "volumes"), recursion(1), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetStoragePoolVolume returns one custom volume and its ETag.
func (c *Client) GetStoragePoolVolume(ctx context.Context, pool, name string) (*api.StorageVolume, string, error) {
	var v api.StorageVolume
	etag, err := c.get(ctx, urlPath("storage-pools", pool, "volumes", "custom", name), nil, &v)
	if err != nil {
		return nil, "", err
	}
	return &v, etag, nil
}

// CreateStoragePoolVolume creates a custom volume (empty, or a copy with
// req.Source.Type "copy").
func (c *Client) CreateStoragePoolVolume(ctx context.Context, pool string, req api.StorageVolumesPost) error {
	return c.sync(ctx, http.MethodPost, urlPath("storage-pools", pool, "volumes", "custom"), req, "")
}

// UpdateStoragePoolVolume replaces a custom volume's description and config.
func (c *Client) UpdateStoragePoolVolume(ctx context.Context, pool, name string, put api.StorageVolumePut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("storage-pools", pool, "volumes", "custom", name), put, etag)
}

// CopyStoragePoolVolume copies custom volume srcPool/src to pool/name,
// with its snapshots unless volumeOnly (pools and drivers may differ).
func (c *Client) CopyStoragePoolVolume(ctx context.Context, srcPool, src, pool, name string, volumeOnly bool) error {
	type source struct {
		api.StorageVolumeSource
		VolumeOnly bool `json:"volume_only"`
	}
	req := struct {
		api.StorageVolumesPost
		Source source `json:"source"`
	}{
		StorageVolumesPost: api.StorageVolumesPost{Name: name, Type: "custom"},
		Source:             source{api.StorageVolumeSource{Type: "copy", Pool: srcPool, Name: src}, volumeOnly},
	}
	op, err := c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("storage-pools", pool, "volumes", "custom"), body: req})
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}

// RestoreStoragePoolVolume puts a custom volume's snapshot back as its
// content (LXD's PUT with "restore").
func (c *Client) RestoreStoragePoolVolume(ctx context.Context, pool, name, snap string) error {
	req := struct {
		Restore string `json:"restore"`
	}{snap}
	return c.sync(ctx, http.MethodPut, urlPath("storage-pools", pool, "volumes", "custom", name), req, "")
}

// RenameStoragePoolVolume renames a custom volume.
func (c *Client) RenameStoragePoolVolume(ctx context.Context, pool, name, newName string) error {
	return c.sync(ctx, http.MethodPost, urlPath("storage-pools", pool, "volumes", "custom", name), api.StorageVolumePost{Name: newName}, "")
}

// DeleteStoragePoolVolume deletes a custom volume.
func (c *Client) DeleteStoragePoolVolume(ctx context.Context, pool, name string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("storage-pools", pool, "volumes", "custom", name), nil, "")
}

// GetStoragePoolVolumeSnapshots lists a custom volume's snapshots.
func (c *Client) GetStoragePoolVolumeSnapshots(ctx context.Context, pool, name string) ([]api.StorageVolumeSnapshot, error) {
	var list []api.StorageVolumeSnapshot
	if _, err := c.get(ctx, urlPath("storage-pools", pool, "volumes", "custom", name, "snapshots"), recursion(1), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetStoragePoolVolumeSnapshot returns one snapshot of a custom volume.
func (c *Client) GetStoragePoolVolumeSnapshot(ctx context.Context, pool, name, snap string) (*api.StorageVolumeSnapshot, error) {
	var s api.StorageVolumeSnapshot
	if _, err := c.get(ctx, urlPath("storage-pools", pool, "volumes", "custom", name, "snapshots", snap), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// CreateStoragePoolVolumeSnapshot snapshots a custom volume (an empty
// name lets the server pick snapN).
func (c *Client) CreateStoragePoolVolumeSnapshot(ctx context.Context, pool, name string, req api.StorageVolumeSnapshotsPost) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("storage-pools", pool, "volumes", "custom", name, "snapshots"), body: req})
}

// DeleteStoragePoolVolumeSnapshot deletes a snapshot of a custom volume.
func (c *Client) DeleteStoragePoolVolumeSnapshot(ctx context.Context, pool, name, snap string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodDelete, path: urlPath("storage-pools", pool, "volumes", "custom", name, "snapshots", snap)})
}
