package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"

	"cell/tests/harness"
)

// imagesEntry is one tarball entry of a hand-made image.
type imagesEntry struct {
	hdr  tar.Header
	body string
}

func imagesDir(name string, mode int64) imagesEntry {
	return imagesEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func imagesFile(name, body string, mode int64) imagesEntry {
	return imagesEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, body: body}
}

func imagesLink(typ byte, name, target string) imagesEntry {
	return imagesEntry{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}}
}

// imagesMetadata is a valid metadata.yaml for this host.
func imagesMetadata() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return "architecture: " + arch + "\ncreation_date: 1700000000\nproperties:\n  os: hostile\n"
}

// imagesTarball writes entries as a tarball, compressed with "gz", "xz" or
// nothing.
func imagesTarball(t *testing.T, compression string, entries []imagesEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser = nopWriteCloser{&buf}
	var err error
	switch compression {
	case "gz":
		w = gzip.NewWriter(&buf)
	case "xz":
		if w, err = xz.NewWriter(&buf); err != nil {
			t.Fatal(err)
		}
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := e.hdr
		hdr.ModTime = time.Unix(1700000000, 0)
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("tar header %s: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// imagesUpload posts an image body with headers and returns the status, the
// envelope and, for an accepted upload, the fingerprint.
func imagesUpload(t *testing.T, d *harness.Daemon, body io.Reader, ctype string, hdr map[string]string) (int, harness.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", "http://celld/1.0/images", body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env harness.Response
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("upload: not an API envelope (%d): %q", resp.StatusCode, data)
	}
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, env, ""
	}
	op := d.Wait(env)
	fp, _ := op.Metadata["fingerprint"].(string)
	if op.StatusCode != 200 || fp == "" {
		t.Fatalf("upload operation: %+v", op)
	}
	return resp.StatusCode, env, fp
}

// imagesToken is a random name part that only this test run uses, so that
// any file carrying it can be found wherever it landed.
func imagesToken(t *testing.T) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "cell-evil-" + hex.EncodeToString(b[:])
}

// imagesFind lists the paths under root whose name contains token.
func imagesFind(root, token string) []string {
	var found []string
	_ = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.Contains(e.Name(), token) {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// imagesNames lists the names in a directory.
func imagesNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// imagesInstances lists the instance names the API shows.
func imagesInstances(t *testing.T, d *harness.Daemon) []string {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances", nil)
	if status != 200 {
		t.Fatalf("list instances: %d %s", status, env.Error)
	}
	var urls []string
	if err := json.Unmarshal(env.Metadata, &urls); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range urls {
		names = append(names, filepath.Base(u))
	}
	return names
}

// TestImagesHostileTarballs unpacks images made to write outside the
// instance volume: each is either refused with an error saying why, or
// ends up entirely inside the pool.
func TestImagesHostileTarballs(t *testing.T) {
	d := harness.StartDaemon(t)
	testRoot := filepath.Dir(d.Dir)
	pool := filepath.Join(d.Dir, "storage-pools", "default")
	var passwd unix.Stat_t
	if err := unix.Stat("/etc/passwd", &passwd); err != nil {
		t.Fatal(err)
	}

	withTemplates := func(templates map[string]string, links ...imagesEntry) []imagesEntry {
		meta := imagesMetadata() + "templates:\n"
		for target, tpl := range templates {
			meta += fmt.Sprintf("  %q:\n    when: [start]\n    template: %q\n", target, tpl)
		}
		return append([]imagesEntry{
			imagesFile("metadata.yaml", meta, 0o644),
			imagesDir("rootfs/", 0o755),
			imagesDir("rootfs/tmp/", 0o1777),
			imagesDir("templates/", 0o755),
			imagesFile("templates/t.tpl", "rendered {{ container.name }}\n", 0o644),
			imagesLink(tar.TypeSymlink, "templates/passwd.tpl", "/etc/passwd"),
		}, links...)
	}
	hostPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	base := func() []imagesEntry {
		return []imagesEntry{
			imagesFile("metadata.yaml", imagesMetadata(), 0o644),
			imagesDir("rootfs/", 0o755),
			imagesDir("rootfs/etc/", 0o755),
			imagesDir("rootfs/tmp/", 0o1777),
			imagesFile("rootfs/etc/hostname", "hostile\n", 0o644),
		}
	}
	type hostile struct {
		name string
		// entries get a token: every file the image tries to make has it
		// in its name.
		entries func(tok string) []imagesEntry
		// refused is part of the expected error; empty means the image
		// may be used, and contained checks the result.
		refused   string
		contained func(t *testing.T, rootfs, tok string)
		// start renders the image's templates (the start itself fails:
		// these images have no init).
		start bool
	}
	cases := []hostile{
		{name: "DotDot", refused: "leaves its directory", entries: func(tok string) []imagesEntry {
			return append(base(), imagesFile("../"+tok, "x", 0o644), imagesFile("../../"+tok, "x", 0o644))
		}},
		{name: "Absolute", refused: "absolute path", entries: func(tok string) []imagesEntry {
			return append(base(), imagesFile("/tmp/"+tok, "x", 0o644))
		}},
		{name: "DotDotInRootfs", refused: "leaves its directory", entries: func(tok string) []imagesEntry {
			return append(base(), imagesFile("rootfs/../../"+tok, "x", 0o644))
		}},
		{name: "DotDotLate", refused: "leaves its directory", entries: func(tok string) []imagesEntry {
			// Harmless entries first: a refusal half way must remove them.
			return append(base(), imagesFile("rootfs/etc/"+tok+"-ok", "x", 0o644), imagesFile("rootfs/etc/../../../"+tok, "x", 0o644))
		}},
		{name: "SymlinkToRoot", entries: func(tok string) []imagesEntry {
			return append(base(),
				imagesLink(tar.TypeSymlink, "rootfs/link", "/"),
				imagesFile("rootfs/link/tmp/"+tok, "through the link", 0o644),
				imagesLink(tar.TypeSymlink, "rootfs/up", "../../../../../../../../../../tmp"),
				imagesFile("rootfs/up/"+tok+"-up", "through the relative link", 0o644),
				imagesLink(tar.TypeSymlink, "rootfs/vol", ".."),
				imagesFile("rootfs/vol/"+tok+"-vol", "next to the rootfs", 0o644),
			)
		}, contained: func(t *testing.T, rootfs, tok string) {
			for name, want := range map[string]string{"tmp/" + tok: "through the link", "tmp/" + tok + "-up": "through the relative link", tok + "-vol": "next to the rootfs"} {
				if data, err := os.ReadFile(filepath.Join(rootfs, name)); err != nil || string(data) != want {
					t.Errorf("%s in the rootfs: %q, %v", name, data, err)
				}
			}
			if target, _ := os.Readlink(filepath.Join(rootfs, "link")); target != "/" {
				t.Errorf("the link itself was not kept: %q", target)
			}
		}},
		{name: "SymlinkThenDir", entries: func(tok string) []imagesEntry {
			// A link replaced by a directory entry of the same name, and a
			// directory entry through a link.
			return append(base(),
				imagesLink(tar.TypeSymlink, "rootfs/d", "/tmp"),
				imagesDir("rootfs/d/"+tok+"-dir/", 0o755),
				imagesFile("rootfs/d/"+tok+"-dir/f", "x", 0o644),
			)
		}, contained: func(t *testing.T, rootfs, tok string) {
			if data, err := os.ReadFile(filepath.Join(rootfs, "tmp", tok+"-dir", "f")); err != nil || string(data) != "x" {
				t.Errorf("file through the dir link: %q, %v", data, err)
			}
		}},
		{name: "HardlinkAbsolute", refused: "absolute path", entries: func(tok string) []imagesEntry {
			return append(base(), imagesLink(tar.TypeLink, "rootfs/etc/"+tok, "/etc/passwd"))
		}},
		{name: "HardlinkOutsideRootfs", refused: "outside the rootfs", entries: func(tok string) []imagesEntry {
			return append(base(), imagesLink(tar.TypeLink, "rootfs/etc/"+tok, "etc/passwd"))
		}},
		{name: "HardlinkThroughSymlink", entries: func(tok string) []imagesEntry {
			// rootfs/link/etc/passwd is the rootfs's own /etc/passwd.
			return append(base(),
				imagesFile("rootfs/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644),
				imagesLink(tar.TypeSymlink, "rootfs/link", "/"),
				imagesLink(tar.TypeLink, "rootfs/etc/"+tok, "rootfs/link/etc/passwd"),
			)
		}, contained: func(t *testing.T, rootfs, tok string) {
			var a, b unix.Stat_t
			if err := unix.Stat(filepath.Join(rootfs, "etc", tok), &a); err != nil {
				t.Fatal(err)
			}
			if err := unix.Stat(filepath.Join(rootfs, "etc/passwd"), &b); err != nil {
				t.Fatal(err)
			}
			if a.Ino != b.Ino || a.Dev != b.Dev {
				t.Error("the hard link is not to the rootfs's /etc/passwd")
			}
		}},
		{name: "HardlinkToMissing", refused: "hard link target", entries: func(tok string) []imagesEntry {
			return append(base(), imagesLink(tar.TypeSymlink, "rootfs/link", "/"),
				imagesLink(tar.TypeLink, "rootfs/etc/"+tok, "rootfs/link/etc/shadow"))
		}},
		{name: "DeviceNodes", entries: func(tok string) []imagesEntry {
			return append(base(),
				imagesEntry{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "rootfs/tmp/" + tok + "-sda", Mode: 0o666, Devmajor: 8, Devminor: 0}},
				imagesEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "rootfs/tmp/" + tok + "-mem", Mode: 0o666, Devmajor: 1, Devminor: 1}},
				imagesEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "rootfs/tmp/" + tok + "-fifo", Mode: 0o666}},
			)
		}, contained: func(t *testing.T, rootfs, tok string) {
			for _, n := range []string{"-sda", "-mem", "-fifo"} {
				if _, err := os.Lstat(filepath.Join(rootfs, "tmp", tok+n)); !os.IsNotExist(err) {
					t.Errorf("device node %s was made in the rootfs: %v", tok+n, err)
				}
			}
		}},
		{name: "TemplateTargets", start: true, entries: func(tok string) []imagesEntry {
			return withTemplates(map[string]string{
				"/tmp/../../../../../../../../tmp/" + tok + "-a": "t.tpl",
				"/link/tmp/" + tok + "-b":                        "t.tpl",
				"/up/" + tok + "-c":                              "t.tpl",
			}, imagesLink(tar.TypeSymlink, "rootfs/link", "/"), imagesLink(tar.TypeSymlink, "rootfs/up", "../../../../../../../../../tmp"))
		}, contained: func(t *testing.T, rootfs, tok string) {
			for _, n := range []string{"-a", "-b", "-c"} {
				data, err := os.ReadFile(filepath.Join(rootfs, "tmp", tok+n))
				if err != nil || !strings.HasPrefix(string(data), "rendered ") {
					t.Errorf("template %s was not rendered inside the rootfs: %q, %v", tok+n, data, err)
				}
			}
		}},
		{name: "TemplateSources", start: true, entries: func(tok string) []imagesEntry {
			return withTemplates(map[string]string{
				"/tmp/" + tok + "-dotdot": "../../../../../../../../etc/passwd",
				"/tmp/" + tok + "-abs":    "/etc/passwd",
				"/tmp/" + tok + "-link":   "passwd.tpl",
			})
		}, contained: func(t *testing.T, rootfs, tok string) {
			for _, n := range []string{"-dotdot", "-abs", "-link"} {
				if data, err := os.ReadFile(filepath.Join(rootfs, "tmp", tok+n)); err == nil && bytes.Contains(data, hostPasswd[:16]) {
					t.Errorf("template %s copied the host's /etc/passwd into the container", tok+n)
				}
			}
		}},
		{name: "Setuid", entries: func(tok string) []imagesEntry {
			id, err := os.ReadFile("/usr/bin/id")
			if err != nil {
				t.Fatal(err)
			}
			e := imagesFile("rootfs/"+tok, string(id), 0o4755)
			e.hdr.Uid, e.hdr.Gid = 0, 0
			return append(base(), e)
		}, contained: func(t *testing.T, rootfs, tok string) {
			p := filepath.Join(rootfs, tok)
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			// The container's root, never the host's.
			if st.Uid != 1000000 || st.Gid != 1000000 || st.Mode&0o7777 != 0o4755 {
				t.Errorf("setuid file: owner %d:%d mode %04o, want 1000000:1000000 4755", st.Uid, st.Gid, st.Mode&0o7777)
			}
			// A host user must not be able to run the container's setuid
			// programs: they would make it the container's root on the
			// host, owner of every file of the container.
			cmd := exec.Command(p, "-u")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Errorf("host user nobody ran the container's setuid %s: euid %s", tok, strings.TrimSpace(string(out)))
			}
		}},
	}

	for _, compression := range []string{"gz", "xz"} {
		for _, tc := range cases {
			t.Run(tc.name+"_"+compression, func(t *testing.T) {
				tok := imagesToken(t)
				name := strings.ToLower(strings.ReplaceAll(tc.name, "_", "-")) + "-" + compression
				body := imagesTarball(t, compression, tc.entries(tok))
				status, env, fp := imagesUpload(t, d, bytes.NewReader(body), "", nil)
				if status == http.StatusBadRequest {
					if tc.refused == "" || !strings.Contains(env.Error, tc.refused) {
						t.Fatalf("upload refused: %s", env.Error)
					}
				} else {
					st, cenv := d.API("POST", "/1.0/instances", map[string]any{
						"name": name, "source": map[string]string{"type": "image", "fingerprint": fp}})
					if st != http.StatusAccepted {
						t.Fatalf("create: %d %s", st, cenv.Error)
					}
					op := d.Wait(cenv)
					switch {
					case tc.refused != "" && op.StatusCode == 200:
						t.Errorf("an image with %s was used; want an error saying %q", tc.name, tc.refused)
					case tc.refused != "" && !strings.Contains(op.Err, tc.refused):
						t.Errorf("create failed with %q, want it to say %q", op.Err, tc.refused)
					case tc.refused == "" && op.StatusCode != 200:
						t.Errorf("create failed: %s", op.Err)
					}
					listed := slices.Contains(imagesInstances(t, d), name)
					volume := filepath.Join(pool, "containers", name)
					_, verr := os.Stat(volume)
					if op.StatusCode == 200 {
						if !listed || verr != nil {
							t.Errorf("created instance: listed %v, volume %v", listed, verr)
						}
						if tc.start {
							if st, env := d.API("PUT", "/1.0/instances/"+name+"/state", map[string]string{"action": "start"}); st == http.StatusAccepted {
								d.Wait(env)
							}
							if state := d.LXCState(name); state != "STOPPED" && state != "" {
								t.Fatalf("an image without init is %q", state)
							}
						}
						if tc.contained != nil {
							tc.contained(t, filepath.Join(volume, "rootfs"), tok)
						}
					} else {
						if listed || verr == nil {
							t.Errorf("failed create left the instance behind: listed %v, volume %v", listed, verr)
						}
						if _, err := os.Stat(filepath.Join(pool, "images", fp)); err == nil {
							t.Error("failed unpack left an image volume")
						}
					}
				}
				// Nothing with the token anywhere but inside a rootfs.
				for _, p := range imagesFind(testRoot, tok) {
					rel, _ := filepath.Rel(pool, p)
					parts := strings.Split(rel, string(filepath.Separator))
					if len(parts) < 4 || (parts[0] != "containers" && parts[0] != "images") || parts[2] != "rootfs" {
						t.Errorf("image entry landed outside a rootfs: %s", p)
					}
				}
				for _, dir := range []string{"/", "/tmp", "/etc", testRoot, d.Dir, pool, filepath.Join(pool, "images"), filepath.Join(pool, "containers")} {
					for _, n := range []string{tok, tok + "-up", tok + "-vol", tok + "-dir"} {
						if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
							os.RemoveAll(filepath.Join(dir, n))
							t.Errorf("image entry escaped to %s", filepath.Join(dir, n))
						}
					}
				}
				for _, dir := range []string{filepath.Join(pool, "images"), filepath.Join(pool, "containers")} {
					for _, n := range imagesNames(t, dir) {
						if strings.HasPrefix(n, ".tmp-") {
							t.Errorf("temporary volume left behind: %s", filepath.Join(dir, n))
						}
					}
				}
				var now unix.Stat_t
				if err := unix.Stat("/etc/passwd", &now); err != nil || now.Nlink != passwd.Nlink || now.Ino != passwd.Ino {
					t.Fatalf("the host's /etc/passwd changed: nlink %d -> %d", passwd.Nlink, now.Nlink)
				}
				if fp != "" {
					if slices.Contains(imagesInstances(t, d), name) {
						d.MustSucceed("DELETE", "/1.0/instances/"+name, nil)
					}
					d.MustSucceed("DELETE", "/1.0/images/"+fp, nil)
				}
			})
		}
	}
}

// TestImagesUploadErrors: what is not an image is refused with a message
// saying what is wrong, and nothing of it is kept.
func TestImagesUploadErrors(t *testing.T) {
	d := harness.StartDaemon(t)
	store := filepath.Join(d.Dir, "images")
	random := make([]byte, 256<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	good := imagesTarball(t, "gz", []imagesEntry{imagesFile("metadata.yaml", imagesMetadata(), 0o644), imagesDir("rootfs/", 0o755)})
	cases := []struct {
		name, mention string
		body          []byte
	}{
		{"RandomBytes", "tarball", random},
		{"Empty", "metadata.yaml", nil},
		{"GzipOfGarbage", "", append([]byte{0x1f, 0x8b}, random[:1000]...)},
		{"Truncated", "", good[:len(good)/2]},
		{"NoMetadata", "no metadata.yaml", imagesTarball(t, "xz", []imagesEntry{imagesDir("rootfs/", 0o755), imagesFile("rootfs/x", "x", 0o644)})},
		{"NoArchitecture", "architecture", imagesTarball(t, "gz", []imagesEntry{imagesFile("metadata.yaml", "creation_date: 1\nproperties:\n  os: x\n", 0o644), imagesDir("rootfs/", 0o755)})},
		{"BadYAML", "metadata.yaml", imagesTarball(t, "", []imagesEntry{imagesFile("metadata.yaml", "architecture: [\n", 0o644)})},
		{"MetadataIsSymlink", "metadata.yaml", imagesTarball(t, "", []imagesEntry{imagesLink(tar.TypeSymlink, "metadata.yaml", "/etc/passwd")})},
		{"MetadataIsDir", "metadata.yaml", imagesTarball(t, "", []imagesEntry{imagesDir("metadata.yaml/", 0o755)})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, env, _ := imagesUpload(t, d, bytes.NewReader(tc.body), "", nil)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (%s)", status, env.Error)
			}
			if !strings.Contains(env.Error, tc.mention) || env.Error == "" {
				t.Errorf("error %q does not say %q", env.Error, tc.mention)
			}
			if names := imagesNames(t, store); len(names) != 0 {
				t.Errorf("refused upload left files in the store: %v", names)
			}
		})
	}
	status, env := d.API("GET", "/1.0/images", nil)
	if status != 200 || string(env.Metadata) != "[]" {
		t.Errorf("images after refused uploads: %d %s", status, env.Metadata)
	}

	t.Run("Duplicate", func(t *testing.T) {
		_, _, fp := imagesUpload(t, d, bytes.NewReader(good), "", nil)
		sum := sha256.Sum256(good)
		if fp != hex.EncodeToString(sum[:]) {
			t.Errorf("fingerprint %s, want the sha256 of the upload", fp)
		}
		before := imagesNames(t, store)
		status, env, _ := imagesUpload(t, d, bytes.NewReader(good), "", nil)
		if status != http.StatusConflict || !strings.Contains(env.Error, fp) {
			t.Errorf("second upload: %d %q, want 409 naming the fingerprint", status, env.Error)
		}
		if after := imagesNames(t, store); !slices.Equal(before, after) {
			t.Errorf("store changed by the refused duplicate: %v -> %v", before, after)
		}
		d.MustSucceed("DELETE", "/1.0/images/"+fp, nil)
	})

	t.Run("FingerprintMismatch", func(t *testing.T) {
		other := sha256.Sum256([]byte("something else"))
		for _, claim := range []string{hex.EncodeToString(other[:]), "abc", "../../etc/passwd"} {
			status, env, _ := imagesUpload(t, d, bytes.NewReader(good), "", map[string]string{"X-LXD-fingerprint": claim})
			if status != http.StatusBadRequest || !strings.Contains(env.Error, "fingerprint") {
				t.Errorf("claim %q: %d %q, want 400 about the fingerprint", claim, status, env.Error)
			}
		}
		if names := imagesNames(t, store); len(names) != 0 {
			t.Errorf("refused uploads left files in the store: %v", names)
		}
		sum := sha256.Sum256(good)
		_, _, fp := imagesUpload(t, d, bytes.NewReader(good), "", map[string]string{"X-LXD-fingerprint": hex.EncodeToString(sum[:])})
		d.MustSucceed("DELETE", "/1.0/images/"+fp, nil)
	})
}

// imagesSplit turns a unified image into a split one: the metadata
// tarball (metadata.yaml, templates/) and the rootfs tarball.
func imagesSplit(t *testing.T, unified string) (meta, rootfs []byte) {
	t.Helper()
	f, err := os.Open(unified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := xz.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var mbuf, rbuf bytes.Buffer
	mz := gzip.NewWriter(&mbuf)
	mw, rw := tar.NewWriter(mz), tar.NewWriter(&rbuf)
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w := mw
		if rest, ok := strings.CutPrefix(hdr.Name, "rootfs/"); ok || hdr.Name == "rootfs" {
			w = rw
			hdr.Name = "./" + rest
			if hdr.Typeflag == tar.TypeLink {
				hdr.Linkname = "./" + strings.TrimPrefix(hdr.Linkname, "rootfs/")
			}
		}
		if err := w.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors2(mw.Close(), mz.Close(), rw.Close()); err != nil {
		t.Fatal(err)
	}
	return mbuf.Bytes(), rbuf.Bytes()
}

func errors2(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestImagesSplitRoundTrip uploads a split image (metadata and rootfs as
// multipart parts), exports it back byte for byte, and boots it.
func TestImagesSplitRoundTrip(t *testing.T) {
	d := harness.StartDaemon(t)
	meta, rootfs := imagesSplit(t, harness.BusyboxImage(t))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct {
		field string
		data  []byte
	}{{"metadata", meta}, {"rootfs", rootfs}} {
		w, err := mw.CreateFormFile(part.field, part.field+".tar")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(part.data)
	}
	mw.Close()
	_, _, fp := imagesUpload(t, d, &body, mw.FormDataContentType(), nil)
	h := sha256.New()
	h.Write(meta)
	h.Write(rootfs)
	if want := hex.EncodeToString(h.Sum(nil)); fp != want {
		t.Errorf("split fingerprint %s, want sha256(metadata+rootfs) %s", fp, want)
	}

	resp, err := d.HTTP().Get("http://celld/1.0/images/" + fp + "/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ctype, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || ctype != "multipart/form-data" {
		t.Fatalf("export Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	got := map[string][]byte{}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[part.FormName()], _ = io.ReadAll(part)
	}
	if !bytes.Equal(got["metadata"], meta) || !bytes.Equal(got["rootfs"], rootfs) {
		t.Errorf("export differs: metadata %d/%d bytes equal %v, rootfs %d/%d bytes equal %v",
			len(got["metadata"]), len(meta), bytes.Equal(got["metadata"], meta),
			len(got["rootfs"]), len(rootfs), bytes.Equal(got["rootfs"], rootfs))
	}

	// Same content again, as a split upload: a conflict.
	var again bytes.Buffer
	mw = multipart.NewWriter(&again)
	w, _ := mw.CreateFormFile("metadata", "m")
	w.Write(meta)
	w, _ = mw.CreateFormFile("rootfs", "r")
	w.Write(rootfs)
	mw.Close()
	if status, env, _ := imagesUpload(t, d, &again, mw.FormDataContentType(), nil); status != http.StatusConflict {
		t.Errorf("split duplicate: %d %s", status, env.Error)
	}

	// A split upload without its rootfs part is refused and leaves nothing.
	var half bytes.Buffer
	mw = multipart.NewWriter(&half)
	w, _ = mw.CreateFormFile("metadata", "m")
	w.Write(meta)
	mw.Close()
	if status, env, _ := imagesUpload(t, d, &half, mw.FormDataContentType(), nil); status != http.StatusBadRequest || !strings.Contains(env.Error, "rootfs") {
		t.Errorf("split upload without rootfs: %d %q, want 400 about the rootfs", status, env.Error)
	}
	if names := imagesNames(t, filepath.Join(d.Dir, "images")); len(names) != 2 {
		t.Errorf("image store holds %v, want the split image's two files", names)
	}

	// The unified image exports byte-identical too.
	unified, err := os.ReadFile(harness.BusyboxImage(t))
	if err != nil {
		t.Fatal(err)
	}
	ufp := d.ImportImage(harness.BusyboxImage(t), "bb")
	resp2, err := d.HTTP().Get("http://celld/1.0/images/" + ufp + "/export")
	if err != nil {
		t.Fatal(err)
	}
	exported, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !bytes.Equal(exported, unified) {
		t.Errorf("unified export: %d bytes, want the %d uploaded", len(exported), len(unified))
	}

	// The split image boots.
	if status, env := d.API("POST", "/1.0/images/aliases", map[string]string{"name": "split", "target": fp}); status != 201 {
		t.Fatalf("alias: %d %s", status, env.Error)
	}
	d.Launch("split", "split1", nil)
	if code, out := crashExec(t, d, "split1", "cat", "/etc/hostname"); code != 0 || strings.TrimSpace(out) != "split1" {
		t.Errorf("hostname in the split image's instance: %d %q", code, out)
	}
	d.MustSucceed("PUT", "/1.0/instances/split1/state", map[string]any{"action": "stop", "force": true})
}
