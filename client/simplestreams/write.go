package simplestreams

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// TreeImage is an image to add to a static simplestreams tree: a metadata
// tarball and a root file system (tarball or squashfs), with what the
// index says about them.
type TreeImage struct {
	MetaFile   string // local path of the metadata tarball
	RootfsFile string // local path of the rootfs: a tarball, or a squashfs when Squashfs
	Squashfs   bool

	OS, Release, Variant string // the product: os/release/variant
	Architecture         string // any name KernelArchitecture knows
	// Aliases are added to the product's (os/release/variant, and
	// os/release when the variant is "default").
	Aliases   []string
	CreatedAt time.Time // the version's serial
}

// WriteTree adds images to the tree in dir in the Linux Containers layout:
// files under images/OS/RELEASE/ARCH/VARIANT/SERIAL/, listed in
// streams/v1/images.json and streams/v1/index.json. An existing tree is
// extended, so running it again with a newer image publishes a new version
// of the product (what auto-update follows). Served over HTTPS, the tree is
// an image server for `c` and `lxc` alike. It returns the fingerprints.
func WriteTree(dir string, imgs []TreeImage) ([]string, error) {
	streams := filepath.Join(dir, "streams", "v1")
	if err := os.MkdirAll(streams, 0o755); err != nil {
		return nil, fmt.Errorf("create simplestreams tree: %w", err)
	}
	doc := productsDoc{ContentID: "images", DataType: "image-downloads", Format: "products:1.0", Products: map[string]product{}}
	data, err := os.ReadFile(filepath.Join(streams, "images.json"))
	if err == nil {
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("existing %s: %w", filepath.Join(streams, "images.json"), err)
		}
		if doc.Products == nil {
			doc.Products = map[string]product{}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read existing tree: %w", err)
	}

	var fps []string
	for _, img := range imgs {
		fp, err := addToTree(dir, &doc, img)
		if err != nil {
			return nil, err
		}
		fps = append(fps, fp)
	}

	index := indexDoc{Format: "index:1.0", Index: map[string]indexStream{"images": {
		DataType: "image-downloads", Format: "products:1.0", Path: "streams/v1/images.json",
	}}}
	s := index.Index["images"]
	for id := range doc.Products {
		s.Products = append(s.Products, id)
	}
	sort.Strings(s.Products)
	index.Index["images"] = s
	// images.json first: an index never names a products file that is
	// not there yet.
	if err := writeJSON(filepath.Join(streams, "images.json"), doc); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(streams, "index.json"), index); err != nil {
		return nil, err
	}
	return fps, nil
}

// addToTree copies one image's files into the tree and lists it.
func addToTree(dir string, doc *productsDoc, img TreeImage) (string, error) {
	if img.OS == "" || img.Release == "" || img.Architecture == "" {
		return "", fmt.Errorf("image %s: os, release and architecture are needed to list it", img.MetaFile)
	}
	for _, part := range []string{img.OS, img.Release, img.Variant} {
		if strings.ContainsAny(part, "/:,\\") || part == "." || part == ".." {
			return "", fmt.Errorf("image %s: %q cannot be part of a product name (no / : , or dots only)", img.MetaFile, part)
		}
	}
	variant := img.Variant
	if variant == "" {
		variant = "default"
	}
	arch := debianArchitecture(img.Architecture)
	osName := strings.ToLower(img.OS)
	id := strings.Join([]string{osName, img.Release, arch, variant}, ":")
	p, ok := doc.Products[id]
	if !ok {
		p = product{OS: img.OS, Release: img.Release, ReleaseTitle: img.Release, Variant: variant, Arch: arch, Versions: map[string]version{}}
	}
	if p.Versions == nil {
		p.Versions = map[string]version{}
	}
	aliases := []string{osName + "/" + img.Release + "/" + variant}
	if variant == "default" {
		aliases = append(aliases, osName+"/"+img.Release)
	}
	for _, a := range append(strings.Split(p.Aliases, ","), img.Aliases...) {
		if a = strings.TrimSpace(a); a != "" && !slices.Contains(aliases, a) {
			aliases = append(aliases, a)
		}
	}
	p.Aliases = strings.Join(aliases, ",")

	metaSum, metaSize, err := hashFile(img.MetaFile)
	if err != nil {
		return "", err
	}
	rootSum, rootSize, err := hashFile(img.RootfsFile)
	if err != nil {
		return "", err
	}
	combined := sha256.New()
	for _, f := range []string{img.MetaFile, img.RootfsFile} {
		if err := copyInto(combined, f); err != nil {
			return "", err
		}
	}
	fp := hex.EncodeToString(combined.Sum(nil))
	for _, v := range p.Versions {
		if it, ok := v.Items[ftypeLXDMeta]; ok && (it.CombinedRootXz == fp || it.CombinedSquashF == fp) {
			doc.Products[id] = p
			return fp, nil // already published
		}
	}

	// The serial orders versions; two in the same minute take the next
	// free one.
	created := img.CreatedAt.UTC()
	if created.IsZero() {
		created = time.Now().UTC()
	}
	serial := created.Format("20060102_15:04")
	for _, taken := p.Versions[serial]; taken; _, taken = p.Versions[serial] {
		created = created.Add(time.Minute)
		serial = created.Format("20060102_15:04")
	}
	rel := path.Join("images", osName, img.Release, arch, variant, serial)
	if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(rel)), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", rel, err)
	}
	rootName, rootType := "root.tar.xz", ftypeRootXz
	if img.Squashfs {
		rootName, rootType = "root.squashfs", ftypeSquashfs
	}
	meta := item{FType: ftypeLXDMeta, Path: rel + "/lxd.tar.xz", SHA256: metaSum, Size: metaSize}
	if img.Squashfs {
		meta.CombinedSquashF = fp
	} else {
		meta.CombinedRootXz, meta.CombinedSHA256 = fp, fp
	}
	rootfs := item{FType: rootType, Path: rel + "/" + rootName, SHA256: rootSum, Size: rootSize}
	for _, c := range []struct{ from, to string }{{img.MetaFile, meta.Path}, {img.RootfsFile, rootfs.Path}} {
		if err := copyFile(c.from, filepath.Join(dir, filepath.FromSlash(c.to))); err != nil {
			return "", err
		}
	}
	p.Versions[serial] = version{Items: map[string]item{"lxd.tar.xz": meta, rootName: rootfs}}
	doc.Products[id] = p
	return fp, nil
}

// debianArchitecture is the name the Linux Containers layout uses (amd64).
func debianArchitecture(a string) string {
	k := KernelArchitecture(a)
	for _, name := range []string{"amd64", "i386", "arm64", "armhf", "armel", "ppc64el", "s390x", "riscv64", "mips64el", "loong64"} {
		if archNames[name] == k {
			return name
		}
	}
	return a
}

func hashFile(p string) (string, int64, error) {
	h := sha256.New()
	f, err := os.Open(p)
	if err != nil {
		return "", 0, fmt.Errorf("open image file: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func copyInto(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("open image file: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}

// copyFile copies through a temporary file and a rename: a server that
// serves the tree while it is written never sends half a file.
func copyFile(from, to string) error {
	tmp, err := os.CreateTemp(filepath.Dir(to), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	defer os.Remove(tmp.Name())
	if err := copyInto(tmp, from); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	if err := os.Rename(tmp.Name(), to); err != nil {
		return fmt.Errorf("write %s: %w", to, err)
	}
	return nil
}

func writeJSON(p string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
