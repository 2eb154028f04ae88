package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetStoragePoolNames lists the names of the storage pools.
func (c *Client) GetStoragePoolNames(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.get(ctx, "/1.0/storage-pools", nil, &urls); err != nil {
		return nil, err
	}
	return namesFromURLs(urls), nil
}

// GetStoragePools lists the storage pools.
func (c *Client) GetStoragePools(ctx context.Context) ([]api.StoragePool, error) {
	var pools []api.StoragePool
	if _, err := c.get(ctx, "/1.0/storage-pools", recursion(1), &pools); err != nil {
		return nil, err
	}
	return pools, nil
}

// GetStoragePool returns one storage pool and its ETag.
func (c *Client) GetStoragePool(ctx context.Context, name string) (*api.StoragePool, string, error) {
	var pool api.StoragePool
	etag, err := c.get(ctx, urlPath("storage-pools", name), nil, &pool)
	if err != nil {
		return nil, "", err
	}
	return &pool, etag, nil
}

// CreateStoragePool creates a storage pool.
func (c *Client) CreateStoragePool(ctx context.Context, p api.StoragePoolsPost) error {
	return c.sync(ctx, http.MethodPost, "/1.0/storage-pools", p, "")
}

// UpdateStoragePool replaces a storage pool's description and config.
func (c *Client) UpdateStoragePool(ctx context.Context, name string, put api.StoragePoolPut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("storage-pools", name), put, etag)
}

// DeleteStoragePool deletes a storage pool.
func (c *Client) DeleteStoragePool(ctx context.Context, name string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("storage-pools", name), nil, "")
}

// GetStoragePoolResources returns a storage pool's space and inodes.
func (c *Client) GetStoragePoolResources(ctx context.Context, name string) (*api.ResourcesStoragePool, error) {
	var res api.ResourcesStoragePool
	if _, err := c.get(ctx, urlPath("storage-pools", name, "resources"), nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
