package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"cell/tests/harness"
)

// volumeCycle drives a custom volume on pool through its life: create,
// attach to a running instance (seen after a restart), write from inside,
// detach, attach to another instance and read the data there, refuse the
// delete while attached, delete once detached.
func volumeCycle(t *testing.T, d *harness.Daemon, pool string) {
	volDir := filepath.Join(d.Dir, "storage-pools", pool, "custom", "data")
	d.MustC("storage", "volume", "create", pool, "data", "--description", "shared data")
	if _, err := os.Stat(volDir); err != nil {
		t.Fatalf("volume dir: %v", err)
	}
	if got := d.MustC("storage", "volume", "list", pool, "--format", "csv"); !strings.Contains(got, "custom,data,shared data,filesystem,0") {
		t.Fatalf("volume list:\n%s", got)
	}

	// Attached to a running instance: mounted at once (hotplug).
	d.MustC("launch", "busybox", "v1", "-s", pool)
	d.MustC("storage", "volume", "attach", pool, "data", "v1", "/srv/data")
	d.MustC("exec", "v1", "--", "sh", "-c", "echo hello from v1 > /srv/data/greeting && mkdir /srv/data/sub")
	if got := d.MustC("storage", "volume", "show", pool, "data"); !strings.Contains(got, "/1.0/instances/v1") {
		t.Fatalf("volume show does not list v1 in used_by:\n%s", got)
	}
	// Detached from a running instance: unmounted at once.
	d.MustC("storage", "volume", "detach", pool, "data", "v1")
	if _, _, code := d.C("exec", "v1", "--", "test", "-e", "/srv/data/greeting"); code == 0 {
		t.Fatal("the volume is still mounted in v1 after detach")
	}
	d.MustC("stop", "v1", "--force")
	checkThreadsHome(t, d)

	d.MustC("init", "busybox", "v2", "-s", pool)
	d.MustC("storage", "volume", "attach", pool, "data", "v2", "vol", "/mnt/vol")
	d.MustC("start", "v2")
	if got := d.MustC("exec", "v2", "--", "cat", "/mnt/vol/greeting"); strings.TrimSpace(got) != "hello from v1" {
		t.Fatalf("v2 reads %q", got)
	}

	status, env := d.API("DELETE", "/1.0/storage-pools/"+pool+"/volumes/custom/data", nil)
	if status != 400 || !strings.Contains(env.Error, "v2") {
		t.Fatalf("delete of an attached volume: %d %q", status, env.Error)
	}
	status, env = d.API("DELETE", "/1.0/storage-pools/"+pool, nil)
	if status != 400 {
		t.Fatalf("delete of a pool holding volumes: %d %q", status, env.Error)
	}
	d.MustC("stop", "v2", "--force")
	d.MustC("storage", "volume", "detach", pool, "data", "v2", "vol")

	d.MustC("storage", "volume", "copy", pool+"/data", pool+"/data2")
	if b, err := os.ReadFile(filepath.Join(d.Dir, "storage-pools", pool, "custom", "data2", "greeting")); err != nil || string(b) != "hello from v1\n" {
		t.Fatalf("copy holds %q (%v)", b, err)
	}
	d.MustC("storage", "volume", "snapshot", pool, "data2", "s0")
	d.MustC("storage", "volume", "snapshot", pool, "data2")
	if status, env := d.API("POST", "/1.0/storage-pools/"+pool+"/volumes/custom/data2/snapshots", map[string]string{"name": "s0"}); status != 409 {
		t.Fatalf("duplicate snapshot name: %d %q", status, env.Error)
	}
	// Restore: the volume's content is the snapshot's again, whole.
	vol2 := filepath.Join(d.Dir, "storage-pools", pool, "custom", "data2")
	if err := os.WriteFile(filepath.Join(vol2, "greeting"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol2, "extra"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustC("storage", "volume", "restore", pool, "data2", "snap0")
	if b, err := os.ReadFile(filepath.Join(vol2, "greeting")); err != nil || string(b) != "hello from v1\n" {
		t.Fatalf("restored volume holds %q (%v)", b, err)
	}
	if _, err := os.Lstat(filepath.Join(vol2, "extra")); !os.IsNotExist(err) {
		t.Fatalf("a file made after the snapshot survived the restore: %v", err)
	}
	if status, env := d.API("PUT", "/1.0/storage-pools/"+pool+"/volumes/custom/data2", map[string]string{"restore": "nope"}); status != 404 {
		t.Fatalf("restore of a missing snapshot: %d %q, want 404", status, env.Error)
	}
	d.MustC("storage", "volume", "rename", pool, "data2", "data3")
	if got := d.MustC("storage", "volume", "snapshots", pool, "data3", "--format", "csv"); !strings.Contains(got, "s0,") || !strings.Contains(got, "snap0,") {
		t.Fatalf("snapshots after rename:\n%s", got)
	}
	d.MustC("storage", "volume", "delete", pool, "data3/snap0")
	if got := d.MustC("storage", "volume", "snapshots", pool, "data3", "--format", "csv"); strings.Contains(got, "snap0") {
		t.Fatalf("snapshots after delete:\n%s", got)
	}
	d.MustC("storage", "volume", "delete", pool, "data")
	d.MustC("storage", "volume", "delete", pool, "data3")
	for _, name := range []string{"data", "data2", "data3"} {
		if _, err := os.Lstat(filepath.Join(d.Dir, "storage-pools", pool, "custom", name)); !os.IsNotExist(err) {
			t.Fatalf("volume %s left on disk (%v)", name, err)
		}
	}
	for _, sub := range []string{"custom", "custom-snapshots"} {
		if left, _ := filepath.Glob(filepath.Join(d.Dir, "storage-pools", pool, sub, "*")); len(left) > 0 {
			t.Fatalf("left in %s/: %v", sub, left)
		}
	}
	if got := d.MustC("storage", "volume", "list", pool, "--format", "csv"); strings.Contains(got, "custom,") {
		t.Fatalf("volume list after delete:\n%s", got)
	}
	d.MustC("delete", "v1", "v2")
}

func TestVolumeDir(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	volumeCycle(t, d, "default")
}

func TestVolumeBtrfs(t *testing.T) {
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	d.MustC("storage", "create", "fast", "btrfs", "size=1GiB")
	volumeCycle(t, d, "fast")
	d.MustC("storage", "delete", "fast")
}

// TestVolumeHostPath mounts a host directory read-only, and checks what
// disk devices refuse.
func TestVolumeHostPath(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	host, err := os.MkdirTemp("", "cell-host-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(host) })
	if err := os.Chmod(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "motd"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.MustC("init", "busybox", "h1")
	d.MustC("config", "device", "add", "h1", "share", "disk", "source="+host, "path=/share", "readonly=true")
	d.MustC("start", "h1")
	if got := d.MustC("exec", "h1", "--", "cat", "/share/motd"); got != "from the host\n" {
		t.Fatalf("h1 reads %q", got)
	}
	if _, _, code := d.C("exec", "h1", "--", "touch", "/share/new"); code == 0 {
		t.Fatal("write to a read-only host mount succeeded")
	}
	if _, err := os.Stat(filepath.Join(host, "new")); err == nil {
		t.Fatal("file appeared on the host")
	}

	for _, dev := range []map[string]string{
		{"type": "disk", "source": host, "path": "relative"},
		{"type": "disk", "source": host, "path": "/a\nlxc.cap.drop="},
		{"type": "disk", "source": host + "/missing", "path": "/x"},
		{"type": "disk", "source": "relative", "path": "/x"},
		{"type": "disk", "path": "/x"},
		{"type": "disk", "pool": "default", "source": "a/b", "path": "/x"},
		{"type": "disk", "source": host, "path": "/x", "readonly": "maybe"},
	} {
		status, env := d.API("PATCH", "/1.0/instances/h1", map[string]any{"devices": map[string]any{"bad": dev}})
		if status != 400 {
			t.Errorf("device %v: %d %q, want 400", dev, status, env.Error)
		}
	}
	for _, name := range []string{"a/b", "..", ""} {
		status, env := d.API("POST", "/1.0/storage-pools/default/volumes/custom", map[string]any{"name": name})
		if status != 400 {
			t.Errorf("volume name %q: %d %q, want 400", name, status, env.Error)
		}
	}
	status, env := d.API("POST", "/1.0/storage-pools/default/volumes/custom", map[string]any{"name": "x", "source": map[string]string{"type": "copy", "name": "missing"}})
	if status != 404 {
		t.Errorf("copy of a missing volume: %d %q, want 404", status, env.Error)
	}
	if _, err := os.Lstat(filepath.Join(d.Dir, "storage-pools", "default", "custom", "x")); err == nil {
		t.Error("a failed copy left its volume")
	}
	status, env = d.API("PATCH", "/1.0/instances/h1", map[string]any{"devices": map[string]any{
		"v": map[string]string{"type": "disk", "pool": "default", "source": "nope", "path": "/v"}}})
	if status != 400 || !strings.Contains(env.Error, "nope") {
		t.Errorf("attach of a missing volume: %d %q, want 400", status, env.Error)
	}

	// A read-only host directory added to the running instance.
	d.MustC("config", "device", "add", "h1", "share2", "disk", "source="+host, "path=/opt/share2", "readonly=true")
	if got := d.MustC("exec", "h1", "--", "cat", "/opt/share2/motd"); got != "from the host\n" {
		t.Fatalf("h1 reads %q through the hotplugged mount", got)
	}
	if _, _, code := d.C("exec", "h1", "--", "touch", "/opt/share2/new"); code == 0 {
		t.Fatal("write to a hotplugged read-only host mount succeeded")
	}

	// A volume that a profile brings is mounted when the profile is added
	// to the running instance, and unmounted at once when it is removed
	// from the profile (profile changes reach running instances, as in
	// LXD); deleting it is refused while the profile attaches it.
	d.MustC("storage", "volume", "create", "default", "live")
	d.MustC("profile", "create", "withvol")
	if status, env := d.API("PATCH", "/1.0/profiles/withvol", map[string]any{"devices": map[string]any{
		"live": map[string]string{"type": "disk", "pool": "default", "source": "live", "path": "/live"}}}); status != 200 {
		t.Fatalf("add the volume to the profile: %d %q", status, env.Error)
	}
	d.MustC("profile", "add", "h1", "withvol")
	d.MustC("exec", "h1", "--", "touch", "/live/x")
	if status, env := d.API("DELETE", "/1.0/storage-pools/default/volumes/custom/live", nil); status != 400 || !strings.Contains(env.Error, "h1") {
		t.Errorf("delete of a volume a profile attaches: %d %q, want 400", status, env.Error)
	}
	if status, env := d.API("PUT", "/1.0/profiles/withvol", map[string]any{"config": map[string]string{}, "devices": map[string]any{}}); status != 200 {
		t.Fatalf("remove the volume from the profile: %d %q", status, env.Error)
	}
	if _, _, code := d.C("exec", "h1", "--", "test", "-e", "/live/x"); code == 0 {
		t.Error("the volume is still mounted in h1 after its removal from the profile")
	}
	d.MustC("storage", "volume", "delete", "default", "live")
	d.MustC("stop", "h1", "--force")
	checkThreadsHome(t, d)
	d.MustC("delete", "-f", "h1")
}

// checkThreadsHome fails when a thread of celld is still in another mount
// namespace than the host's (a hotplug's thread that stayed in a
// container's namespace pins the container's mounts after it stops).
func checkThreadsHome(t *testing.T, d *harness.Daemon) {
	t.Helper()
	host, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/ns/mnt", d.PID()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of celld %d: %v", d.PID(), err)
	}
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != host {
			t.Errorf("celld thread %s is in mount namespace %s, not the host's %s", task, ns, host)
		}
	}
}

func TestVolumeZFS(t *testing.T) {
	requireZFS(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	var zpool string
	t.Cleanup(func() {
		if zpool != "" && zpoolExists(zpool) {
			_ = exec.Command("zpool", "destroy", "-f", zpool).Run()
		}
	})
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	d.MustC("storage", "create", "tank", "zfs", "size=1GiB")
	zpool = strings.TrimSpace(d.MustC("storage", "get", "tank", "zfs.pool_name"))
	volumeCycle(t, d, "tank")
	d.MustC("storage", "delete", "tank")
}

// TestVolumeCopyAcrossPools copies a custom volume with its snapshots
// between dir, btrfs and zfs pools: each copy has the same files (owner,
// mode, hard links, xattrs where the filesystem has them) and the same
// snapshots with their own content; a copy that cannot be made whole
// leaves nothing.
func TestVolumeCopyAcrossPools(t *testing.T) {
	requireBtrfs(t)
	requireZFS(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	quotaPool(t, d, "bt", "btrfs", "size=1GiB")
	quotaPool(t, d, "zt", "zfs", "size=1GiB")
	path := func(pool, vol string) string { return filepath.Join(d.Dir, "storage-pools", pool, "custom", vol) }
	write := func(file, content string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	src := path("default", "v")
	d.MustC("storage", "volume", "create", "default", "v")
	write(filepath.Join(src, "data"), "one")
	if err := os.Chown(filepath.Join(src, "data"), 1000123, 1000456); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "data"), filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	d.MustC("storage", "volume", "snapshot", "default", "v", "s0")
	write(filepath.Join(src, "data"), "two")
	write(filepath.Join(src, "later"), "x")
	d.MustC("storage", "volume", "snapshot", "default", "v", "s1")
	write(filepath.Join(src, "data"), "three")
	if err := unix.Setxattr(filepath.Join(src, "data"), "user.cell", []byte("yes"), 0); err != nil {
		t.Fatal(err)
	}

	checkFiles := func(dir, want string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, "data"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 1000123 || st.Gid != 1000456 || st.Mode&0o777 != 0o640 || st.Nlink != 2 {
			t.Errorf("%s/data: uid %d gid %d mode %o links %d, want 1000123 1000456 640 2", dir, st.Uid, st.Gid, st.Mode&0o777, st.Nlink)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "link")); err != nil || string(b) != want {
			t.Errorf("%s/link holds %q (%v), want %q", dir, b, err, want)
		}
	}
	snapshots := func(pool, vol string) string {
		t.Helper()
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(d.MustC("storage", "volume", "snapshots", pool, vol, "--format", "csv")), "\n") {
			if name, _, _ := strings.Cut(line, ","); name != "" {
				names = append(names, name)
			}
		}
		return strings.Join(names, " ")
	}

	// dir -> btrfs: the xattr comes along.
	d.MustC("storage", "volume", "copy", "default/v", "bt/v")
	checkFiles(path("bt", "v"), "three")
	xattr := make([]byte, 16)
	if n, err := unix.Getxattr(filepath.Join(path("bt", "v"), "data"), "user.cell", xattr); err != nil || string(xattr[:n]) != "yes" {
		t.Errorf("xattr on the btrfs copy: %q %v", xattr, err)
	}
	if got := snapshots("bt", "v"); got != "s0 s1" {
		t.Fatalf("btrfs copy's snapshots = %q, want s0 s1", got)
	}
	// zfs-fuse has no xattrs: the copy fails and leaves nothing.
	if _, errOut, code := d.C("storage", "volume", "copy", "bt/v", "zt/v"); code == 0 {
		t.Error("copy of a volume with xattrs to zfs-fuse succeeded")
	} else if !strings.Contains(errOut, "xattr") {
		t.Errorf("failed copy says %q, want it to name the xattrs", errOut)
	}
	if status, _ := d.API("GET", "/1.0/storage-pools/zt/volumes/custom/v", nil); status != 404 {
		t.Errorf("failed copy left its volume: %d", status)
	}
	if _, err := os.Lstat(path("zt", "v")); !os.IsNotExist(err) {
		t.Errorf("failed copy left %s: %v", path("zt", "v"), err)
	}
	if err := unix.Removexattr(filepath.Join(path("bt", "v"), "data"), "user.cell"); err != nil {
		t.Fatal(err)
	}
	// btrfs -> zfs -> dir.
	d.MustC("storage", "volume", "copy", "bt/v", "zt/v")
	checkFiles(path("zt", "v"), "three")
	d.MustC("storage", "volume", "copy", "zt/v", "default/w")
	checkFiles(path("default", "w"), "three")
	d.MustC("storage", "volume", "copy", "zt/v", "bt/bare", "--volume-only")
	checkFiles(path("bt", "bare"), "three")
	if got := snapshots("bt", "bare"); got != "" {
		t.Errorf("--volume-only copy has snapshots %q", got)
	}

	// Every copy's snapshots hold their own content: restore s1, then
	// (zfs restores only the latest) delete s1 and restore s0.
	for _, pv := range [][2]string{{"bt", "v"}, {"zt", "v"}, {"default", "w"}} {
		pool, vol := pv[0], pv[1]
		if got := snapshots(pool, vol); got != "s0 s1" {
			t.Errorf("%s/%s snapshots = %q, want s0 s1", pool, vol, got)
			continue
		}
		d.MustC("storage", "volume", "restore", pool, vol, "s1")
		checkFiles(path(pool, vol), "two")
		if _, err := os.Stat(filepath.Join(path(pool, vol), "later")); err != nil {
			t.Errorf("%s/%s restored to s1 lacks later: %v", pool, vol, err)
		}
		d.MustC("storage", "volume", "delete", pool, vol+"/s1")
		d.MustC("storage", "volume", "restore", pool, vol, "s0")
		checkFiles(path(pool, vol), "one")
		if _, err := os.Stat(filepath.Join(path(pool, vol), "later")); !os.IsNotExist(err) {
			t.Errorf("%s/%s restored to s0 still has later: %v", pool, vol, err)
		}
	}
	for _, pv := range []string{"default v", "default w", "bt v", "bt bare", "zt v"} {
		f := strings.Fields(pv)
		d.MustC("storage", "volume", "delete", f[0], f[1])
	}
	d.MustC("storage", "delete", "bt")
	d.MustC("storage", "delete", "zt")
}
