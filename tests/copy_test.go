package tests

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"cell/tests/harness"
)

// instanceConfig reads an instance's own config through the API.
func instanceConfig(t *testing.T, d *harness.Daemon, name string) map[string]string {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name, nil)
	if status != http.StatusOK {
		t.Fatalf("get %s: %d %s", name, status, env.Error)
	}
	var inst struct {
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal(env.Metadata, &inst); err != nil {
		t.Fatal(err)
	}
	return inst.Config
}

// copyCycle copies a running and a stopped instance on a pool, with and
// without snapshots, from a snapshot, and refreshes a copy. It returns
// after checking each; check, when set, looks at the pool's own view of a
// copy (source volume path, copy volume path).
func copyCycle(t *testing.T, d *harness.Daemon, pool, src string, check func(srcVol, dstVol string)) {
	cat := func(inst, file string) string {
		out, _, code := d.C("exec", inst, "--", "cat", file)
		if code != 0 {
			return "<missing>"
		}
		return strings.TrimSpace(out)
	}
	d.MustC("exec", src, "--", "sh", "-c", "echo one > /root/data")
	d.MustC("snapshot", src, "snap0")
	d.MustC("exec", src, "--", "sh", "-c", "echo two > /root/data && echo bye > /root/gone")

	// A running instance, with its snapshots.
	d.MustC("copy", src, "c2")
	if got := snapshotNames(t, d, "c2"); !slices.Equal(got, []string{"snap0"}) {
		t.Errorf("copy's snapshots = %v, want [snap0]", got)
	}
	if got := snapshotDirs(t, pool, "c2"); !slices.Equal(got, []string{"snap0"}) {
		t.Errorf("copy's snapshots on disk = %v, want [snap0]", got)
	}
	conf := instanceConfig(t, d, "c2")
	if conf["volatile.apply_template"] != "copy" {
		t.Errorf("copy's volatile.apply_template = %q, want copy", conf["volatile.apply_template"])
	}
	if _, ok := conf["volatile.last_state.power"]; ok {
		t.Errorf("copy has the source's volatile.last_state.power")
	}
	if check != nil {
		check(filepath.Join(pool, "containers", src), filepath.Join(pool, "containers", "c2"))
	}
	d.MustC("start", "c2")
	if got := cat("c2", "/root/data"); got != "two" {
		t.Errorf("copy of the running instance: data = %q, want two", got)
	}
	if got := cat("c2", "/etc/hostname"); got != "c2" {
		t.Errorf("copy's /etc/hostname = %q, want c2 (copy template)", got)
	}
	if got := strings.TrimSpace(d.MustC("exec", "c2", "--", "hostname")); got != "c2" {
		t.Errorf("copy's hostname = %q, want c2", got)
	}
	d.MustC("restore", "c2", "snap0")
	if got := cat("c2", "/root/data"); got != "one" {
		t.Errorf("copy's snapshot: data = %q, want one", got)
	}

	// A stopped instance, without its snapshots, with a config override.
	d.MustC("stop", "-f", src)
	d.MustC("copy", src, "c3", "--instance-only", "-c", "user.note=copied")
	if got := snapshotNames(t, d, "c3"); len(got) != 0 {
		t.Errorf("--instance-only copy has snapshots %v", got)
	}
	if got := snapshotDirs(t, pool, "c3"); len(got) != 0 {
		t.Errorf("--instance-only copy has snapshots on disk %v", got)
	}
	if got := instanceConfig(t, d, "c3")["user.note"]; got != "copied" {
		t.Errorf("copy -c user.note: %q", got)
	}
	d.MustC("start", "c3")
	if got, host := cat("c3", "/root/data"), cat("c3", "/etc/hostname"); got != "two" || host != "c3" {
		t.Errorf("copy of the stopped instance: data = %q, hostname %q", got, host)
	}

	// From a snapshot.
	d.MustC("copy", src+"/snap0", "c4")
	if check != nil {
		check(filepath.Join(pool, "snapshots", src, "snap0"), filepath.Join(pool, "containers", "c4"))
	}
	d.MustC("start", "c4")
	if got, host := cat("c4", "/root/data"), cat("c4", "/etc/hostname"); got != "one" || host != "c4" {
		t.Errorf("copy of a snapshot: data = %q, hostname %q", got, host)
	}
	if got := cat("c4", "/root/gone"); got != "<missing>" {
		t.Errorf("copy of a snapshot has a file made after it: %q", got)
	}

	// Refresh: a changed file comes across, a deleted one goes, the
	// snapshots follow the source's.
	d.MustC("start", src)
	d.MustC("exec", src, "--", "sh", "-c", "echo three > /root/data && rm /root/gone")
	d.MustC("snapshot", src, "snap1")
	d.MustC("delete", src+"/snap0")
	d.MustC("stop", "-f", "c2")
	if _, errOut, code := d.C("copy", src, "c2"); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("copy onto an existing instance: exit %d: %s", code, errOut)
	}
	d.MustC("copy", src, "c2", "--refresh")
	if got := snapshotNames(t, d, "c2"); !slices.Equal(got, []string{"snap1"}) {
		t.Errorf("refreshed copy's snapshots = %v, want [snap1]", got)
	}
	if got := snapshotDirs(t, pool, "c2"); !slices.Equal(got, []string{"snap1"}) {
		t.Errorf("refreshed copy's snapshots on disk = %v, want [snap1]", got)
	}
	d.MustC("start", "c2")
	if got, gone := cat("c2", "/root/data"), cat("c2", "/root/gone"); got != "three" || gone != "<missing>" {
		t.Errorf("after refresh: data = %q, gone = %q", got, gone)
	}
	if got := cat("c2", "/etc/hostname"); got != "c2" {
		t.Errorf("after refresh: /etc/hostname = %q, want c2", got)
	}

	// Errors.
	if status, env := d.API("POST", "/1.0/instances", map[string]any{
		"name": "c3", "source": map[string]any{"type": "copy", "source": src}}); status != http.StatusConflict {
		t.Errorf("copy onto an existing name: %d %s, want 409", status, env.Error)
	}
	for _, missing := range []string{"nope", src + "/nope"} {
		if status, env := d.API("POST", "/1.0/instances", map[string]any{
			"name": "c9", "source": map[string]any{"type": "copy", "source": missing}}); status != http.StatusNotFound {
			t.Errorf("copy of %s: %d %s, want 404", missing, status, env.Error)
		}
	}
	for _, name := range []string{"c2", "c3", "c4", src} {
		d.MustC("delete", "-f", name)
	}
	if left := snapshotDirs(t, pool, ""); len(left) != 0 {
		t.Errorf("left in snapshots dir: %v", left)
	}
}

func TestCopyDir(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "c1", nil)
	pool := filepath.Join(d.Dir, "storage-pools", "default")

	// A refresh is incremental: a file the source has unchanged is not
	// copied again, it keeps its inode on the target.
	inode := func(p string) uint64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	d.MustC("copy", "c1", "r1")
	busybox := filepath.Join(pool, "containers", "r1", "rootfs", "bin", "busybox")
	before := inode(busybox)
	d.MustC("copy", "c1", "r1", "--refresh")
	if after := inode(busybox); after != before {
		t.Errorf("refresh copied an unchanged file again: inode %d, was %d", after, before)
	}
	d.MustC("delete", "r1")

	copyCycle(t, d, pool, "c1", nil)
}

func TestCopyBtrfs(t *testing.T) {
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustC("storage", "create", "fast", "btrfs", "size=1GiB")
	d.MustC("launch", "bb", "b1", "-s", "fast")
	copyCycle(t, d, filepath.Join(d.Dir, "storage-pools", "fast"), "b1", func(srcVol, dstVol string) {
		if parent, vol := subvolumeField(t, dstVol, "Parent UUID"), subvolumeField(t, srcVol, "UUID"); parent != vol {
			t.Errorf("copy %s: parent %s is not the source %s (%s)", dstVol, parent, srcVol, vol)
		}
		if flags := subvolumeField(t, dstVol, "Flags"); strings.Contains(flags, "readonly") {
			t.Errorf("copy %s is read-only", dstVol)
		}
	})
	// A copy from the dir pool to the btrfs one is a subvolume there.
	d.MustC("launch", "bb", "b5")
	d.MustC("copy", "b5", "b6", "-s", "fast")
	subvolumeField(t, filepath.Join(d.Dir, "storage-pools", "fast", "containers", "b6"), "UUID")
	d.MustC("delete", "-f", "b5", "b6")
	d.MustC("storage", "delete", "fast")
}

// TestCopyLXC copies with LXD's own client.
func TestCopyLXC(t *testing.T) {
	needLXCClient(t)
	d := busyboxDaemon(t)
	d.Launch("bb", "l1", nil)
	d.MustC("exec", "l1", "--", "sh", "-c", "echo one > /root/f")
	mustLXC(t, d, "snapshot", "l1")
	mustLXC(t, d, "copy", "l1", "l2")
	mustLXC(t, d, "copy", "l1/snap0", "l3")
	mustLXC(t, d, "copy", "l1", "l4", "--instance-only")
	if got := snapshotNames(t, d, "l2"); !slices.Equal(got, []string{"snap0"}) {
		t.Errorf("lxc copy: snapshots %v", got)
	}
	if got := snapshotNames(t, d, "l4"); len(got) != 0 {
		t.Errorf("lxc copy --instance-only: snapshots %v", got)
	}
	mustLXC(t, d, "start", "l2")
	if out := d.MustC("exec", "l2", "--", "cat", "/root/f", "/etc/hostname"); strings.Fields(out)[0] != "one" || strings.Fields(out)[1] != "l2" {
		t.Errorf("after lxc copy: %q", out)
	}
	d.MustC("exec", "l1", "--", "sh", "-c", "echo two > /root/f")
	mustLXC(t, d, "stop", "-f", "l2")
	mustLXC(t, d, "copy", "l1", "l2", "--refresh")
	mustLXC(t, d, "start", "l2")
	if out := d.MustC("exec", "l2", "--", "cat", "/root/f"); strings.TrimSpace(out) != "two" {
		t.Errorf("after lxc copy --refresh: %q", out)
	}
}

// TestCopyAcrossPools copies instances with their snapshots from a dir
// pool to btrfs, from btrfs to zfs and from zfs back to dir (`c copy -s`),
// and a snapshot to another pool: each copy boots with the source's
// files, its snapshots hold their own content and are snapshots of the
// new pool's driver, and a refused copy leaves nothing.
func TestCopyAcrossPools(t *testing.T) {
	requireBtrfs(t)
	requireZFS(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	quotaPool(t, d, "bt", "btrfs", "size=1GiB")
	zpool := quotaPool(t, d, "zt", "zfs", "size=1GiB")
	cat := func(inst string) string {
		out, _, code := d.C("exec", inst, "--", "cat", "/root/data")
		if code != 0 {
			return "<missing>"
		}
		return strings.TrimSpace(out)
	}
	poolOf := func(inst string) string {
		_, env := d.API("GET", "/1.0/instances/"+inst, nil)
		var i struct {
			ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
		}
		if err := json.Unmarshal(env.Metadata, &i); err != nil {
			t.Fatal(err)
		}
		return i.ExpandedDevices["root"]["pool"]
	}

	d.Launch("bb", "a", nil)
	d.MustC("exec", "a", "--", "sh", "-c", "echo one > /root/data")
	d.MustC("snapshot", "a", "s0")
	d.MustC("exec", "a", "--", "sh", "-c", "echo two > /root/data")

	// dir -> btrfs -> zfs -> dir, each with the snapshot.
	for _, step := range [][3]string{{"a", "b", "bt"}, {"b", "z", "zt"}, {"z", "back", "default"}} {
		src, dst, pool := step[0], step[1], step[2]
		d.MustC("copy", src, dst, "-s", pool)
		if got := poolOf(dst); got != pool {
			t.Fatalf("copy %s is on pool %q, want %s", dst, got, pool)
		}
		if got := snapshotNames(t, d, dst); !slices.Equal(got, []string{"s0"}) {
			t.Fatalf("copy %s's snapshots = %v, want [s0]", dst, got)
		}
		d.MustC("start", dst)
		if got := cat(dst); got != "two" {
			t.Fatalf("copy %s's data = %q, want two", dst, got)
		}
		if got := strings.TrimSpace(d.MustC("exec", dst, "--", "hostname")); got != dst {
			t.Errorf("copy %s's hostname = %q", dst, got)
		}
		d.MustC("stop", "-f", dst)
	}
	// The snapshots are the new driver's own.
	if got := subvolumeField(t, filepath.Join(d.Dir, "storage-pools", "bt", "snapshots", "b", "s0"), "Flags"); got != "readonly" {
		t.Errorf("btrfs copy's snapshot flags = %q, want readonly", got)
	}
	zfsOut(t, "list", zpool+"/containers/z@snapshot-s0")
	// and hold the snapshot's content.
	for _, inst := range []string{"b", "z", "back"} {
		d.MustC("restore", inst, "s0")
		d.MustC("start", inst)
		if got := cat(inst); got != "one" {
			t.Errorf("%s restored to s0: data = %q, want one", inst, got)
		}
		d.MustC("stop", "-f", inst)
	}

	// A snapshot to another pool, and --instance-only.
	d.MustC("copy", "a/s0", "fromsnap", "-s", "zt")
	d.MustC("copy", "a", "bare", "-s", "bt", "--instance-only")
	if got := snapshotNames(t, d, "bare"); len(got) != 0 {
		t.Errorf("--instance-only copy has snapshots %v", got)
	}
	d.MustC("start", "fromsnap")
	if got := cat("fromsnap"); got != "one" {
		t.Errorf("snapshot copied to zfs: data = %q, want one", got)
	}

	// A pool that does not exist: 404, nothing made.
	if _, errOut, code := d.C("copy", "a", "nowhere", "-s", "nope"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("copy to a missing pool: exit %d %q", code, errOut)
	}
	if status, _ := d.API("GET", "/1.0/instances/nowhere", nil); status != http.StatusNotFound {
		t.Errorf("refused copy left instance nowhere: %d", status)
	}

	d.MustC("delete", "-f", "a", "b", "z", "back", "fromsnap", "bare")
	d.MustC("storage", "delete", "bt")
	d.MustC("storage", "delete", "zt")
}
