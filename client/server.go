package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetServer returns the server's description and config, and its ETag.
func (c *Client) GetServer(ctx context.Context) (*api.Server, string, error) {
	var s api.Server
	etag, err := c.get(ctx, "/1.0", nil, &s)
	if err != nil {
		return nil, "", err
	}
	return &s, etag, nil
}

// UpdateServer replaces the server's config (PUT /1.0). etag may be empty.
func (c *Client) UpdateServer(ctx context.Context, put api.ServerPut, etag string) error {
	return c.sync(ctx, http.MethodPut, "/1.0", put, etag)
}

// PatchServer merges keys into the server's config (PATCH /1.0).
func (c *Client) PatchServer(ctx context.Context, put api.ServerPut, etag string) error {
	return c.sync(ctx, http.MethodPatch, "/1.0", put, etag)
}

// HasExtension reports whether the server advertises an API extension.
func HasExtension(s *api.Server, name string) bool {
	for _, e := range s.APIExtensions {
		if e == name {
			return true
		}
	}
	return false
}
