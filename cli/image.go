package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/client"
	"cell/shared/api"
)

// errImageNotFound matches LXD's message.
var errImageNotFound = errors.New("Image not found")

// resolveFingerprint turns a fingerprint prefix into the full fingerprint.
func resolveFingerprint(ctx context.Context, c *client.Client, prefix string) (string, error) {
	if prefix == "" {
		return "", errImageNotFound
	}
	fps, err := c.GetImageFingerprints(ctx)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, fp := range fps {
		if strings.HasPrefix(fp, prefix) {
			matches = append(matches, fp)
		}
	}
	switch len(matches) {
	case 0:
		return "", errImageNotFound
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("Image identifier %q is ambiguous: it matches %d images", prefix, len(matches))
}

// resolveImage turns an alias or fingerprint prefix into a fingerprint;
// aliases win, as in lxc.
func resolveImage(ctx context.Context, c *client.Client, name string) (string, error) {
	alias, _, err := c.GetImageAlias(ctx, name)
	if err == nil {
		return alias.Target, nil
	}
	if !client.IsNotFound(err) {
		return "", err
	}
	return resolveFingerprint(ctx, c, name)
}

// parseImage splits "[remote:]image" and resolves the image.
func (a *app) parseImage(ctx context.Context, arg string) (*client.Client, string, error) {
	c, name, err := a.parseOne(arg)
	if err != nil {
		return nil, "", err
	}
	fp, err := resolveImage(ctx, c, name)
	if err != nil {
		return nil, "", err
	}
	return c, fp, nil
}

func (a *app) cmdImage() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
	}
	cmd.AddCommand(
		a.cmdImageImport(), a.cmdImageList(), a.cmdImageShow(), a.cmdImageInfo(),
		a.cmdImageEdit(), a.cmdImageDelete(), a.cmdImageExport(), a.cmdImageAlias(),
		a.cmdImageCopy(), a.cmdImageRefresh(), a.cmdImageExportSimplestreams(),
	)
	return cmd
}

func (a *app) cmdImageImport() *cobra.Command {
	var aliases []string
	var public bool
	cmd := &cobra.Command{
		Use:   "import <tarball> [<rootfs tarball>] [<remote>:] [key=value...]",
		Short: "Import images into the image store",
		Long: `Import images into the image store

A unified image is one tarball holding metadata.yaml and rootfs/; a split
image is a metadata tarball plus a root filesystem (tarball or squashfs).`,
		Args: checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			remote := a.conf.DefaultRemote
			var files []string
			props := map[string]string{}
			for _, arg := range args {
				switch {
				case strings.HasSuffix(arg, ":") && !strings.Contains(arg, "/"):
					r, _, err := a.conf.ParseRemote(arg)
					if err != nil {
						return err
					}
					remote = r
				case strings.Contains(arg, "=") && !fileExists(arg):
					k, v, err := parseKeyValue(arg)
					if err != nil {
						return err
					}
					props[k] = v
				default:
					files = append(files, arg)
				}
			}
			if len(files) == 0 || len(files) > 2 {
				return errInvalidArgs
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			fp, err := a.importImage(ctx, c, files, props, public)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Image imported with fingerprint: %s\n", fp)
			return ensureAliases(ctx, c, fp, aliases)
		},
	}
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "New aliases to add to the image")
	cmd.Flags().BoolVar(&public, "public", false, "Make image public")
	return cmd
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// importImage uploads one (unified) or two (split) files and returns the
// new image's fingerprint.
func (a *app) importImage(ctx context.Context, c *client.Client, files []string, props map[string]string, public bool) (string, error) {
	meta, err := os.Open(files[0])
	if err != nil {
		return "", err
	}
	defer meta.Close()
	st, err := meta.Stat()
	if err != nil {
		return "", err
	}
	if st.IsDir() {
		return "", fmt.Errorf("%s is a directory: importing directories is not supported yet, pack it with tar first", files[0])
	}
	up := client.ImageUpload{
		Meta:       meta,
		MetaName:   filepath.Base(files[0]),
		MetaSize:   st.Size(),
		Public:     public,
		Properties: props,
	}
	total := st.Size()
	if len(files) == 2 {
		rootfs, err := os.Open(files[1])
		if err != nil {
			return "", err
		}
		defer rootfs.Close()
		rst, err := rootfs.Stat()
		if err != nil {
			return "", err
		}
		up.Rootfs, up.RootfsName = rootfs, filepath.Base(files[1])
		total += rst.Size()
	}

	progress := a.newProgress("Transferring image", total)
	up.Progress = progress.update
	op, err := c.CreateImage(ctx, up)
	progress.done()
	if err != nil {
		return "", err
	}
	if err := op.Wait(ctx); err != nil {
		return "", err
	}
	fp := client.ImageFingerprintFromOperation(&op.Operation)
	if fp == "" {
		return "", errors.New("the server did not report the new image's fingerprint")
	}
	return fp, nil
}

// ensureAliases points each alias at fp, replacing aliases that exist.
func ensureAliases(ctx context.Context, c *client.Client, fp string, aliases []string) error {
	for _, name := range aliases {
		if _, _, err := c.GetImageAlias(ctx, name); err == nil {
			if err := c.DeleteImageAlias(ctx, name); err != nil {
				return err
			}
		}
		alias := api.ImageAliasesPost{}
		alias.Name = name
		alias.Target = fp
		if err := c.CreateImageAlias(ctx, alias); err != nil {
			return fmt.Errorf("create alias %s: %w", name, err)
		}
	}
	return nil
}

// imageColumns are lxc's image list columns.
var imageColumns = map[rune]struct {
	header string
	data   func(*api.Image) string
}{
	'l': {"ALIAS", shortestAlias},
	'L': {"ALIASES", func(i *api.Image) string {
		names := aliasNames(i)
		return strings.Join(names, "\n")
	}},
	'f': {"FINGERPRINT", func(i *api.Image) string { return i.Fingerprint[:min(12, len(i.Fingerprint))] }},
	'F': {"FINGERPRINT", func(i *api.Image) string { return i.Fingerprint }},
	'p': {"PUBLIC", func(i *api.Image) string { return strings.ToLower(yesNo(i.Public)) }},
	'd': {"DESCRIPTION", func(i *api.Image) string { return i.Properties["description"] }},
	'a': {"ARCHITECTURE", func(i *api.Image) string { return i.Architecture }},
	's': {"SIZE", func(i *api.Image) string { return fmt.Sprintf("%.2fMB", float64(i.Size)/1024/1024) }},
	'u': {"UPLOAD DATE", func(i *api.Image) string { return i.UploadedAt.UTC().Format("Jan 2, 2006 at 3:04pm (MST)") }},
	't': {"TYPE", func(i *api.Image) string {
		if i.Type == "" {
			return "CONTAINER"
		}
		return strings.ToUpper(i.Type)
	}},
}

func aliasNames(i *api.Image) []string {
	names := make([]string, 0, len(i.Aliases))
	for _, al := range i.Aliases {
		names = append(names, al.Name)
	}
	sort.Strings(names)
	return names
}

// shortestAlias shows the shortest alias and how many others there are.
func shortestAlias(i *api.Image) string {
	names := aliasNames(i)
	if len(names) == 0 {
		return ""
	}
	shortest := names[0]
	for _, n := range names[1:] {
		if len(n) < len(shortest) {
			shortest = n
		}
	}
	if len(names) > 1 {
		return fmt.Sprintf("%s (%d more)", shortest, len(names)-1)
	}
	return shortest
}

// imageMatches applies an image list filter: key=value on a property, or a
// part of the fingerprint or of an alias.
func imageMatches(filter string, i *api.Image) bool {
	if k, v, ok := strings.Cut(filter, "="); ok {
		return matchValue(v, i.Properties[k])
	}
	if strings.Contains(i.Fingerprint, filter) {
		return true
	}
	for _, al := range i.Aliases {
		if strings.Contains(al.Name, filter) {
			return true
		}
	}
	return false
}

func (a *app) cmdImageList() *cobra.Command {
	var columns, format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:] [<filter>...]",
		Aliases: []string{"ls"},
		Short:   "List images",
		Long: `List images

Filters are key=value on a property, or a part of the fingerprint or of an
alias name.

Columns: l shortest alias, L all aliases, f fingerprint, F long
fingerprint, p public, d description, a architecture, s size, u upload
date, t type.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := a.conf.DefaultRemote
			if len(args) > 0 && strings.HasSuffix(args[0], ":") {
				r, _, err := a.conf.ParseRemote(args[0])
				if err != nil {
					return err
				}
				remote, args = r, args[1:]
			}
			var images []api.Image
			if a.conf.IsImageServer(remote) {
				list, err := a.simplestreamsImages(cmd.Context(), remote)
				if err != nil {
					return err
				}
				images = list
			} else {
				c, err := a.client(remote)
				if err != nil {
					return err
				}
				list, err := c.GetImages(cmd.Context())
				if err != nil {
					return err
				}
				images = list
			}
			var header []string
			var getters []func(*api.Image) string
			for _, r := range strings.ReplaceAll(columns, ",", "") {
				col, ok := imageColumns[r]
				if !ok {
					return fmt.Errorf("Unknown column shorthand char '%c' in %q", r, columns)
				}
				header = append(header, col.header)
				getters = append(getters, col.data)
			}
			shown := []api.Image{}
			var rows [][]string
			for i := range images {
				ok := true
				for _, f := range args {
					ok = ok && imageMatches(f, &images[i])
				}
				if !ok {
					continue
				}
				shown = append(shown, images[i])
				row := make([]string, len(getters))
				for j, g := range getters {
					row[j] = g(&images[i])
				}
				rows = append(rows, row)
			}
			sortRows(rows)
			return renderTable(a.stdout, format, header, rows, shown)
		},
	}
	cmd.Flags().StringVarP(&columns, "columns", "c", "lfpdatsu", "Columns")
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdImageShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show [<remote>:]<image>",
		Short: "Show image properties",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if img, ok, err := a.imageOnServer(cmd.Context(), args[0]); ok || err != nil {
				if err != nil {
					return err
				}
				return a.printYAML(img.ImagePut)
			}
			c, fp, err := a.parseImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			img, _, err := c.GetImage(cmd.Context(), fp)
			if err != nil {
				return err
			}
			return a.printYAML(img.ImagePut)
		},
	}
}

func (a *app) printYAML(v any) error {
	out, err := marshalYAML(v)
	if err != nil {
		return err
	}
	_, err = a.stdout.Write(out)
	return err
}

func (a *app) cmdImageInfo() *cobra.Command {
	return &cobra.Command{
		Use:   "info [<remote>:]<image>",
		Short: "Show useful information about images",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if img, ok, err := a.imageOnServer(cmd.Context(), args[0]); ok || err != nil {
				if err != nil {
					return err
				}
				a.printImageInfo(img)
				return nil
			}
			c, fp, err := a.parseImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			img, _, err := c.GetImage(cmd.Context(), fp)
			if err != nil {
				return err
			}
			a.printImageInfo(img)
			return nil
		},
	}
}

func (a *app) printImageInfo(img *api.Image) {
	w := a.stdout
	never := func(s string) string {
		if s == "" {
			return "never"
		}
		return s
	}
	fmt.Fprintf(w, "Fingerprint: %s\n", img.Fingerprint)
	fmt.Fprintf(w, "Size: %.2fMB\n", float64(img.Size)/1024/1024)
	fmt.Fprintf(w, "Architecture: %s\n", img.Architecture)
	typ := img.Type
	if typ == "" {
		typ = "container"
	}
	fmt.Fprintf(w, "Type: %s\n", typ)
	fmt.Fprintf(w, "Public: %s\n", strings.ToLower(yesNo(img.Public)))
	fmt.Fprintln(w, "Timestamps:")
	if d := formatDate(img.CreatedAt); d != "" {
		fmt.Fprintf(w, "    Created: %s\n", d)
	}
	fmt.Fprintf(w, "    Uploaded: %s\n", formatDate(img.UploadedAt))
	fmt.Fprintf(w, "    Expires: %s\n", never(formatDate(img.ExpiresAt)))
	fmt.Fprintf(w, "    Last used: %s\n", never(formatDate(img.LastUsedAt)))
	fmt.Fprintln(w, "Properties:")
	keys := make([]string, 0, len(img.Properties))
	for k := range img.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "    %s: %s\n", k, img.Properties[k])
	}
	fmt.Fprintln(w, "Aliases:")
	for _, n := range aliasNames(img) {
		fmt.Fprintf(w, "    - %s\n", n)
	}
	fmt.Fprintf(w, "Cached: %s\n", strings.ToLower(yesNo(img.Cached)))
	if img.AutoUpdate {
		fmt.Fprintln(w, "Auto update: enabled")
	} else {
		fmt.Fprintln(w, "Auto update: disabled")
	}
	fmt.Fprintln(w, "Profiles:")
	for _, p := range img.Profiles {
		fmt.Fprintf(w, "    - %s\n", p)
	}
}

func (a *app) cmdImageEdit() *cobra.Command {
	return &cobra.Command{
		Use:   "edit [<remote>:]<image>",
		Short: "Edit image properties",
		Example: `  c image edit <image>
      Launch a text editor to edit the properties

  c image edit <image> < image.yaml
      Load the image properties from a YAML file`,
		Args: checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, fp, err := a.parseImage(ctx, args[0])
			if err != nil {
				return err
			}
			img, etag, err := c.GetImage(ctx, fp)
			if err != nil {
				return err
			}
			return a.editYAML(img.ImagePut, func(data []byte) error {
				var put api.ImagePut
				if err := yaml.Unmarshal(data, &put); err != nil {
					return err
				}
				return c.UpdateImage(ctx, fp, put, etag)
			})
		},
	}
}

func (a *app) cmdImageDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete [<remote>:]<image> [[<remote>:]<image>...]",
		Aliases: []string{"rm"},
		Short:   "Delete images",
		Args:    checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			for _, arg := range args {
				c, fp, err := a.parseImage(ctx, arg)
				if err != nil {
					return err
				}
				op, err := c.DeleteImage(ctx, fp)
				if err != nil {
					return err
				}
				if err := op.Wait(ctx); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) cmdImageExport() *cobra.Command {
	return &cobra.Command{
		Use:   "export [<remote>:]<image> [<target>]",
		Short: "Export and download images",
		Long: `Export and download images

The output target is optional and defaults to the working directory. A
directory target receives the files under the server's names. Any other
target names the file: a unified image gets the server's extension added
(TARGET.tar.xz); a split image gives TARGET (metadata) and TARGET.root.`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, fp, err := a.parseImage(ctx, args[0])
			if err != nil {
				return err
			}
			target := "."
			if len(args) == 2 {
				target = args[1]
			}
			if err := a.exportImage(ctx, c, fp, target); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Image exported successfully!")
			return nil
		},
	}
}

// exportImage downloads an image to temporary files beside the target and
// renames them once the server told their names.
func (a *app) exportImage(ctx context.Context, c *client.Client, fp, target string) error {
	dir, base := target, ""
	if st, err := os.Stat(target); err != nil || !st.IsDir() {
		dir, base = filepath.Dir(target), filepath.Base(target)
	}
	meta, err := os.CreateTemp(dir, ".cell-export-meta-*")
	if err != nil {
		return err
	}
	defer os.Remove(meta.Name())
	defer meta.Close()
	rootfs, err := os.CreateTemp(dir, ".cell-export-rootfs-*")
	if err != nil {
		return err
	}
	defer os.Remove(rootfs.Name())
	defer rootfs.Close()

	var total int64
	if img, _, err := c.GetImage(ctx, fp); err == nil {
		total = img.Size
	}
	progress := a.newProgress("Exporting the image", total)
	res, err := c.ExportImage(ctx, fp, meta, rootfs, progress.update)
	progress.done()
	if err != nil {
		return err
	}

	name := func(serverName, fallback string) string {
		if serverName == "" {
			serverName = fallback
		}
		serverName = filepath.Base(serverName)
		if base == "" {
			return filepath.Join(dir, serverName)
		}
		return filepath.Join(dir, base+fileExtension(serverName))
	}
	metaName := name(res.MetaName, fp+".tar.xz")
	if res.RootfsName != "" {
		// A split image to a named target: TARGET and TARGET.root, as lxc
		// names them.
		rootfsName := name(res.RootfsName, fp+".squashfs")
		if base != "" {
			metaName = filepath.Join(dir, base)
			rootfsName = metaName + ".root"
		}
		if err := closeAndRename(rootfs, rootfsName); err != nil {
			return err
		}
	}
	return closeAndRename(meta, metaName)
}

func closeAndRename(f *os.File, to string) error {
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), to); err != nil {
		return err
	}
	return os.Chmod(to, 0o644)
}

// fileExtension returns the extension of an image file name, compound ones
// like ".tar.xz" included.
func fileExtension(name string) string {
	for _, ext := range []string{".tar.xz", ".tar.gz", ".tar.bz2", ".tar.zst", ".tar.lzma", ".tar"} {
		if strings.HasSuffix(name, ext) {
			return ext
		}
	}
	return filepath.Ext(name)
}

func (a *app) cmdImageRefresh() *cobra.Command {
	return &cobra.Command{
		Use:   "refresh [<remote>:]<image> [[<remote>:]<image>...]",
		Short: "Refresh images",
		Long: `Refresh images

Look for a newer version of each image on the image server it came from.
A newer version is downloaded and takes over the image's aliases.`,
		Args: checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			for _, arg := range args {
				c, fp, err := a.parseImage(ctx, arg)
				if err != nil {
					return err
				}
				op, err := c.RefreshImage(ctx, fp)
				if err != nil {
					return err
				}
				if err := a.waitDownload(ctx, c, op); err != nil {
					return err
				}
				if refreshed, _ := op.Metadata["refreshed"].(bool); refreshed {
					fmt.Fprintln(a.stdout, "Image refreshed successfully!")
				} else {
					fmt.Fprintln(a.stdout, "Image already up to date.")
				}
			}
			return nil
		},
	}
}

func (a *app) cmdImageAlias() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alias",
		Short: "Manage image aliases",
	}
	var description string
	create := &cobra.Command{
		Use:   "create [<remote>:]<alias> <fingerprint>",
		Short: "Create aliases for existing images",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			fp, err := resolveFingerprint(ctx, c, args[1])
			if err != nil {
				return err
			}
			alias := api.ImageAliasesPost{}
			alias.Name, alias.Target, alias.Description = name, fp, description
			return c.CreateImageAlias(ctx, alias)
		},
	}
	create.Flags().StringVar(&description, "description", "", "Alias description")

	del := &cobra.Command{
		Use:     "delete [<remote>:]<alias>",
		Aliases: []string{"rm"},
		Short:   "Delete image aliases",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			return c.DeleteImageAlias(cmd.Context(), name)
		},
	}

	rename := &cobra.Command{
		Use:     "rename [<remote>:]<alias> <new-name>",
		Aliases: []string{"mv"},
		Short:   "Rename aliases",
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			return c.RenameImageAlias(cmd.Context(), name, args[1])
		},
	}

	var format string
	list := &cobra.Command{
		Use:     "list [<remote>:] [<filters>...]",
		Aliases: []string{"ls"},
		Short:   "List image aliases",
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := a.conf.DefaultRemote
			if len(args) > 0 && strings.HasSuffix(args[0], ":") {
				r, _, err := a.conf.ParseRemote(args[0])
				if err != nil {
					return err
				}
				remote, args = r, args[1:]
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			aliases, err := c.GetImageAliases(cmd.Context())
			if err != nil {
				return err
			}
			shown := []api.ImageAliasesEntry{}
			var rows [][]string
			for _, al := range aliases {
				ok := len(args) == 0
				for _, f := range args {
					ok = ok || strings.Contains(al.Name, f)
				}
				if !ok {
					continue
				}
				shown = append(shown, al)
				typ := al.Type
				if typ == "" {
					typ = "container"
				}
				rows = append(rows, []string{al.Name, al.Target[:min(12, len(al.Target))], strings.ToUpper(typ), al.Description})
			}
			sortRows(rows)
			return renderTable(a.stdout, format, []string{"ALIAS", "FINGERPRINT", "TYPE", "DESCRIPTION"}, rows, shown)
		},
	}
	list.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")

	cmd.AddCommand(create, del, rename, list)
	return cmd
}
