package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"cell/tests/harness"
)

// filesReply is a raw answer of the file API: the file API sends file
// bodies, not JSON envelopes, so the harness's API helper does not fit.
type filesReply struct {
	status int
	header http.Header
	body   []byte
}

// env decodes the body as an API envelope (for errors and directory
// listings).
func (r filesReply) env(t *testing.T) harness.Response {
	t.Helper()
	var env harness.Response
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("status %d: not an API envelope: %q", r.status, r.body)
	}
	return env
}

// filesDo sends one request to the file API of an instance. It gives up
// after 20 s, so a daemon that blocks (on a fifo, say) fails the test
// instead of hanging it.
func filesDo(t *testing.T, d *harness.Daemon, method, inst, path string, hdr map[string]string, body string) filesReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	u := "http://celld/1.0/instances/" + inst + "/files?path=" + url.QueryEscape(path)
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return filesReply{status: resp.StatusCode, header: resp.Header, body: data}
}

// filesPush writes a file and fails the test unless the daemon says 200.
func filesPush(t *testing.T, d *harness.Daemon, inst, path, content string, hdr map[string]string) {
	t.Helper()
	if r := filesDo(t, d, "POST", inst, path, hdr, content); r.status != http.StatusOK {
		t.Fatalf("push %s: status %d: %s", path, r.status, r.body)
	}
}

// filesExpect checks the status of an answer and that an error names
// what it is about.
func filesExpect(t *testing.T, r filesReply, status int, mention string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if mention != "" && !strings.Contains(string(r.body), mention) {
		t.Errorf("answer does not mention %q: %s", mention, r.body)
	}
}

// filesRootfs is the host path of an instance's root filesystem.
func filesRootfs(d *harness.Daemon, inst string) string {
	return filepath.Join(d.Dir, "storage-pools", "default", "containers", inst, "rootfs")
}

// filesOwner returns the host owner and permission bits of a path
// (without following a final symlink).
func filesOwner(t *testing.T, path string) (uid, gid uint32, mode uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat %s: %v", path, err)
	}
	return st.Uid, st.Gid, st.Mode & 07777
}

// filesHostMarker makes a file on the host, outside any container, that
// escape attempts aim at; it must never be read through or changed.
func filesHostMarker(t *testing.T) (path, content string) {
	t.Helper()
	f, err := os.CreateTemp("", "cell-files-marker-")
	if err != nil {
		t.Fatal(err)
	}
	content = "host secret " + filepath.Base(f.Name()) + "\n"
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name(), content
}

func filesAssertMarker(t *testing.T, path, content string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || string(data) != content {
		t.Fatalf("host marker %s changed: %q, %v", path, data, err)
	}
	st, _ := os.Lstat(path)
	if !st.Mode().IsRegular() {
		t.Fatalf("host marker %s is no longer a regular file", path)
	}
}

func TestFiles(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	const c = "files1"
	d.Launch("bb", c, nil)
	rootfs := filesRootfs(d, c)

	t.Run("PushPullOwnerMode", func(t *testing.T) {
		filesPush(t, d, c, "/root/hello.txt", "hello\n", map[string]string{
			"X-LXD-uid": "1000", "X-LXD-gid": "1001", "X-LXD-mode": "0640"})
		// Unprivileged: the host sees the shifted ids.
		uid, gid, mode := filesOwner(t, filepath.Join(rootfs, "root/hello.txt"))
		if uid != 1001000 || gid != 1001001 || mode != 0o640 {
			t.Errorf("host owner %d:%d mode %04o, want 1001000:1001001 0640", uid, gid, mode)
		}
		r := filesDo(t, d, "GET", c, "/root/hello.txt", nil, "")
		filesExpect(t, r, 200, "")
		if string(r.body) != "hello\n" {
			t.Errorf("pulled %q", r.body)
		}
		for k, want := range map[string]string{"X-LXD-uid": "1000", "X-LXD-gid": "1001", "X-LXD-mode": "0640", "X-LXD-type": "file"} {
			if got := r.header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		// The container sees its own ids.
		if code, out := crashExec(t, d, c, "stat", "-c", "%u %g %a", "/root/hello.txt"); code != 0 || strings.TrimSpace(out) != "1000 1001 640" {
			t.Errorf("inside the container: exit %d, %q", code, out)
		}
		// Overwriting without headers keeps owner and mode.
		filesPush(t, d, c, "/root/hello.txt", "bye\n", nil)
		if uid, _, mode := filesOwner(t, filepath.Join(rootfs, "root/hello.txt")); uid != 1001000 || mode != 0o640 {
			t.Errorf("after overwrite: uid %d mode %04o", uid, mode)
		}
		if r := filesDo(t, d, "HEAD", c, "/root/hello.txt", nil, ""); r.status != 200 || r.header.Get("Content-Length") != "4" {
			t.Errorf("HEAD: %d, Content-Length %q", r.status, r.header.Get("Content-Length"))
		}
		// A new file without headers belongs to the container's root.
		filesPush(t, d, c, "/root/plain", "x", nil)
		if uid, gid, mode := filesOwner(t, filepath.Join(rootfs, "root/plain")); uid != 1000000 || gid != 1000000 || mode != 0o644 {
			t.Errorf("default owner %d:%d mode %04o, want 1000000:1000000 0644", uid, gid, mode)
		}
	})

	t.Run("Append", func(t *testing.T) {
		filesPush(t, d, c, "/tmp/log", "one\n", nil)
		filesPush(t, d, c, "/tmp/log", "two\n", map[string]string{"X-LXD-write": "append"})
		if r := filesDo(t, d, "GET", c, "/tmp/log", nil, ""); string(r.body) != "one\ntwo\n" {
			t.Errorf("after append: %q", r.body)
		}
		filesPush(t, d, c, "/tmp/log", "three\n", map[string]string{"X-LXD-write": "overwrite"})
		if r := filesDo(t, d, "GET", c, "/tmp/log", nil, ""); string(r.body) != "three\n" {
			t.Errorf("after overwrite: %q", r.body)
		}
	})

	t.Run("Directory", func(t *testing.T) {
		filesPush(t, d, c, "/opt", "", map[string]string{"X-LXD-type": "directory"})
		filesPush(t, d, c, "/opt/d", "", map[string]string{"X-LXD-type": "directory", "X-LXD-mode": "0750", "X-LXD-uid": "5", "X-LXD-gid": "6"})
		uid, gid, mode := filesOwner(t, filepath.Join(rootfs, "opt/d"))
		if uid != 1000005 || gid != 1000006 || mode != 0o750 {
			t.Errorf("directory owner %d:%d mode %04o, want 1000005:1000006 0750", uid, gid, mode)
		}
		filesPush(t, d, c, "/opt/d/a", "a", nil)
		filesPush(t, d, c, "/opt/d/b", "b", nil)
		// Making an existing directory again is fine (mkdir -p).
		filesPush(t, d, c, "/opt/d", "", map[string]string{"X-LXD-type": "directory", "X-LXD-mode": "0750", "X-LXD-uid": "5", "X-LXD-gid": "6"})
		r := filesDo(t, d, "GET", c, "/opt/d", nil, "")
		filesExpect(t, r, 200, "")
		if r.header.Get("X-LXD-type") != "directory" || r.header.Get("X-LXD-uid") != "5" {
			t.Errorf("directory headers: %v", r.header)
		}
		var names []string
		if err := json.Unmarshal(r.env(t).Metadata, &names); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"a", "b"}) {
			t.Errorf("listing %v, want [a b]", names)
		}
		filesExpect(t, filesDo(t, d, "POST", c, "/no/such/dir", map[string]string{"X-LXD-type": "directory"}, ""), 404, "")
		// A file cannot be written over a directory.
		filesExpect(t, filesDo(t, d, "POST", c, "/opt/d", nil, "x"), 400, "/opt/d")
	})

	t.Run("Symlink", func(t *testing.T) {
		filesPush(t, d, c, "/opt/link", "/etc/hostname", map[string]string{"X-LXD-type": "symlink"})
		host := filepath.Join(rootfs, "opt/link")
		if target, err := os.Readlink(host); err != nil || target != "/etc/hostname" {
			t.Fatalf("host link: %q, %v", target, err)
		}
		if uid, _, _ := filesOwner(t, host); uid != 1000000 {
			t.Errorf("link owned by host uid %d, want 1000000", uid)
		}
		r := filesDo(t, d, "GET", c, "/opt/link", nil, "")
		filesExpect(t, r, 200, "")
		if r.header.Get("X-LXD-type") != "symlink" || string(r.body) != "/etc/hostname" {
			t.Errorf("pulled link: type %q target %q", r.header.Get("X-LXD-type"), r.body)
		}
		// Replacing a link with another one.
		filesPush(t, d, c, "/opt/link", "../etc/hosts", map[string]string{"X-LXD-type": "symlink"})
		if target, _ := os.Readlink(host); target != "../etc/hosts" {
			t.Errorf("replaced link points to %q", target)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		filesPush(t, d, c, "/tmp/gone", "x", nil)
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/gone", nil, ""), 200, "")
		if _, err := os.Lstat(filepath.Join(rootfs, "tmp/gone")); !os.IsNotExist(err) {
			t.Errorf("deleted file still there: %v", err)
		}
		filesExpect(t, filesDo(t, d, "GET", c, "/tmp/gone", nil, ""), 404, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/gone", nil, ""), 404, "")
		filesPush(t, d, c, "/tmp/dir", "", map[string]string{"X-LXD-type": "directory"})
		filesPush(t, d, c, "/tmp/dir/f", "x", nil)
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/dir", nil, ""), 400, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/dir/f", nil, ""), 200, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/dir", nil, ""), 200, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/", nil, ""), 400, "")
		// Deleting a symlink removes the link, not what it points to.
		filesPush(t, d, c, "/tmp/tolink", "/etc/passwd", map[string]string{"X-LXD-type": "symlink"})
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/tolink", nil, ""), 200, "")
		if _, err := os.Stat(filepath.Join(rootfs, "etc/passwd")); err != nil {
			t.Errorf("link target deleted: %v", err)
		}
	})

	t.Run("BadRequests", func(t *testing.T) {
		filesExpect(t, filesDo(t, d, "GET", c, "", nil, ""), 400, "path")
		filesExpect(t, filesDo(t, d, "GET", "nosuch", "/etc/passwd", nil, ""), 404, "nosuch")
		filesExpect(t, filesDo(t, d, "POST", c, "/tmp/x", map[string]string{"X-LXD-uid": "root"}, "x"), 400, "X-LXD-uid")
		filesExpect(t, filesDo(t, d, "POST", c, "/tmp/x", map[string]string{"X-LXD-mode": "999"}, "x"), 400, "X-LXD-mode")
		filesExpect(t, filesDo(t, d, "POST", c, "/tmp/x", map[string]string{"X-LXD-type": "fifo"}, "x"), 400, "X-LXD-type")
		filesExpect(t, filesDo(t, d, "POST", c, "/tmp/x", map[string]string{"X-LXD-write": "prepend"}, "x"), 400, "X-LXD-write")
		filesExpect(t, filesDo(t, d, "POST", c, "/", nil, "x"), 400, "")
		filesExpect(t, filesDo(t, d, "POST", c, "/no/such/dir/f", nil, "x"), 404, "")
		if _, err := os.Lstat(filepath.Join(rootfs, "tmp/x")); !os.IsNotExist(err) {
			t.Errorf("a refused push left /tmp/x behind: %v", err)
		}
	})

	t.Run("SetuidMode", func(t *testing.T) {
		filesPush(t, d, c, "/root/suid", "#!/bin/sh\n", map[string]string{"X-LXD-mode": "4755", "X-LXD-uid": "0"})
		if uid, _, mode := filesOwner(t, filepath.Join(rootfs, "root/suid")); uid != 1000000 || mode != 0o4755 {
			t.Errorf("setuid push: host uid %d mode %04o, want 1000000 4755", uid, mode)
		}
		// The container's setuid programs are the container's business:
		// a host user who could run one would be the container's root on
		// the host, owner of all its files. The running container's
		// rootfs must be out of reach.
		id, err := os.ReadFile("/usr/bin/id")
		if err != nil {
			t.Fatal(err)
		}
		filesPush(t, d, c, "/bin/suid-id", string(id), map[string]string{"X-LXD-mode": "4755", "X-LXD-uid": "0", "X-LXD-gid": "0"})
		cmd := exec.Command(filepath.Join(rootfs, "bin/suid-id"), "-u")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("host user nobody ran a setuid program of a running container: euid %s", strings.TrimSpace(string(out)))
		}
		filesExpect(t, filesDo(t, d, "DELETE", c, "/bin/suid-id", nil, ""), 200, "")
	})

	t.Run("OwnerOutsideMap", func(t *testing.T) {
		// Ids the container does not have must be refused: shifted, they
		// would name another range's user, or wrap around to the host's
		// root (1000000+4293967296 is 0 as a uid_t, and 4294967295 is -1,
		// which chown takes as "leave the owner alone": root).
		for _, id := range []string{"65536", "4293967295", "4293967296", "9223372036854775807"} {
			for _, h := range []string{"X-LXD-uid", "X-LXD-gid"} {
				for _, kind := range []string{"file", "directory"} {
					path := "/root/outside-" + kind
					r := filesDo(t, d, "POST", c, path, map[string]string{h: id, "X-LXD-mode": "4755", "X-LXD-type": kind}, "x")
					if r.status == 200 {
						uid, gid, mode := filesOwner(t, filepath.Join(rootfs, path))
						t.Errorf("%s %s=%s accepted: host owner %d:%d mode %04o", kind, h, id, uid, gid, mode)
						filesDo(t, d, "DELETE", c, path, nil, "")
						continue
					}
					filesExpect(t, r, 400, h)
					if _, err := os.Lstat(filepath.Join(rootfs, path)); !os.IsNotExist(err) {
						t.Errorf("refused %s push left %s behind", kind, path)
					}
				}
			}
		}
		r := filesDo(t, d, "POST", c, "/root/link-outside", map[string]string{"X-LXD-uid": "4293967296", "X-LXD-type": "symlink"}, "/x")
		filesExpect(t, r, 400, "X-LXD-uid")
		// The top of the range is fine.
		filesPush(t, d, c, "/root/top", "x", map[string]string{"X-LXD-uid": "65535", "X-LXD-gid": "65535"})
		if uid, gid, _ := filesOwner(t, filepath.Join(rootfs, "root/top")); uid != 1065535 || gid != 1065535 {
			t.Errorf("uid 65535 owned by host %d:%d", uid, gid)
		}
	})

	t.Run("EscapeAbsoluteSymlink", func(t *testing.T) {
		marker, content := filesHostMarker(t)
		markerDir := filepath.Dir(marker)
		// /etc/evil points at the marker's absolute host path; in the
		// container that is the container's own /tmp/<name>.
		filesPush(t, d, c, "/etc/evil", marker, map[string]string{"X-LXD-type": "symlink"})
		r := filesDo(t, d, "GET", c, "/etc/evil", nil, "")
		if strings.Contains(string(r.body), content) {
			t.Fatalf("GET through an absolute link read the host file: %q", r.body)
		}
		if r.status != 200 || r.header.Get("X-LXD-type") != "symlink" || string(r.body) != marker {
			t.Errorf("GET of the link: status %d type %q body %q; want the link itself", r.status, r.header.Get("X-LXD-type"), r.body)
		}
		filesPush(t, d, c, "/etc/evil", "written through the link\n", nil)
		filesAssertMarker(t, marker, content)
		inside := filepath.Join(rootfs, marker)
		if data, err := os.ReadFile(inside); err != nil || string(data) != "written through the link\n" {
			t.Errorf("the write through the link did not land at %s: %q, %v", inside, data, err)
		}
		if uid, _, _ := filesOwner(t, inside); uid != 1000000 {
			t.Errorf("file created through the link owned by host uid %d", uid)
		}
		filesExpect(t, filesDo(t, d, "GET", c, marker, nil, ""), 200, "written through the link")
		// A directory link to the host's marker directory: reads and
		// writes below it stay in the container, where that dir is
		// /tmp, and the marker name there is the container's file.
		filesPush(t, d, c, "/etc/evildir", markerDir, map[string]string{"X-LXD-type": "symlink"})
		filesPush(t, d, c, "/etc/evildir/"+filepath.Base(marker), "again\n", nil)
		filesAssertMarker(t, marker, content)
		r = filesDo(t, d, "GET", c, "/etc/evildir/"+filepath.Base(marker), nil, "")
		filesExpect(t, r, 200, "")
		if string(r.body) != "again\n" {
			t.Errorf("read through the dir link: %q", r.body)
		}
		// Something that exists only on the host is not found.
		filesExpect(t, filesDo(t, d, "GET", c, "/etc/evildir/../../proc/self/environ", nil, ""), 404, "")
		filesPush(t, d, c, "/etc/hostroot", "/", map[string]string{"X-LXD-type": "symlink"})
		hostOnly := filepath.Join(d.Dir, "cell.db")
		filesExpect(t, filesDo(t, d, "GET", c, "/etc/hostroot"+hostOnly, nil, ""), 404, "")
		filesExpect(t, filesDo(t, d, "POST", c, "/etc/hostroot"+hostOnly, nil, "junk"), 404, "")
		if data, _ := os.ReadFile(hostOnly); bytes.HasPrefix(data, []byte("junk")) {
			t.Fatal("the daemon's database was overwritten through a link")
		}
		for _, p := range []string{"/etc/evil", "/etc/evildir", "/etc/hostroot", marker} {
			filesExpect(t, filesDo(t, d, "DELETE", c, p, nil, ""), 200, "")
		}
		filesAssertMarker(t, marker, content)
	})

	t.Run("EscapeRelativeSymlink", func(t *testing.T) {
		marker, content := filesHostMarker(t)
		up := strings.Repeat("../", 12)
		// From the rootfs on the host, this many ".." reach the host's /.
		filesPush(t, d, c, "/etc/rel", up+strings.TrimPrefix(marker, "/"), map[string]string{"X-LXD-type": "symlink"})
		r := filesDo(t, d, "GET", c, "/etc/rel", nil, "")
		if strings.Contains(string(r.body), content) {
			t.Fatalf("GET through a relative link read the host file: %q", r.body)
		}
		filesPush(t, d, c, "/etc/rel", "relative\n", nil)
		filesAssertMarker(t, marker, content)
		if data, err := os.ReadFile(filepath.Join(rootfs, marker)); err != nil || string(data) != "relative\n" {
			t.Errorf("the write through the relative link did not land in the rootfs: %q, %v", data, err)
		}
		filesExpect(t, filesDo(t, d, "DELETE", c, "/etc/rel", nil, ""), 200, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, marker, nil, ""), 200, "")
	})

	t.Run("EscapeParentDirSymlink", func(t *testing.T) {
		name := "cell-escape-" + filepath.Base(t.TempDir())
		hostPath := filepath.Join("/etc", name)
		t.Cleanup(func() { os.Remove(hostPath) })
		filesPush(t, d, c, "/tmp/up", "../../../../../../", map[string]string{"X-LXD-type": "symlink"})
		filesPush(t, d, c, "/tmp/up/etc/"+name, "inside\n", nil)
		if _, err := os.Lstat(hostPath); err == nil {
			t.Fatalf("a push through /tmp/up created %s on the host", hostPath)
		}
		if data, err := os.ReadFile(filepath.Join(rootfs, "etc", name)); err != nil || string(data) != "inside\n" {
			t.Errorf("push through /tmp/up did not land in the rootfs: %q, %v", data, err)
		}
		// Reading the host's /etc/passwd through the link gets the
		// container's.
		own, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
		r := filesDo(t, d, "GET", c, "/tmp/up/etc/passwd", nil, "")
		filesExpect(t, r, 200, "")
		if !bytes.Equal(r.body, own) {
			t.Errorf("read through /tmp/up/etc/passwd: %q, want the container's %q", r.body, own)
		}
		filesPush(t, d, c, "/tmp/up/tmp/updir", "", map[string]string{"X-LXD-type": "directory"})
		if st, err := os.Lstat(filepath.Join(rootfs, "tmp/updir")); err != nil || !st.IsDir() {
			t.Errorf("mkdir through /tmp/up did not land in the rootfs: %v", err)
		}
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/up/etc/"+name, nil, ""), 200, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/up/tmp/updir", nil, ""), 200, "")
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/up", nil, ""), 200, "")
		if _, err := os.Stat("/etc/passwd"); err != nil {
			t.Fatalf("host /etc/passwd: %v", err)
		}
	})

	t.Run("EscapeDotDotPath", func(t *testing.T) {
		own, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
		r := filesDo(t, d, "GET", c, "../../../etc/passwd", nil, "")
		filesExpect(t, r, 200, "")
		if !bytes.Equal(r.body, own) {
			t.Errorf("../../../etc/passwd read %q, want the container's %q", r.body, own)
		}
		name := "cell-dotdot-" + filepath.Base(t.TempDir())
		t.Cleanup(func() { os.Remove(filepath.Join("/tmp", name)) })
		filesPush(t, d, c, "../../../../../../tmp/"+name, "dotdot\n", nil)
		if _, err := os.Lstat(filepath.Join("/tmp", name)); err == nil {
			t.Fatal("a ../ path wrote on the host's /tmp")
		}
		if data, _ := os.ReadFile(filepath.Join(rootfs, "tmp", name)); string(data) != "dotdot\n" {
			t.Errorf("../ path push did not land in the rootfs: %q", data)
		}
		filesExpect(t, filesDo(t, d, "DELETE", c, "/tmp/"+name, nil, ""), 200, "")
	})

	t.Run("SpecialFiles", func(t *testing.T) {
		fifo := filepath.Join(rootfs, "tmp/fifo")
		dev := filepath.Join(rootfs, "tmp/null")
		if err := unix.Mkfifo(fifo, 0o666); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(fifo); os.Remove(dev) })
		if err := os.Symlink("/tmp/fifo", filepath.Join(rootfs, "tmp/fifolink")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(filepath.Join(rootfs, "tmp/fifolink")) })
		for _, p := range []string{"/tmp/fifo", "/tmp/null", "/tmp/fifolink"} {
			for _, write := range []string{"overwrite", "append"} {
				start := time.Now()
				r := filesDo(t, d, "POST", c, p, map[string]string{"X-LXD-write": write}, "data")
				filesExpect(t, r, 400, "")
				if time.Since(start) > 10*time.Second {
					t.Errorf("push onto %s took %s", p, time.Since(start))
				}
			}
			if p != "/tmp/fifolink" {
				// (Pulling the link itself just returns its target.)
				filesExpect(t, filesDo(t, d, "GET", c, p, nil, ""), 400, p)
			}
		}
		for _, p := range []string{fifo, dev} {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFREG {
				t.Errorf("%s was replaced: %v", p, err)
			}
		}
	})

	t.Run("Privileged", func(t *testing.T) {
		const p = "files-priv"
		d.MustSucceed("POST", "/1.0/instances", map[string]any{
			"name": p, "config": map[string]string{"security.privileged": "true"},
			"source": map[string]string{"type": "image", "alias": "bb"}})
		// Pushed before the first start: the rootfs is shifted when the
		// instance starts privileged, this file with it.
		filesPush(t, d, p, "/root/before", "b", map[string]string{"X-LXD-uid": "1000", "X-LXD-gid": "1000"})
		d.MustSucceed("PUT", "/1.0/instances/"+p+"/state", map[string]string{"action": "start"})
		prootfs := filesRootfs(d, p)
		filesPush(t, d, p, "/root/after", "a", nil)
		if uid, gid, _ := filesOwner(t, filepath.Join(prootfs, "root/after")); uid != 0 || gid != 0 {
			t.Errorf("privileged push owned by host %d:%d, want 0:0", uid, gid)
		}
		if uid, gid, _ := filesOwner(t, filepath.Join(prootfs, "root/before")); uid != 1000 || gid != 1000 {
			t.Errorf("file pushed before the start owned by host %d:%d, want 1000:1000", uid, gid)
		}
		filesPush(t, d, p, "/root/u", "u", map[string]string{"X-LXD-uid": "33", "X-LXD-gid": "33"})
		if uid, _, _ := filesOwner(t, filepath.Join(prootfs, "root/u")); uid != 33 {
			t.Errorf("privileged push as uid 33 owned by host uid %d", uid)
		}
		r := filesDo(t, d, "GET", c, "/root/hello.txt", nil, "")
		if r.header.Get("X-LXD-uid") != "1000" {
			t.Errorf("the unprivileged instance's file is now reported as uid %q", r.header.Get("X-LXD-uid"))
		}
		if r := filesDo(t, d, "GET", p, "/root/u", nil, ""); r.header.Get("X-LXD-uid") != "33" {
			t.Errorf("pulled uid %q, want 33", r.header.Get("X-LXD-uid"))
		}
		d.MustSucceed("PUT", "/1.0/instances/"+p+"/state", map[string]any{"action": "stop", "force": true})
		d.MustSucceed("DELETE", "/1.0/instances/"+p, nil)
	})

	d.MustSucceed("PUT", "/1.0/instances/"+c+"/state", map[string]any{"action": "stop", "force": true})
}
