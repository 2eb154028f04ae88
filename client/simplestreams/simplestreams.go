// Package simplestreams is a client for simplestreams image servers as LXD
// uses them: the Linux Containers image server (images.linuxcontainers.org,
// products like "debian:bookworm:amd64:default") and Ubuntu's cloud images
// (cloud-images.ubuntu.com/releases, products like
// "com.ubuntu.cloud:server:18.04:amd64").
//
// A server is a static tree: streams/v1/index.json names the products files,
// each product has dated versions, and each version has items. A container
// image is a version's metadata tarball (ftype "lxd.tar.xz") plus its root
// file system (ftype "squashfs", or "root.tar.xz"); its fingerprint is the
// sha256 of the metadata tarball followed by the rootfs, which the server
// publishes on the metadata item (combined_squashfs_sha256,
// combined_rootxz_sha256 or combined_sha256).
package simplestreams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// UserAgent is sent with every request.
var UserAgent = "cell-simplestreams/1.0"

// DefaultCacheTTL is how long the index and products files are reused before
// they are fetched again.
const DefaultCacheTTL = 5 * time.Minute

// maxJSONSize bounds an index or products file (Ubuntu's are tens of MB).
const maxJSONSize = 512 << 20

// ErrNotFound is in the chain of errors of Resolve when nothing matches
// (errors.Is(err, ErrNotFound)).
var ErrNotFound = errors.New("image not found")

// notFoundError says what was not found where, and is ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// File is one downloadable file of an image. Path is relative to the
// server's base URL.
type File struct {
	Path   string
	SHA256 string // lower-case hex
	Size   int64
	Type   string // the item's ftype: "lxd.tar.xz", "squashfs", "root.tar.xz"...
}

// Image is one version of a container image offered by the server.
type Image struct {
	// Fingerprint is the sha256 of Meta's bytes followed by Rootfs's bytes.
	Fingerprint string
	// Product is the product id: "debian:bookworm:amd64:default",
	// "com.ubuntu.cloud:server:18.04:amd64". The versions of one product
	// replace each other (auto-update follows it).
	Product string
	// Aliases are set on the newest version of each product only; see
	// productAliases for the forms.
	Aliases []string
	// Architecture is the kernel's name: x86_64, aarch64...
	Architecture string
	// Properties: os, release, architecture, variant, description,
	// serial (the version key), and on Ubuntu version and label.
	Properties map[string]string
	CreatedAt  time.Time
	Size       int64 // Meta.Size + Rootfs.Size
	Meta       File
	Rootfs     File // squashfs when offered, else root.tar.xz
}

// Client reads one simplestreams server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client

	// CacheTTL is how long fetched index data is reused (DefaultCacheTTL;
	// 0 or less fetches every time). Set it before the first call.
	CacheTTL time.Duration

	now func() time.Time // for tests

	mu       sync.Mutex
	images   []Image
	fetched  time.Time
	inflight *fetchCall
}

// fetchCall is one fetch of the whole tree that concurrent callers share.
type fetchCall struct {
	done   chan struct{}
	images []Image
	err    error
}

// New returns a client for the server at baseURL (e.g.
// "https://images.linuxcontainers.org" or
// "https://cloud-images.ubuntu.com/releases"). hc may be nil for
// http.DefaultClient. New does not contact the server.
func New(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("simplestreams server URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("simplestreams server URL %q: want http(s)://host[/path]", baseURL)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, http: hc, CacheTTL: DefaultCacheTTL, now: time.Now}, nil
}

// URL is the server's base URL, as used in messages.
func (c *Client) URL() string { return c.base.String() }

// fileURL is the absolute URL of a path relative to the base URL.
func (c *Client) fileURL(p string) string {
	return c.base.JoinPath(strings.Split(strings.TrimLeft(p, "/"), "/")...).String()
}

// Flush drops cached index data: the next call fetches it again.
func (c *Client) Flush() {
	c.mu.Lock()
	c.images, c.fetched = nil, time.Time{}
	c.mu.Unlock()
}

// Images returns every container image the server offers, every version of
// every product, the newest version of a product first. The result is the
// caller's to modify.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	imgs, err := c.cachedImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Image, len(imgs))
	for i, img := range imgs {
		img.Aliases = slices.Clone(img.Aliases)
		img.Properties = maps.Clone(img.Properties)
		out[i] = img
	}
	return out, nil
}

// cachedImages returns the shared, read-only image list, fetching it when
// the cache is empty or stale. Concurrent callers share one fetch.
func (c *Client) cachedImages(ctx context.Context) ([]Image, error) {
	for {
		c.mu.Lock()
		if c.images != nil && c.now().Sub(c.fetched) < c.CacheTTL {
			imgs := c.images
			c.mu.Unlock()
			return imgs, nil
		}
		if call := c.inflight; call != nil {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// The leader's context may have ended while ours goes on:
			// then try again ourselves.
			if call.err != nil && isContextErr(call.err) && ctx.Err() == nil {
				continue
			}
			return call.images, call.err
		}
		call := &fetchCall{done: make(chan struct{})}
		c.inflight = call
		c.mu.Unlock()

		call.images, call.err = c.fetchAll(ctx)

		c.mu.Lock()
		c.inflight = nil
		if call.err == nil {
			c.images, c.fetched = call.images, c.now()
		}
		c.mu.Unlock()
		close(call.done)
		return call.images, call.err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// fetchAll reads the index and every image products file it lists.
func (c *Client) fetchAll(ctx context.Context) ([]Image, error) {
	indexPath := "streams/v1/index.json"
	data, err := c.getJSON(ctx, indexPath)
	if err != nil {
		return nil, err
	}
	paths, err := productsPaths(data)
	if err != nil {
		return nil, fmt.Errorf("simplestreams index %s: %w", c.fileURL(indexPath), err)
	}
	var all []Image
	seen := map[string]bool{}
	for _, p := range paths {
		data, err := c.getJSON(ctx, p)
		if err != nil {
			return nil, err
		}
		imgs, err := parseProducts(data)
		if err != nil {
			return nil, fmt.Errorf("simplestreams products %s: %w", c.fileURL(p), err)
		}
		for _, img := range imgs {
			if !seen[img.Fingerprint] {
				seen[img.Fingerprint] = true
				all = append(all, img)
			}
		}
	}
	slog.Debug("simplestreams index read", "server", c.URL(), "images", len(all))
	return all, nil
}

// getJSON fetches a file of the tree into memory.
func (c *Client) getJSON(ctx context.Context, p string) ([]byte, error) {
	resp, err := c.get(ctx, p)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", c.fileURL(p), err)
	}
	if len(data) > maxJSONSize {
		return nil, fmt.Errorf("read %s: larger than %d bytes", c.fileURL(p), maxJSONSize)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("read %s: not valid JSON", c.fileURL(p))
	}
	return data, nil
}

// get sends a GET for a path of the tree and checks that the answer is 200.
func (c *Client) get(ctx context.Context, p string) (*http.Response, error) {
	u := c.fileURL(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", u, err)
	}
	req.Header.Set("User-Agent", UserAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("fetch %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("fetch %s: server answered %s", u, resp.Status)
	}
	return resp, nil
}

// Resolve finds the image that name designates. name is first an alias:
// the candidates of the requested architecture arch (a kernel, Debian or Go
// name; the host's when empty) are preferred, and among them the newest
// version wins; when no candidate has that architecture the newest of the
// others is returned (an x86_64 host runs i686 images: the caller decides).
// Otherwise name is a fingerprint or a unique prefix of one.
func (c *Client) Resolve(ctx context.Context, name, arch string) (Image, error) {
	if name == "" {
		return Image{}, fmt.Errorf("empty image name for %s: give an alias or a fingerprint", c.URL())
	}
	if arch == "" {
		arch = HostArchitecture()
	}
	arch = KernelArchitecture(arch)
	imgs, err := c.Images(ctx)
	if err != nil {
		return Image{}, err
	}

	var cands []Image
	for _, img := range imgs {
		if slices.Contains(img.Aliases, name) {
			cands = append(cands, img)
		}
	}
	if len(cands) > 0 {
		sort.SliceStable(cands, func(i, j int) bool {
			ai, aj := cands[i].Architecture == arch, cands[j].Architecture == arch
			if ai != aj {
				return ai
			}
			return newer(cands[i], cands[j])
		})
		return cands[0], nil
	}

	if isHexPrefix(name) {
		prefix := strings.ToLower(name)
		var found []Image
		for _, img := range imgs {
			if strings.HasPrefix(img.Fingerprint, prefix) {
				found = append(found, img)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
		default:
			return Image{}, fmt.Errorf("fingerprint prefix %q is ambiguous on %s: %d images match, give more digits", name, c.URL(), len(found))
		}
		return Image{}, &notFoundError{fmt.Sprintf("image alias or fingerprint %q not found on %s", name, c.URL())}
	}
	return Image{}, &notFoundError{fmt.Sprintf("image alias %q not found on %s", name, c.URL())}
}

func isHexPrefix(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
