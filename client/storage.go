package client

import (
	"context"

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
