package client

import (
	"context"
	"net/url"

	"cell/shared/api"
)

// GetInstanceDiff lists the files changed in an instance since its image,
// or since snapshot when it is not empty.
func (c *Client) GetInstanceDiff(ctx context.Context, name, snapshot string) ([]api.InstanceDiffEntry, error) {
	var q url.Values
	if snapshot != "" {
		q = url.Values{"snapshot": {snapshot}}
	}
	var out []api.InstanceDiffEntry
	if _, err := c.get(ctx, urlPath("instances", name, "diff"), q, &out); err != nil {
		return nil, err
	}
	return out, nil
}
