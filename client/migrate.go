package client

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"cell/shared/api"
)

// MigrateInstance starts the source side of a migration (POST
// /1.0/instances/NAME with migration true). In pull mode (req.Target nil)
// the operation's metadata holds the websocket secrets a target needs; in
// push mode the source connects to req.Target.
func (c *Client) MigrateInstance(ctx context.Context, name string, req api.InstancePost) (*Operation, error) {
	req.Migration = true
	return c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name), body: req})
}

// CopyOptions are the choices of a copy between two servers.
type CopyOptions struct {
	// InstanceOnly leaves the snapshots out.
	InstanceOnly bool
	// Live moves a running instance's running state too (CRIU): the
	// source is left stopped, for the caller to delete.
	Live bool
	// Mode is "pull" (the default: the target connects to the source) or
	// "push" (the source connects to the target).
	Mode string
	// Progress, if set, is called with the bytes received so far by the
	// target, as its operation reports them.
	Progress func(bytes int64)
}

// CopyInstanceTo copies instance name of c to the server dst. req is the
// new instance as dst creates it (name, config, devices, profiles: LXD's
// client sends the source's); its Source is filled here. The server that
// the other connects to must be an HTTPS client: it is reached at the
// same address.
func (c *Client) CopyInstanceTo(ctx context.Context, name string, dst *Client, req api.InstancesPost, opts CopyOptions) error {
	switch opts.Mode {
	case "", "pull":
		return c.copyPull(ctx, name, dst, req, opts)
	case "push":
		return c.copyPush(ctx, name, dst, req, opts)
	}
	return fmt.Errorf("invalid copy mode %q: use pull or push", opts.Mode)
}

// certificate returns the server's certificate, which a peer pins.
func (c *Client) certificate(ctx context.Context) (string, error) {
	if !strings.HasPrefix(c.baseURL, "https://") {
		return "", fmt.Errorf("%s must be an HTTPS remote: the other server connects to it", c.desc)
	}
	srv, _, err := c.GetServer(ctx)
	if err != nil {
		return "", err
	}
	if srv.Environment.Certificate == "" {
		return "", fmt.Errorf("%s did not send its certificate", c.desc)
	}
	return srv.Environment.Certificate, nil
}

// secrets are the websocket secrets of a migration operation, listed in
// its metadata.
func secrets(op *Operation) map[string]string {
	out := map[string]string{}
	for k, v := range op.Metadata {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func (c *Client) copyPull(ctx context.Context, name string, dst *Client, req api.InstancesPost, opts CopyOptions) error {
	cert, err := c.certificate(ctx)
	if err != nil {
		return err
	}
	srcOp, err := c.MigrateInstance(ctx, name, api.InstancePost{Name: name, InstanceOnly: opts.InstanceOnly, Live: opts.Live})
	if err != nil {
		return err
	}
	req.Source = api.InstanceSource{
		Type: "migration", Mode: "pull", Operation: c.baseURL + "/1.0/operations/" + srcOp.ID,
		Certificate: cert, Websockets: secrets(srcOp), InstanceOnly: opts.InstanceOnly, Live: opts.Live,
	}
	dstOp, err := dst.CreateInstance(ctx, req)
	if err != nil {
		_ = srcOp.Cancel(ctx)
		return err
	}
	return waitBoth(ctx, dstOp, srcOp, opts.Progress)
}

func (c *Client) copyPush(ctx context.Context, name string, dst *Client, req api.InstancesPost, opts CopyOptions) error {
	cert, err := dst.certificate(ctx)
	if err != nil {
		return err
	}
	req.Source = api.InstanceSource{Type: "migration", Mode: "push", InstanceOnly: opts.InstanceOnly, Live: opts.Live}
	dstOp, err := dst.CreateInstance(ctx, req)
	if err != nil {
		return err
	}
	target := &api.InstancePostTarget{Certificate: cert, Operation: dst.baseURL + "/1.0/operations/" + dstOp.ID, Websockets: secrets(dstOp)}
	srcOp, err := c.MigrateInstance(ctx, name, api.InstancePost{Name: name, InstanceOnly: opts.InstanceOnly, Live: opts.Live, Target: target})
	if err != nil {
		_ = dstOp.Cancel(ctx)
		return err
	}
	return waitBoth(ctx, dstOp, srcOp, opts.Progress)
}

// waitBoth waits for both sides of a migration, reporting the target's
// progress. The target's error says what went wrong; the source's often
// only that its peer went away.
func waitBoth(ctx context.Context, dstOp, srcOp *Operation, progress func(int64)) error {
	if progress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if op, err := dstOp.c.GetOperation(ctx, dstOp.ID); err == nil {
					if n, ok := op.Metadata["fs_progress_bytes"].(float64); ok {
						progress(int64(n))
					}
				}
			}
		}()
	}
	dstErr := dstOp.Wait(ctx)
	srcErr := srcOp.Wait(ctx)
	if dstErr != nil {
		return dstErr
	}
	return srcErr
}
