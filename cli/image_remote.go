package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/client/simplestreams"
	"cell/images"
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

// remoteImageSource is the instance source for an image on another
// remote: the daemon resolves and downloads it.
func (a *app) remoteImageSource(ctx context.Context, remote, image string) (api.InstanceSource, error) {
	src, err := a.pullSource(ctx, remote, image)
	if err != nil {
		return api.InstanceSource{}, err
	}
	return api.InstanceSource{Type: "image", Mode: "pull", Server: src.Server, Protocol: src.Protocol,
		Certificate: src.Certificate, Alias: src.Alias, Fingerprint: src.Fingerprint, Secret: src.Secret}, nil
}

// pullSource describes an image on a remote so that another server can
// download it: an image server (simplestreams), or a celld or LXD over
// HTTPS, which the daemon reaches pinned to the certificate this client
// pinned for the remote. On an LXD-protocol server this client resolves
// the name itself, and for a private image (which the pulling server, an
// untrusted client there, cannot see) asks for a one-time download secret.
func (a *app) pullSource(ctx context.Context, remote, image string) (api.ImagesPostSource, error) {
	r, ok := a.conf.Remotes[remote]
	if !ok {
		return api.ImagesPostSource{}, fmt.Errorf("The remote %q doesn't exist", remote)
	}
	src := api.ImagesPostSource{Type: "image", Mode: "pull",
		ImageSource: api.ImageSource{Server: r.Addr, Protocol: r.Protocol, ImageType: "container"}}
	if r.Protocol == "simplestreams" {
		src.Alias = image
		return src, nil
	}
	if !strings.HasPrefix(r.Addr, "https://") {
		return src, fmt.Errorf("images on remote %q (%s) cannot be used by another server: it is not reachable over HTTPS", remote, r.Addr)
	}
	cert, err := os.ReadFile(ServerCertPath(remote))
	if err != nil {
		return src, fmt.Errorf("remote %q: no pinned server certificate (%w): remove it and add it again with `c remote add`", remote, err)
	}
	src.Certificate = string(cert)
	c, err := a.client(remote)
	if err != nil {
		return src, err
	}
	fp, err := resolveImage(ctx, c, image)
	if err != nil {
		return src, err
	}
	img, _, err := c.GetImage(ctx, fp)
	if err != nil {
		return src, err
	}
	src.Fingerprint = img.Fingerprint
	if !strings.HasPrefix(img.Fingerprint, image) {
		// Named by alias: the daemon records it as the image's source.
		src.Alias = image
	}
	if !img.Public {
		if src.Secret, err = c.GetImageSecret(ctx, img.Fingerprint); err != nil {
			return src, fmt.Errorf("image %s on %q is private and no download secret could be had: %w", image, remote, err)
		}
	}
	return src, nil
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
		out = append(out, apiImageOf(img))
	}
	return out, nil
}

// apiImageOf shows an image server's image as the API shows images.
func apiImageOf(img simplestreams.Image) api.Image {
	ai := api.Image{
		ImagePut:     api.ImagePut{Public: true, Properties: img.Properties},
		Aliases:      []api.ImageAlias{},
		Architecture: img.Architecture, Fingerprint: img.Fingerprint, Size: img.Size, Type: "container",
		CreatedAt: img.CreatedAt, UploadedAt: img.CreatedAt, Filename: img.Meta.Path,
	}
	for _, al := range img.Aliases {
		ai.Aliases = append(ai.Aliases, api.ImageAlias{Name: al})
	}
	return ai
}

// imageOnServer resolves "remote:image" on an image server remote, as
// image info and image show need; ok is false for other remotes.
func (a *app) imageOnServer(ctx context.Context, arg string) (img *api.Image, ok bool, err error) {
	remote, name, err := a.conf.ParseRemote(arg)
	if err != nil || !a.conf.IsImageServer(remote) {
		return nil, false, err
	}
	ss, err := a.imageServer(remote)
	if err != nil {
		return nil, true, err
	}
	found, err := ss.Resolve(ctx, name, "")
	if err != nil {
		return nil, true, err
	}
	ai := apiImageOf(found)
	return &ai, true, nil
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
			src, err := a.pullSource(ctx, srcRemote, image)
			if err != nil {
				return err
			}
			c, err := a.client(dstRemote)
			if err != nil {
				return err
			}
			req := api.ImagesPost{
				ImagePut: api.ImagePut{AutoUpdate: autoUpdate, Public: public},
				Source:   &src,
			}
			for _, al := range aliases {
				req.Aliases = append(req.Aliases, api.ImageAlias{Name: al})
			}
			if copyAliases {
				names, err := a.sourceAliases(ctx, srcRemote, image)
				if err != nil {
					return err
				}
				for _, al := range names {
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

// sourceAliases lists the aliases of an image on a remote, for
// --copy-aliases.
func (a *app) sourceAliases(ctx context.Context, remote, image string) ([]string, error) {
	if a.conf.IsImageServer(remote) {
		ss, err := a.imageServer(remote)
		if err != nil {
			return nil, err
		}
		img, err := ss.Resolve(ctx, image, "")
		if err != nil {
			return nil, err
		}
		return img.Aliases, nil
	}
	c, err := a.client(remote)
	if err != nil {
		return nil, err
	}
	fp, err := resolveImage(ctx, c, image)
	if err != nil {
		return nil, err
	}
	img, _, err := c.GetImage(ctx, fp)
	if err != nil {
		return nil, err
	}
	return aliasNames(img), nil
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

// cmdImageExportSimplestreams writes a static image server. It is a `c`
// command rather than a separate tool because it needs what `c` already
// has: the remotes, the image export API, and the simplestreams package
// whose reader is the other half of the same format.
func (a *app) cmdImageExportSimplestreams() *cobra.Command {
	return &cobra.Command{
		Use:   "export-simplestreams <directory> [[<remote>:]<image>...]",
		Short: "Write images as a static simplestreams image server",
		Long: `Write images as a static simplestreams image server

Adds the images (all images of the default remote when none is named) to
the simplestreams tree in the directory, in the Linux Containers layout:
streams/v1/index.json, streams/v1/images.json and the image files under
images/. Served over HTTPS, the directory is an image server for c and lxc
(c remote add NAME URL --protocol simplestreams). Running it again with a
newer image of the same os/release/variant publishes a new version, which
images copied with --auto-update follow.

The product is named by the image's os, release and variant properties; its
aliases are os/release/variant, os/release for the default variant, and the
image's own aliases. Unified images are published split (metadata and rootfs
tarballs), which gives them another fingerprint.`,
		Example: `  c image export-simplestreams /srv/images my-base`,
		Args:    checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dir, names := args[0], args[1:]
			if len(names) == 0 {
				names = []string{a.conf.DefaultRemote + ":"}
			}
			work, err := os.MkdirTemp("", "cell-export-simplestreams-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			var tree []simplestreams.TreeImage
			for i, name := range names {
				imgs, c, err := a.exportTargets(ctx, name)
				if err != nil {
					return err
				}
				for j, img := range imgs {
					ti, err := a.exportForTree(ctx, c, img, filepath.Join(work, fmt.Sprintf("%d-%d", i, j)))
					if err != nil {
						return err
					}
					tree = append(tree, ti)
				}
			}
			fps, err := simplestreams.WriteTree(dir, tree)
			if err != nil {
				return err
			}
			for i, t := range tree {
				fmt.Fprintf(a.stdout, "%s/%s/%s: %s\n", strings.ToLower(t.OS), t.Release, t.Variant, fps[i])
			}
			return nil
		},
	}
}

// exportTargets lists the images an argument names: "remote:" is all of
// them, anything else one image.
func (a *app) exportTargets(ctx context.Context, arg string) ([]api.Image, *client.Client, error) {
	if strings.HasSuffix(arg, ":") {
		remote, _, err := a.conf.ParseRemote(arg)
		if err != nil {
			return nil, nil, err
		}
		c, err := a.client(remote)
		if err != nil {
			return nil, nil, err
		}
		imgs, err := c.GetImages(ctx)
		return imgs, c, err
	}
	c, fp, err := a.parseImage(ctx, arg)
	if err != nil {
		return nil, nil, err
	}
	img, _, err := c.GetImage(ctx, fp)
	if err != nil {
		return nil, nil, err
	}
	return []api.Image{*img}, c, nil
}

// exportForTree downloads an image into dir, split as image servers
// publish them, and describes it for the tree.
func (a *app) exportForTree(ctx context.Context, c *client.Client, img api.Image, dir string) (simplestreams.TreeImage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return simplestreams.TreeImage{}, err
	}
	meta, err := os.Create(filepath.Join(dir, "meta"))
	if err != nil {
		return simplestreams.TreeImage{}, err
	}
	defer meta.Close()
	rootfs, err := os.Create(filepath.Join(dir, "rootfs"))
	if err != nil {
		return simplestreams.TreeImage{}, err
	}
	defer rootfs.Close()
	res, err := c.ExportImage(ctx, img.Fingerprint, meta, rootfs, nil)
	if err != nil {
		return simplestreams.TreeImage{}, err
	}
	ti := simplestreams.TreeImage{
		MetaFile: meta.Name(), RootfsFile: rootfs.Name(), Architecture: img.Architecture,
		OS: img.Properties["os"], Release: img.Properties["release"], Variant: img.Properties["variant"],
		Aliases: aliasNames(&img), CreatedAt: img.CreatedAt,
	}
	if ti.OS == "" {
		ti.OS = "custom"
	}
	if ti.Release == "" {
		ti.Release = img.Fingerprint[:12]
	}
	if ti.Variant == "" {
		ti.Variant = "default"
	}
	if ti.CreatedAt.IsZero() {
		ti.CreatedAt = img.UploadedAt
	}
	if res.RootfsName != "" {
		magic := make([]byte, 4)
		_, _ = rootfs.ReadAt(magic, 0)
		ti.Squashfs = string(magic) == "hsqs"
		return ti, nil
	}
	// A unified image: split it.
	splitMeta, err := os.Create(filepath.Join(dir, "split-meta"))
	if err != nil {
		return ti, err
	}
	defer splitMeta.Close()
	splitRoot, err := os.Create(filepath.Join(dir, "split-rootfs"))
	if err != nil {
		return ti, err
	}
	defer splitRoot.Close()
	if err := images.SplitUnified(ctx, meta, splitMeta, splitRoot); err != nil {
		return ti, fmt.Errorf("image %s: %w", img.Fingerprint, err)
	}
	ti.MetaFile, ti.RootfsFile = splitMeta.Name(), splitRoot.Name()
	return ti, nil
}
