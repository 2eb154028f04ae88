package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5"
	"golang.org/x/sys/unix"

	"cell/shared/api"
	"cell/shared/idmap"
)

// getInstanceDiff answers GET /1.0/instances/{name}/diff[?snapshot=S]:
// the files added, changed and deleted in the instance's root filesystem
// since its image (unpacked afresh to compare with) or since a snapshot,
// as `docker diff` lists them. A deleted directory is listed alone; an
// added one with everything in it.
func (d *Daemon) getInstanceDiff(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	inst, err := d.loadInstance(ctx, chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	volume, pool, err := d.volumePath(inst)
	if err != nil {
		return err
	}
	current, err := lastIdmap(inst.Config)
	if err != nil {
		return err
	}
	var base string
	var baseMap idmap.Map
	if snap := r.URL.Query().Get("snapshot"); snap != "" {
		_, s, err := d.loadSnapshot(ctx, inst.Name, snap)
		if err != nil {
			return err
		}
		if baseMap, err = lastIdmap(s.Config); err != nil {
			return err
		}
		base = filepath.Join(pool.SnapshotPath(inst.Name, snap), "rootfs")
	} else {
		fp := inst.Config[keyBaseImage]
		if fp == "" {
			return badRequest("instance %q was not made from an image: give a snapshot to compare with", inst.Name)
		}
		if _, err := d.db.Image(ctx, fp); err != nil {
			return badRequest("the image of instance %q (%s) is no longer on this server: give a snapshot to compare with", inst.Name, fp[:12])
		}
		tmp, err := os.MkdirTemp(d.dir, ".diff-")
		if err != nil {
			return fmt.Errorf("make a directory to unpack the image in: %w", err)
		}
		defer os.RemoveAll(tmp)
		base, baseMap = filepath.Join(tmp, "rootfs"), current
		if err := d.images.Unpack(ctx, fp, tmp, current); err != nil {
			return fmt.Errorf("unpack image %s to compare with: %w", fp[:12], err)
		}
	}
	changes, err := diffTrees(ctx, base, baseMap, filepath.Join(volume, "rootfs"), current)
	if err != nil {
		return err
	}
	return syncResponse(w, changes)
}

// lastIdmap is the map the files of an instance (or snapshot) are
// shifted to.
func lastIdmap(cfg map[string]string) (idmap.Map, error) {
	last := cfg[keyLastIdmap]
	if last == "" || last == "privileged" {
		return idmap.Map{}, nil
	}
	return idmap.Parse(last)
}

// diffEntry is what diffTrees knows of one file.
type diffEntry struct {
	mode     fs.FileMode
	uid, gid int64 // as seen inside the container
	size     int64
	rdev     uint64
	link     string
}

// scanTree lists every file under root by its path inside the container,
// never following a symlink.
func scanTree(ctx context.Context, root string, m idmap.Map) (map[string]diffEntry, error) {
	out := map[string]diffEntry{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		e := diffEntry{mode: de.Type() | fs.FileMode(st.Mode&0o7777), uid: m.UnshiftUID(int64(st.Uid)),
			gid: m.UnshiftGID(int64(st.Gid)), size: st.Size, rdev: st.Rdev}
		if de.IsDir() {
			e.size = 0 // varies with the filesystem as entries come and go
		}
		if de.Type()&fs.ModeSymlink != 0 {
			e.link, _ = os.Readlink(p)
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return out, nil
}

// diffTrees compares tree b (the instance's) with tree a (the base).
func diffTrees(ctx context.Context, a string, am idmap.Map, b string, bm idmap.Map) ([]api.InstanceDiffEntry, error) {
	before, err := scanTree(ctx, a, am)
	if err != nil {
		return nil, err
	}
	after, err := scanTree(ctx, b, bm)
	if err != nil {
		return nil, err
	}
	out := []api.InstanceDiffEntry{}
	for p, e := range after {
		if p == "/" {
			continue
		}
		old, ok := before[p]
		switch {
		case !ok:
			out = append(out, api.InstanceDiffEntry{Path: p, Kind: "A"})
		case old != e:
			out = append(out, api.InstanceDiffEntry{Path: p, Kind: "C"})
		case e.mode.IsRegular():
			same, err := sameContent(filepath.Join(a, p), filepath.Join(b, p))
			if err != nil {
				return nil, err
			}
			if !same {
				out = append(out, api.InstanceDiffEntry{Path: p, Kind: "C"})
			}
		}
	}
	for p := range before {
		if _, ok := after[p]; ok {
			continue
		}
		// Only the top of a deleted tree.
		if _, parentInBase := before[filepath.Dir(p)]; parentInBase {
			if _, stillThere := after[filepath.Dir(p)]; !stillThere {
				continue
			}
		}
		out = append(out, api.InstanceDiffEntry{Path: p, Kind: "D"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// sameContent compares two regular files of the same size. Neither is
// opened through a symlink: the container may swap one in.
func sameContent(a, b string) (bool, error) {
	open := func(p string) (*os.File, error) {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p, err)
		}
		return os.NewFile(uintptr(fd), p), nil
	}
	fa, err := open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	bufA, bufB := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, errA := io.ReadFull(fa, bufA)
		nb, errB := io.ReadFull(fb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if endA || endB {
			return endA && endB, nil
		}
		if errA != nil || errB != nil {
			return false, errors.Join(errA, errB)
		}
	}
}
