package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"cell/shared/api"
)

// CreateInstanceBackup starts making a backup of an instance on the server.
func (c *Client) CreateInstanceBackup(ctx context.Context, name string, req api.InstanceBackupsPost) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name, "backups"), body: req})
}

// GetInstanceBackups lists the backups of an instance.
func (c *Client) GetInstanceBackups(ctx context.Context, name string) ([]api.InstanceBackup, error) {
	var out []api.InstanceBackup
	if _, err := c.get(ctx, urlPath("instances", name, "backups"), recursion(1), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteInstanceBackup deletes a backup from the server.
func (c *Client) DeleteInstanceBackup(ctx context.Context, name, backup string) (*Operation, error) {
	return c.doOperation(ctx, request{method: http.MethodDelete, path: urlPath("instances", name, "backups", backup)})
}

// GetInstanceBackupFile downloads a backup's tarball into w.
func (c *Client) GetInstanceBackupFile(ctx context.Context, name, backup string, w io.Writer) error {
	resp, err := c.rawDo(ctx, request{method: http.MethodGet, path: urlPath("instances", name, "backups", backup, "export")})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, err := decodeEnvelope(resp)
		if err == nil {
			err = fmt.Errorf("download backup %s: %s", backup, resp.Status)
		}
		return err
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download backup %s: %w", backup, err)
	}
	return nil
}

// CreateInstanceFromBackup imports a backup tarball (size bytes) as a new
// instance, named name (or as in the backup when empty), on pool (or
// the backup's when empty).
func (c *Client) CreateInstanceFromBackup(ctx context.Context, r io.Reader, size int64, name, pool string) (*Operation, error) {
	h := http.Header{}
	if name != "" {
		h.Set("X-LXD-name", name)
	}
	if pool != "" {
		h.Set("X-LXD-pool", pool)
	}
	return c.doOperation(ctx, request{method: http.MethodPost, path: "/1.0/instances", body: r, headers: h, length: size})
}
