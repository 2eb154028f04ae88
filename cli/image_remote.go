package cli

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/client/simplestreams"
	"cell/shared/api"
)

// Images on simplestreams remotes: `c` reads them itself (image list), and
// lets the daemon download them (launch, image copy).

// imageServer returns the simplestreams client of an image server remote.
func (a *app) imageServer(remote string) (*simplestreams.Client, error) {
	r, ok := a.conf.Remotes[remote]
	if !ok {
		return nil, fmt.Errorf("The remote %q doesn't exist", remote)
	}
	return simplestreams.New(r.Addr, nil)
}

// remoteImageSource is the instance source for an image on an image
// server: the daemon resolves and downloads it.
func (a *app) remoteImageSource(remote, image string) api.InstanceSource {
	return api.InstanceSource{Type: "image", Mode: "pull", Server: a.conf.Remotes[remote].Addr,
		Protocol: "simplestreams", Alias: image}
}

// simplestreamsImages lists an image server's images as the API shows
// images.
func (a *app) simplestreamsImages(ctx context.Context, remote string) ([]api.Image, error) {
	ss, err := a.imageServer(remote)
	if err != nil {
		return nil, err
	}
	imgs, err := ss.Images(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(imgs))
	for _, img := range imgs {
		ai := api.Image{
			ImagePut:     api.ImagePut{Public: true, Properties: img.Properties},
			Aliases:      []api.ImageAlias{},
			Architecture: img.Architecture, Fingerprint: img.Fingerprint, Size: img.Size, Type: "container",
			CreatedAt: img.CreatedAt, UploadedAt: img.CreatedAt, Filename: img.Meta.Path,
		}
		for _, al := range img.Aliases {
			ai.Aliases = append(ai.Aliases, api.ImageAlias{Name: al})
		}
		out = append(out, ai)
	}
	return out, nil
}

func (a *app) cmdImageCopy() *cobra.Command {
	var aliases []string
	var autoUpdate, public, copyAliases bool
	cmd := &cobra.Command{
		Use:     "copy [<remote>:]<image> <remote>:",
		Aliases: []string{"cp"},
		Short:   "Copy images from an image server into a server's image store",
		Example: `  c image copy images:debian/12 local: --alias deb12 --auto-update`,
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			srcRemote, image, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return err
			}
			if !strings.HasSuffix(args[1], ":") {
				return fmt.Errorf("the destination must be a remote, as in local: (got %q)", args[1])
			}
			dstRemote, _, err := a.conf.ParseRemote(args[1])
			if err != nil {
				return err
			}
			if !a.conf.IsImageServer(srcRemote) {
				return fmt.Errorf("copying images from %q is not supported yet: only simplestreams image servers can be copied from", srcRemote)
			}
			c, err := a.client(dstRemote)
			if err != nil {
				return err
			}
			req := api.ImagesPost{
				ImagePut: api.ImagePut{AutoUpdate: autoUpdate, Public: public},
				Source: &api.ImagesPostSource{Type: "image", Mode: "pull", ImageSource: api.ImageSource{
					Server: a.conf.Remotes[srcRemote].Addr, Protocol: "simplestreams", Alias: image, ImageType: "container"}},
			}
			for _, al := range aliases {
				req.Aliases = append(req.Aliases, api.ImageAlias{Name: al})
			}
			if copyAliases {
				ss, err := a.imageServer(srcRemote)
				if err != nil {
					return err
				}
				img, err := ss.Resolve(ctx, image, "")
				if err != nil {
					return err
				}
				for _, al := range img.Aliases {
					req.Aliases = append(req.Aliases, api.ImageAlias{Name: al})
				}
			}
			op, err := c.CopyImage(ctx, req)
			if err != nil {
				return err
			}
			if err := a.waitDownload(ctx, c, op); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintln(a.stdout, "Image copied successfully!")
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "New aliases to add to the image")
	cmd.Flags().BoolVar(&autoUpdate, "auto-update", false, "Keep the image up to date after initial copy")
	cmd.Flags().BoolVar(&public, "public", false, "Make image public")
	cmd.Flags().BoolVar(&copyAliases, "copy-aliases", false, "Copy aliases from source")
	return cmd
}

// waitDownload waits for an operation that may download an image, showing
// the server's download_progress metadata as a progress line (on a
// terminal, without --quiet).
func (a *app) waitDownload(ctx context.Context, c *client.Client, op *client.Operation) error {
	p := a.newProgress("Retrieving image", 0)
	if p.w == nil {
		return op.Wait(ctx)
	}
	pollCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
			}
			got, err := c.GetOperation(pollCtx, op.ID)
			if err != nil {
				continue
			}
			if s, ok := got.Metadata["download_progress"].(string); ok && s != "" {
				p.mu.Lock()
				if p.w != nil {
					p.draw("Retrieving image: " + s)
				}
				p.mu.Unlock()
			}
		}
	}()
	err := op.Wait(ctx)
	stop()
	wg.Wait()
	p.done()
	return err
}
