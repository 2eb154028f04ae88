package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdPublish() *cobra.Command {
	var aliases []string
	var public, force bool
	var compression string
	cmd := &cobra.Command{
		Use:   "publish [<remote>:]<instance>[/<snapshot>] [<remote>:] [flags] [key=value...]",
		Short: "Publish instances as images",
		Long: `Publish instances as images

The instance must be stopped; --force stops it, publishes it and starts it
again. key=value arguments become properties of the image.`,
		Example: `  c publish c1 --alias my-base --public
  c publish c1/snap0 local: --alias from-snap description="my image"`,
		Args: checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			srcRemote, name, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return err
			}
			dstRemote := srcRemote
			props := map[string]string{}
			for _, arg := range args[1:] {
				if strings.HasSuffix(arg, ":") && !strings.Contains(arg, "=") {
					if dstRemote, _, err = a.conf.ParseRemote(arg); err != nil {
						return err
					}
					continue
				}
				k, v, err := parseKeyValue(arg)
				if err != nil {
					return err
				}
				props[k] = v
			}
			if dstRemote != srcRemote {
				return fmt.Errorf("publishing to another server is not supported: publish to %s: and copy the image", srcRemote)
			}
			c, err := a.client(srcRemote)
			if err != nil {
				return err
			}
			req := client.PublishRequest{
				ImagesPost: api.ImagesPost{
					ImagePut: api.ImagePut{Public: public, Properties: props},
					Source:   &api.ImagesPostSource{Type: "instance", Name: name},
				},
				CompressionAlgorithm: compression,
			}
			if strings.Contains(name, "/") {
				req.Source.Type = "snapshot"
			}
			for _, al := range aliases {
				req.Aliases = append(req.Aliases, api.ImageAlias{Name: al})
			}
			fp, err := a.publish(ctx, c, req, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Instance published with fingerprint: %s\n", fp)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "New alias to define at target")
	cmd.Flags().BoolVar(&public, "public", false, "Make the image public")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Stop the instance if currently running")
	cmd.Flags().StringVar(&compression, "compression", "", "Compression algorithm to use (gzip, xz, zstd or none)")
	return cmd
}

// publish sends the request; with force, a running instance is stopped
// first and started again afterwards, whatever the outcome, as lxc does.
func (a *app) publish(ctx context.Context, c *client.Client, req client.PublishRequest, force bool) (string, error) {
	inst := req.Source.Name
	restart := false
	if req.Source.Type == "instance" {
		state, err := c.GetInstanceState(ctx, inst)
		if err != nil {
			return "", err
		}
		if state.Status == "Running" {
			if !force {
				return "", fmt.Errorf("The instance is currently running. Use --force to have it stopped and restarted")
			}
			if err := a.setState(ctx, c, inst, "stop"); err != nil {
				return "", fmt.Errorf("stop %s before publishing: %w", inst, err)
			}
			restart = true
		}
	}
	op, err := c.PublishImage(ctx, req)
	if err == nil {
		err = op.Wait(ctx)
	}
	if restart {
		if serr := a.setState(context.WithoutCancel(ctx), c, inst, "start"); serr != nil && err == nil {
			err = fmt.Errorf("start %s again after publishing: %w", inst, serr)
		}
	}
	if err != nil {
		return "", err
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	return fp, nil
}

func (a *app) setState(ctx context.Context, c *client.Client, name, action string) error {
	// A forced stop, as lxc publish --force does: the instance is started
	// again right after.
	op, err := c.UpdateInstanceState(ctx, name, api.InstanceStatePut{Action: action, Timeout: -1, Force: action == "stop"}, "")
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}
