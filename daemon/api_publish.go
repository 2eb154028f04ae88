package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/images"
	"cell/shared/api"
	"cell/shared/idmap"
)

// imagesPost is the body of POST /1.0/images with what LXD added to it
// for publishing (the image_compression_algorithm extension).
type imagesPost struct {
	api.ImagesPost
	CompressionAlgorithm string `json:"compression_algorithm"`
}

// publishImage serves POST /1.0/images from an instance or a snapshot:
// the volume is packed into a unified image (metadata.yaml from the
// instance, its templates, the rootfs with container ownership). A running
// instance is refused: the client stops it first (lxc publish --force).
func (d *Daemon) publishImage(ctx context.Context, req imagesPost) (*operations.Operation, error) {
	if req.CompressionAlgorithm != "" && !slices.Contains(images.Compressions, req.CompressionAlgorithm) {
		return nil, badRequest("compression algorithm %q is not supported (use one of %s)", req.CompressionAlgorithm, strings.Join(images.Compressions, ", "))
	}
	for _, a := range req.Aliases {
		if err := validateAliasName(a.Name); err != nil {
			return nil, err
		}
		if _, err := d.db.ImageAlias(ctx, a.Name); err == nil {
			return nil, conflict("image alias %q already exists", a.Name)
		}
	}
	name := req.Source.Name
	instName, snapName, isSnap := strings.Cut(name, "/")
	if req.Source.Type == "snapshot" && !isSnap {
		return nil, badRequest("snapshot source %q must be INSTANCE/SNAPSHOT", name)
	}
	if instName == "" || (isSnap && snapName == "") {
		return nil, badRequest("image source needs the name of an instance or INSTANCE/SNAPSHOT")
	}
	inst, err := d.loadInstance(ctx, instName)
	if err != nil {
		return nil, err
	}
	var snap db.Snapshot
	if isSnap {
		if snap, err = d.db.Snapshot(ctx, inst.ID, snapName); err != nil {
			return nil, notFound("snapshot %q of instance %q not found", snapName, instName)
		}
	} else if d.runtimeState(inst.Name) != liblxc.Stopped {
		return nil, badRequest("instance %q is running: stop it first, or publish with --force to have it stopped and started again", instName)
	}

	op := d.ops.Start(ctx, operations.Spec{
		Description: "Creating image",
		Resources:   map[string][]string{"instances": {instanceURL(instName)}},
		Run: func(ctx context.Context, op *operations.Operation) error {
			unlock := d.locks.Lock("instance/" + instName)
			defer unlock()
			// It may have been started since the request was checked.
			if !isSnap && d.runtimeState(inst.Name) != liblxc.Stopped {
				return fmt.Errorf("instance %q was started: stop it to publish it", instName)
			}
			volume, pool, err := d.volumePath(inst)
			if err != nil {
				return err
			}
			lastIdmap := inst.Config[keyLastIdmap]
			if isSnap {
				volume = pool.SnapshotPath(inst.Name, snap.Name)
				if m := snap.Config[keyLastIdmap]; m != "" {
					lastIdmap = m
				}
			}
			var m idmap.Map
			if lastIdmap != "" && lastIdmap != "privileged" {
				if m, err = idmap.Parse(lastIdmap); err != nil {
					return fmt.Errorf("instance %q: %w", instName, err)
				}
			}
			md, err := publishMetadata(volume, inst.Architecture, req.Properties)
			if err != nil {
				return err
			}
			var last time.Time
			progress := func(done int64) {
				if time.Since(last) >= 500*time.Millisecond {
					last = time.Now()
					op.SetMetadata(map[string]any{"create_image_from_container_pack_progress": "Image pack: " + humanBytes(done)})
				}
			}
			info, err := d.packImage(ctx, volume, images.PackOptions{Metadata: md, Idmap: m, Compression: req.CompressionAlgorithm, Progress: progress})
			if errors.Is(err, images.ErrExists) {
				return fmt.Errorf("an identical image already exists: %w", err)
			}
			if err != nil {
				return fmt.Errorf("publish %s: %w", name, err)
			}
			img, err := d.recordImage(ctx, info, req.Filename, req.Public, req.Properties, req.Aliases)
			if err != nil {
				return err
			}
			op.SetMetadata(map[string]any{"fingerprint": img.Fingerprint, "size": img.Size})
			return nil
		},
	})
	return op, nil
}

// publishMetadata is the metadata.yaml of an image made from volume:
// the instance's own (its templates, its properties), with the instance's
// architecture, today's date and the requested properties.
func publishMetadata(volume, arch string, props map[string]string) (api.ImageMetadata, error) {
	md, err := images.ReadVolumeMetadata(volume)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return md, fmt.Errorf("instance metadata: %w", err)
	}
	md.Architecture = arch
	md.CreationDate = time.Now().Unix()
	md.ExpiryDate = 0
	if md.Properties == nil {
		md.Properties = map[string]string{}
	}
	for k, v := range props {
		md.Properties[k] = v
	}
	return md, nil
}

// packImage packs a volume straight into the store, through a pipe: the
// image is hashed and checked as it is written, and never copied twice.
func (d *Daemon) packImage(ctx context.Context, volume string, opts images.PackOptions) (images.Info, error) {
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		err := images.Pack(ctx, pw, volume, opts)
		pw.CloseWithError(err)
		packed <- err
	}()
	info, err := d.images.Add(ctx, pr, nil, "")
	// Unblock the packer if the store stopped reading first.
	pr.CloseWithError(errors.New("image store stopped reading"))
	if perr := <-packed; perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		if info.Fingerprint != "" {
			_ = d.images.Delete(info.Fingerprint)
		}
		return images.Info{}, err
	}
	return info, nil
}
