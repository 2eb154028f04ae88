package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"

	"github.com/flosch/pongo2/v6"
	"golang.org/x/sys/unix"

	"cell/shared/idmap"
	"cell/shared/rootfs"
)

// TemplateContext is what templates see, under LXD's names.
type TemplateContext struct {
	Trigger string // "create", "copy" or "start"; RenderTemplates sets it
	Path    string // the file being written; RenderTemplates sets it
	// Container has LXD's keys: name, architecture, privileged
	// ("true"/"false"), ephemeral. Templates see it as both "container"
	// and "instance".
	Container  map[string]string
	Config     map[string]string // the instance's expanded config
	Devices    map[string]map[string]string
	Properties map[string]string // the template's properties; RenderTemplates sets it
}

// maxTemplateSize bounds a template file, which is read into memory.
const maxTemplateSize = 4 << 20

// RenderTemplates renders every template of dir/metadata.yaml whose "when"
// includes trigger into dir/rootfs, owned by the container's root
// (m.ShiftUID(0), m.ShiftGID(0)) with mode 0644. Template files are read
// from dir/templates and targets written in dir/rootfs, both resolved with
// RESOLVE_IN_ROOT: a template cannot read a host file, and a target that is
// a symlink is followed only inside the rootfs. A target that exists but
// is not a regular file (a fifo or device a container made) is an error.
func RenderTemplates(ctx context.Context, dir, trigger string, tc TemplateContext, m idmap.Map) error {
	md, err := ReadVolumeMetadata(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // an instance made empty, not from an image, has no templates
	}
	if err != nil {
		return err
	}
	var paths []string
	for p, t := range md.Templates {
		if t != nil && slices.Contains(t.When, trigger) {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return nil
	}
	sort.Strings(paths)

	tplDir, err := rootfs.Open(filepath.Join(dir, "templates"))
	if err != nil {
		return fmt.Errorf("image templates: %w", err)
	}
	defer tplDir.Close()
	root, err := rootfs.Open(filepath.Join(dir, "rootfs"))
	if err != nil {
		return fmt.Errorf("instance rootfs: %w", err)
	}
	defer root.Close()
	uid, gid := m.ShiftUID(0), m.ShiftGID(0)

	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := md.Templates[p]
		tc.Trigger, tc.Path, tc.Properties = trigger, p, t.Properties
		if err := renderOne(tplDir, root, t.Template, p, t.CreateOnly, tc, int(uid), int(gid)); err != nil {
			return fmt.Errorf("template %s for %s: %w", t.Template, p, err)
		}
	}
	return nil
}

func renderOne(tplDir, root *rootfs.Root, tplName, target string, createOnly bool, tc TemplateContext, uid, gid int) error {
	if createOnly {
		f, err := root.OpenFile(target, unix.O_PATH, 0)
		if err == nil {
			f.Close()
			return nil
		}
	}
	src, err := readRegular(tplDir, tplName, maxTemplateSize)
	if err != nil {
		return err
	}
	out, err := render(src, tc)
	if err != nil {
		return err
	}
	return writeInRoot(root, target, out, uid, gid)
}

// readRegular reads a regular file inside root. O_NONBLOCK keeps a fifo
// from blocking the open; it is then refused for not being a regular file.
func readRegular(root *rootfs.Root, name string, limit int64) ([]byte, error) {
	f, err := root.OpenFile(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkRegular(f); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

func checkRegular(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s is not a regular file", f.Name())
	}
	return nil
}

// noLoader is the only loader of the template set: templates come from the
// image and must never read files, on the host or elsewhere.
type noLoader struct{}

func (noLoader) Abs(base, name string) string { return name }

func (noLoader) Get(name string) (io.Reader, error) {
	return nil, fmt.Errorf("templates cannot load files (%q)", name)
}

// newTemplateSet makes a sandboxed set. The tags that read files are
// banned: include/import/extends would go through the loader (which
// refuses anyway), but ssi reads the file system directly. A set is made
// per render because pongo2 sets are not safe for concurrent first use.
func newTemplateSet() (*pongo2.TemplateSet, error) {
	set := pongo2.NewSet("cell-image-templates", noLoader{})
	for _, tag := range []string{"include", "import", "extends", "ssi"} {
		if err := set.BanTag(tag); err != nil {
			return nil, fmt.Errorf("sandbox templates: %w", err)
		}
	}
	return set, nil
}

func render(src []byte, tc TemplateContext) ([]byte, error) {
	set, err := newTemplateSet()
	if err != nil {
		return nil, err
	}
	// Templates write config files, not HTML: no autoescaping (as LXD).
	body := append(append([]byte("{% autoescape off %}"), src...), "{% endautoescape %}"...)
	tpl, err := set.FromBytes(body)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	config := tc.Config
	out, err := tpl.ExecuteBytes(pongo2.Context{
		"trigger":    tc.Trigger,
		"path":       tc.Path,
		"container":  tc.Container,
		"instance":   tc.Container,
		"config":     tc.Config,
		"devices":    tc.Devices,
		"properties": tc.Properties,
		// LXD's helper: an instance config key, or a default.
		"config_get": func(key, def string) string {
			if v, ok := config[key]; ok {
				return v
			}
			return def
		},
	})
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	return out, nil
}

// writeInRoot writes data to target inside root, creating missing parent
// directories (owned by uid:gid, mode 0755).
func writeInRoot(root *rootfs.Root, target string, data []byte, uid, gid int) error {
	if err := mkdirAllIn(root, path.Dir(rootfs.Clean(target)), uid, gid); err != nil {
		return err
	}
	// No O_TRUNC: the file is checked to be a regular file before it is
	// changed, so a device node at that path is never truncated.
	f, err := root.OpenFile(target, unix.O_WRONLY|unix.O_CREAT|unix.O_NONBLOCK|unix.O_NOCTTY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := checkRegular(f); err != nil {
		return err
	}
	fd := int(f.Fd())
	if err := unix.Ftruncate(fd, 0); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := unix.Fchmod(fd, 0o644); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return f.Close()
}

// mkdirAllIn makes the missing directories of dir (a clean absolute path
// inside root), owned by uid:gid with mode 0755.
func mkdirAllIn(root *rootfs.Root, dir string, uid, gid int) error {
	if dir == "/" {
		return nil
	}
	d, err := root.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil {
		return d.Close()
	}
	if !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := mkdirAllIn(root, path.Dir(dir), uid, gid); err != nil {
		return err
	}
	parent, name, err := root.OpenParent(dir)
	if err != nil {
		return err
	}
	defer parent.Close()
	nd, created, err := mkdirIn(parent, name, false)
	if err != nil || !created {
		return err
	}
	defer nd.Close()
	if err := unix.Fchown(int(nd.Fd()), uid, gid); err != nil {
		return fmt.Errorf("chown directory: %w", err)
	}
	return unix.Fchmod(int(nd.Fd()), 0o755)
}
