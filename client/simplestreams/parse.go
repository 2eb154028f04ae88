package simplestreams

import (
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"time"
)

// The JSON documents of a simplestreams tree. Only the fields Cell uses are
// decoded; both the Linux Containers image server and Ubuntu's cloud images
// publish these shapes.

// indexDoc is streams/v1/index.json.
type indexDoc struct {
	Format string                 `json:"format"` // "index:1.0"
	Index  map[string]indexStream `json:"index"`  // keyed by content id
}

type indexStream struct {
	DataType string   `json:"datatype"` // "image-downloads" for images
	Format   string   `json:"format"`   // "products:1.0"
	Path     string   `json:"path"`     // products file, relative to the base URL
	Products []string `json:"products"`
}

// productsDoc is a products file such as streams/v1/images.json.
type productsDoc struct {
	ContentID string             `json:"content_id"`
	DataType  string             `json:"datatype"`
	Format    string             `json:"format"` // "products:1.0"
	Products  map[string]product `json:"products"`
}

type product struct {
	Aliases      string             `json:"aliases"` // comma separated
	Arch         string             `json:"arch"`    // Debian names: amd64, arm64...
	OS           string             `json:"os"`
	Release      string             `json:"release"`
	ReleaseTitle string             `json:"release_title"`
	Variant      string             `json:"variant"` // Linux Containers only
	Version      string             `json:"version"` // Ubuntu only: "18.04"
	Versions     map[string]version `json:"versions"`
}

type version struct {
	Label string          `json:"label"` // Ubuntu: "release", "beta"...
	Items map[string]item `json:"items"`
}

type item struct {
	FType           string `json:"ftype"`
	Path            string `json:"path"`
	SHA256          string `json:"sha256"`
	Size            int64  `json:"size"`
	CombinedSHA256  string `json:"combined_sha256"` // older name of the root.tar.xz one
	CombinedRootXz  string `json:"combined_rootxz_sha256"`
	CombinedSquashF string `json:"combined_squashfs_sha256"`
}

// Item file types (the ftype field).
const (
	ftypeLXDMeta   = "lxd.tar.xz"
	ftypeIncusMeta = "incus.tar.xz"
	ftypeSquashfs  = "squashfs"
	ftypeRootXz    = "root.tar.xz"
)

// productsPaths returns the products files an index lists for image
// downloads, in content id order.
func productsPaths(data []byte) ([]string, error) {
	var idx indexDoc
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, err
	}
	if idx.Format != "" && idx.Format != "index:1.0" {
		return nil, fmt.Errorf("unsupported index format %q (want index:1.0)", idx.Format)
	}
	ids := make([]string, 0, len(idx.Index))
	for id := range idx.Index {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var paths []string
	for _, id := range ids {
		s := idx.Index[id]
		if s.DataType != "image-downloads" || s.Path == "" {
			continue
		}
		if s.Format != "" && s.Format != "products:1.0" {
			continue
		}
		paths = append(paths, s.Path)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("the index lists no image-downloads stream")
	}
	return paths, nil
}

// parseProducts decodes a products file into container images, newest
// version first within each product, products in id order.
func parseProducts(data []byte) ([]Image, error) {
	var doc productsDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Format != "" && doc.Format != "products:1.0" {
		return nil, fmt.Errorf("unsupported products format %q (want products:1.0)", doc.Format)
	}
	ids := make([]string, 0, len(doc.Products))
	for id := range doc.Products {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	var images []Image
	for _, id := range ids {
		p := doc.Products[id]
		var imgs []Image
		for serial, v := range p.Versions {
			if img, ok := containerImage(id, p, serial, v); ok {
				imgs = append(imgs, img)
			}
		}
		if len(imgs) == 0 {
			continue
		}
		sort.Slice(imgs, func(i, j int) bool { return newer(imgs[i], imgs[j]) })
		// Like LXD, only the newest version of a product carries the
		// aliases; older ones stay reachable by fingerprint.
		imgs[0].Aliases = productAliases(p)
		images = append(images, imgs...)
	}
	return images, nil
}

// containerImage builds the image of one product version, or reports false
// when the version has no container image (VM-only, no combined hash...).
func containerImage(id string, p product, serial string, v version) (Image, bool) {
	var meta, squash, rootxz *item
	for key := range v.Items {
		it := v.Items[key]
		if it.Path == "" {
			continue
		}
		switch it.FType {
		case ftypeLXDMeta, ftypeIncusMeta:
			if meta == nil || it.FType == ftypeLXDMeta {
				meta = &it
			}
		case ftypeSquashfs:
			squash = &it
		case ftypeRootXz:
			rootxz = &it
		}
	}
	if meta == nil {
		return Image{}, false
	}
	var fp string
	var rootfs *item
	switch {
	case squash != nil && meta.CombinedSquashF != "":
		fp, rootfs = meta.CombinedSquashF, squash
	case rootxz != nil && meta.CombinedRootXz != "":
		fp, rootfs = meta.CombinedRootXz, rootxz
	case rootxz != nil && meta.CombinedSHA256 != "":
		fp, rootfs = meta.CombinedSHA256, rootxz
	default:
		return Image{}, false
	}

	arch := KernelArchitecture(p.Arch)
	props := map[string]string{
		"architecture": arch,
		"serial":       serial,
	}
	setIf := func(k, v string) {
		if v != "" {
			props[k] = v
		}
	}
	setIf("os", p.OS)
	setIf("release", p.Release)
	setIf("variant", p.Variant)
	setIf("version", p.Version)
	setIf("label", v.Label)
	setIf("description", description(p, arch, serial, v.Label))

	return Image{
		Fingerprint:  strings.ToLower(fp),
		Product:      id,
		Architecture: arch,
		Properties:   props,
		CreatedAt:    parseSerial(serial),
		Size:         meta.Size + rootfs.Size,
		Meta:         File{Path: meta.Path, SHA256: strings.ToLower(meta.SHA256), Size: meta.Size, Type: meta.FType},
		Rootfs:       File{Path: rootfs.Path, SHA256: strings.ToLower(rootfs.SHA256), Size: rootfs.Size, Type: rootfs.FType},
	}, true
}

// description is "Debian bookworm amd64 (20241123_05:24)" or
// "ubuntu 18.04 LTS amd64 (release) (20230607)".
func description(p product, arch, serial, label string) string {
	title := p.ReleaseTitle
	if title == "" {
		title = p.Release
	}
	var parts []string
	for _, s := range []string{p.OS, title, p.Arch} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, arch)
	}
	d := strings.Join(parts, " ")
	if p.Variant != "" && p.Variant != "default" {
		d += " (" + p.Variant + ")"
	}
	if label != "" {
		d += " (" + label + ")"
	}
	return d + " (" + serial + ")"
}

// productAliases expands a product's aliases the way LXD users know them:
//   - every alias the server lists ("18.04", "b", "bionic"; "debian/12"...);
//   - on the Linux Containers layout (products with a variant) the
//     os/release and os/release/variant forms built from the product's own
//     fields, and the "default" variant implied: "debian/12" and
//     "debian/12/default" name the same image;
//   - each of the above followed by "/" and the product's architecture
//     ("debian/12/amd64", "debian/bookworm/default/amd64", "18.04/amd64").
func productAliases(p product) []string {
	var out []string
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	for _, a := range strings.Split(p.Aliases, ",") {
		a = strings.TrimSpace(a)
		add(a)
		if p.Variant == "default" && strings.Contains(a, "/") {
			if base, ok := strings.CutSuffix(a, "/default"); ok {
				add(base)
			} else if !strings.HasSuffix(a, "/"+p.Arch) {
				add(a + "/default")
			}
		}
	}
	if p.Variant != "" && p.OS != "" && p.Release != "" {
		base := strings.ToLower(p.OS) + "/" + p.Release
		add(base + "/" + p.Variant)
		if p.Variant == "default" {
			add(base)
		}
	}
	if p.Arch != "" {
		n := len(out)
		for _, a := range out[:n] {
			if !strings.HasSuffix(a, "/"+p.Arch) {
				add(a + "/" + p.Arch)
			}
		}
	}
	return out
}

// parseSerial reads the creation time out of a version key: "20241123_05:24"
// (Linux Containers) or "20230607", "20230607.1" (Ubuntu). Unknown shapes
// give the zero time.
func parseSerial(s string) time.Time {
	for _, layout := range []string{"20060102_15:04", "20060102_1504"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	if len(s) >= 8 {
		if t, err := time.Parse("20060102", s[:8]); err == nil {
			return t
		}
	}
	return time.Time{}
}

// newer orders images newest first: by creation time, then by serial.
func newer(a, b Image) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.Properties["serial"] > b.Properties["serial"]
}

// archNames maps Debian and Go architecture names to the kernel's (uname -m),
// which is what LXD and Cell put in an image's architecture.
var archNames = map[string]string{
	"amd64":    "x86_64",
	"x86_64":   "x86_64",
	"i386":     "i686",
	"386":      "i686",
	"i686":     "i686",
	"arm64":    "aarch64",
	"aarch64":  "aarch64",
	"armhf":    "armv7l",
	"arm":      "armv7l",
	"armv7l":   "armv7l",
	"armel":    "armv6l",
	"armv6l":   "armv6l",
	"ppc64el":  "ppc64le",
	"ppc64le":  "ppc64le",
	"powerpc":  "ppc",
	"ppc":      "ppc",
	"s390x":    "s390x",
	"riscv64":  "riscv64",
	"mips64el": "mips64",
	"loong64":  "loongarch64",
}

// KernelArchitecture returns the kernel name (x86_64, aarch64, ...) of an
// architecture given by its Debian or Go name (amd64, arm64, ...). Unknown
// names come back unchanged.
func KernelArchitecture(name string) string {
	if k, ok := archNames[strings.ToLower(name)]; ok {
		return k
	}
	return name
}

// HostArchitecture is the kernel name of the architecture this program runs on.
func HostArchitecture() string { return KernelArchitecture(runtime.GOARCH) }
