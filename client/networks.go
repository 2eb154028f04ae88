package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetNetworks lists the managed networks and the host's interfaces.
func (c *Client) GetNetworks(ctx context.Context) ([]api.Network, error) {
	var list []api.Network
	if _, err := c.get(ctx, "/1.0/networks", recursion(1), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetNetwork returns one network and its ETag.
func (c *Client) GetNetwork(ctx context.Context, name string) (*api.Network, string, error) {
	var n api.Network
	etag, err := c.get(ctx, urlPath("networks", name), nil, &n)
	if err != nil {
		return nil, "", err
	}
	return &n, etag, nil
}

// CreateNetwork creates a managed network.
func (c *Client) CreateNetwork(ctx context.Context, n api.NetworksPost) error {
	return c.sync(ctx, http.MethodPost, "/1.0/networks", n, "")
}

// UpdateNetwork replaces a network's config and description.
func (c *Client) UpdateNetwork(ctx context.Context, name string, put api.NetworkPut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("networks", name), put, etag)
}

// PatchNetwork merges config keys into a network; an empty value removes
// the key.
func (c *Client) PatchNetwork(ctx context.Context, name string, put api.NetworkPut, etag string) error {
	return c.sync(ctx, http.MethodPatch, urlPath("networks", name), put, etag)
}

// RenameNetwork renames a managed network.
func (c *Client) RenameNetwork(ctx context.Context, name, newName string) error {
	return c.sync(ctx, http.MethodPost, urlPath("networks", name), api.NetworkPost{Name: newName}, "")
}

// DeleteNetwork deletes a managed network.
func (c *Client) DeleteNetwork(ctx context.Context, name string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("networks", name), nil, "")
}

// GetNetworkLeases returns a managed network's DHCP leases.
func (c *Client) GetNetworkLeases(ctx context.Context, name string) ([]api.NetworkLease, error) {
	var leases []api.NetworkLease
	if _, err := c.get(ctx, urlPath("networks", name, "leases"), nil, &leases); err != nil {
		return nil, err
	}
	return leases, nil
}

// GetNetworkState returns a network interface's live state.
func (c *Client) GetNetworkState(ctx context.Context, name string) (*api.NetworkState, error) {
	var st api.NetworkState
	if _, err := c.get(ctx, urlPath("networks", name, "state"), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
