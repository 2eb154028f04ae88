package client

import (
	"context"
	"net/http"

	"cell/shared/api"
)

// GetInstanceNames lists the names of the instances.
func (c *Client) GetInstanceNames(ctx context.Context) ([]string, error) {
	var urls []string
	if _, err := c.get(ctx, "/1.0/instances", nil, &urls); err != nil {
		return nil, err
	}
	return namesFromURLs(urls), nil
}

// GetInstances lists the instances (recursion=1: config, no state).
func (c *Client) GetInstances(ctx context.Context) ([]api.Instance, error) {
	var list []api.Instance
	if _, err := c.get(ctx, "/1.0/instances", recursion(1), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetInstancesFull lists the instances with their state and snapshots
// (recursion=2).
func (c *Client) GetInstancesFull(ctx context.Context) ([]api.InstanceFull, error) {
	var list []api.InstanceFull
	if _, err := c.get(ctx, "/1.0/instances", recursion(2), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// GetInstance returns one instance and its ETag.
func (c *Client) GetInstance(ctx context.Context, name string) (*api.Instance, string, error) {
	var inst api.Instance
	etag, err := c.get(ctx, urlPath("instances", name), nil, &inst)
	if err != nil {
		return nil, "", err
	}
	return &inst, etag, nil
}

// GetInstanceState returns the runtime state of an instance.
func (c *Client) GetInstanceState(ctx context.Context, name string) (*api.InstanceState, error) {
	var st api.InstanceState
	if _, err := c.get(ctx, urlPath("instances", name, "state"), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// GetInstanceSnapshots lists the snapshots of an instance.
func (c *Client) GetInstanceSnapshots(ctx context.Context, name string) ([]api.InstanceSnapshot, error) {
	var list []api.InstanceSnapshot
	if _, err := c.get(ctx, urlPath("instances", name, "snapshots"), recursion(1), &list); err != nil {
		return nil, err
	}
	return list, nil
}

// CreateInstance creates an instance. An empty req.Name lets the server
// pick one; the operation's resources then name the instance.
func (c *Client) CreateInstance(ctx context.Context, req api.InstancesPost) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: "/1.0/instances", body: req})
}

// UpdateInstance replaces an instance's writable fields (PUT). etag may be
// empty.
func (c *Client) UpdateInstance(ctx context.Context, name string, put api.InstancePut, etag string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPut, path: urlPath("instances", name), body: put, etag: etag})
}

// PatchInstance merges config keys and devices into an instance (PATCH).
func (c *Client) PatchInstance(ctx context.Context, name string, put api.InstancePut, etag string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPatch, path: urlPath("instances", name), body: put, etag: etag})
}

// RenameInstance renames a stopped instance.
func (c *Client) RenameInstance(ctx context.Context, name, newName string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name), body: api.InstancePost{Name: newName}})
}

// UpdateInstanceState starts, stops, restarts, freezes or unfreezes an
// instance.
func (c *Client) UpdateInstanceState(ctx context.Context, name string, state api.InstanceStatePut, etag string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPut, path: urlPath("instances", name, "state"), body: state, etag: etag})
}

// DeleteInstance deletes a stopped instance.
func (c *Client) DeleteInstance(ctx context.Context, name string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodDelete, path: urlPath("instances", name)})
}

// InstanceNameFromOperation returns the instance an operation worked on,
// from its resources ("instances": ["/1.0/instances/NAME"]). It is how a
// caller learns the name the server chose for a new instance.
func InstanceNameFromOperation(op *api.Operation) string {
	for _, key := range []string{"instances", "containers"} {
		if urls := op.Resources[key]; len(urls) > 0 {
			return namesFromURLs(urls[:1])[0]
		}
	}
	return ""
}

// CreateInstanceSnapshot snapshots an instance; an empty req.Name lets the
// server pick snapN.
func (c *Client) CreateInstanceSnapshot(ctx context.Context, name string, req api.InstanceSnapshotsPost) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name, "snapshots"), body: req})
}

// DeleteInstanceSnapshot deletes a snapshot.
func (c *Client) DeleteInstanceSnapshot(ctx context.Context, name, snap string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodDelete, path: urlPath("instances", name, "snapshots", snap)})
}

// RenameInstanceSnapshot renames a snapshot.
func (c *Client) RenameInstanceSnapshot(ctx context.Context, name, snap, newName string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name, "snapshots", snap),
		body: api.InstanceSnapshotPost{Name: newName}})
}

// RestoreInstanceSnapshot restores an instance to one of its snapshots.
func (c *Client) RestoreInstanceSnapshot(ctx context.Context, name, snap string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPut, path: urlPath("instances", name), body: api.InstancePut{Restore: snap}})
}
