package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cell/tests/harness"
)

// requireZFS skips unless zfs-fuse (or kernel ZFS) tools are installed.
func requireZFS(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"zpool", "zfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("zfs tools are not installed: run scripts/install-deps.sh (zfs-fuse)")
		}
	}
}

func zfsOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("zfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func zpoolExists(name string) bool {
	return exec.Command("zpool", "list", "-H", "-o", "name", name).Run() == nil
}

// TestZFS drives a loop-file zfs pool through launch, snapshots, restores,
// a reboot (zpool exported) and delete, on real ZFS (zfs-fuse here).
func TestZFS(t *testing.T) {
	requireZFS(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	var zpool string
	t.Cleanup(func() {
		if zpool != "" && zpoolExists(zpool) {
			if out, err := exec.Command("zpool", "destroy", "-f", zpool).CombinedOutput(); err != nil {
				t.Errorf("destroy zpool %s: %v\n%s", zpool, err, out)
			}
		}
	})
	d.ImportImage(harness.BusyboxImage(t), "busybox")

	mnt := filepath.Join(d.Dir, "storage-pools", "tank")
	loopFile := filepath.Join(d.Dir, "disks", "tank.img")
	d.MustC("storage", "create", "tank", "zfs", "size=1GiB")
	var pool struct {
		Config map[string]string `json:"config"`
	}
	_, env := d.API("GET", "/1.0/storage-pools/tank", nil)
	if err := json.Unmarshal(env.Metadata, &pool); err != nil {
		t.Fatal(err)
	}
	zpool = pool.Config["zfs.pool_name"]
	if zpool == "" || !strings.HasPrefix(zpool, "tank-") || pool.Config["source"] != loopFile {
		t.Fatalf("pool config = %v", pool.Config)
	}
	if !zpoolExists(zpool) {
		t.Fatalf("zpool %s not listed", zpool)
	}

	d.MustC("launch", "busybox", "c1", "-s", "tank")
	origin := zfsOut(t, "get", "-H", "-o", "value", "origin", zpool+"/containers/c1")
	if !strings.HasPrefix(origin, zpool+"/images/") || !strings.HasSuffix(origin, "@readonly") {
		t.Fatalf("origin of c1 = %q, want a clone of an image volume", origin)
	}
	if got := d.MustC("exec", "c1", "--", "cat", "/etc/hostname"); strings.TrimSpace(got) != "c1" {
		t.Fatalf("exec in c1: %q", got)
	}

	write := func(content string) {
		d.MustC("exec", "c1", "--", "sh", "-c", "echo "+content+" > /root/data")
	}
	cat := func() string {
		out, _, code := d.C("exec", "c1", "--", "cat", "/root/data")
		if code != 0 {
			return "<missing>"
		}
		return strings.TrimSpace(out)
	}

	t.Run("snapshots", func(t *testing.T) {
		d := d.For(t)
		write("one")
		d.MustC("snapshot", "c1", "s1")
		if b, err := os.ReadFile(filepath.Join(mnt, "snapshots", "c1", "s1", "rootfs", "root", "data")); err != nil || strings.TrimSpace(string(b)) != "one" {
			t.Fatalf("snapshot at its path: %q %v", b, err)
		}
		write("two")
		d.MustC("snapshot", "c1", "s2")
		write("three")
		// Restore to the latest snapshot.
		d.MustC("restore", "c1", "s2")
		if got := cat(); got != "two" {
			t.Fatalf("after restore s2: %q", got)
		}
		// Restore to an older one: refused without remove_snapshots.
		status, env := d.API("PUT", "/1.0/instances/c1", map[string]any{"restore": "s1"})
		if status != 400 || !strings.Contains(env.Error, "zfs.remove_snapshots") {
			t.Fatalf("restore to an older snapshot: %d %q", status, env.Error)
		}
		if got := snapshotNames(t, d, "c1"); !slices.Equal(got, []string{"s1", "s2"}) {
			t.Fatalf("snapshots after refused restore = %v", got)
		}
		d.MustC("storage", "set", "tank", "volume.zfs.remove_snapshots", "true")
		d.MustC("restore", "c1", "s1")
		if got := cat(); got != "one" {
			t.Fatalf("after restore s1: %q", got)
		}
		if got := snapshotNames(t, d, "c1"); !slices.Equal(got, []string{"s1"}) {
			t.Fatalf("snapshots after restore to s1 = %v, want [s1]", got)
		}
		if got := zfsOut(t, "list", "-H", "-o", "name", "-t", "snapshot", "-r", zpool+"/containers/c1"); got != zpool+"/containers/c1@snapshot-s1" {
			t.Fatalf("zfs snapshots = %q", got)
		}
	})

	t.Run("reboot", func(t *testing.T) {
		d := d.For(t)
		d.MustC("stop", "-f", "c1")
		d.Kill()
		// What a reboot does: the zpool is no longer imported.
		if out, err := exec.Command("zpool", "export", zpool).CombinedOutput(); err != nil {
			t.Fatalf("zpool export: %v\n%s", err, out)
		}
		d.Start()
		if !zpoolExists(zpool) {
			t.Fatalf("zpool %s not imported at start", zpool)
		}
		d.MustC("start", "c1")
		if got := cat(); got != "one" {
			t.Fatalf("data after restart: %q", got)
		}
	})

	d.MustC("delete", "-f", "c1")
	if out, _ := exec.Command("zfs", "list", "-H", "-o", "name", "-r", zpool).CombinedOutput(); strings.Contains(string(out), "c1") {
		t.Fatalf("datasets of c1 left:\n%s", out)
	}
	d.MustC("storage", "delete", "tank")
	if zpoolExists(zpool) {
		t.Fatalf("zpool %s left after pool delete", zpool)
	}
	if m := harness.MountsUnder(d.Dir); len(m) != 0 {
		t.Fatalf("mounts after pool delete: %v", m)
	}
	if l := harness.LoopsUnder(d.Dir); len(l) != 0 {
		t.Fatalf("loop devices after pool delete: %v", l)
	}
	for _, p := range []string{loopFile, mnt} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s left after pool delete: %v", p, err)
		}
	}
}

// TestZFSCopy copies instances with their snapshots and refreshes copies
// on a zfs pool (send/recv, incremental for refresh).
func TestZFSCopy(t *testing.T) {
	requireZFS(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	quotaPool(t, d, "tank", "zfs", "size=1GiB")
	d.MustC("launch", "bb", "z1", "-s", "tank")
	pool := filepath.Join(d.Dir, "storage-pools", "tank")
	copyCycle(t, d, pool, "z1", nil)

	// Several snapshots, then an incremental refresh that adds one.
	d.MustC("launch", "bb", "z5", "-s", "tank")
	for _, s := range []string{"a", "b"} {
		d.MustC("exec", "z5", "--", "sh", "-c", "echo "+s+" > /root/data")
		d.MustC("snapshot", "z5", s)
	}
	d.MustC("exec", "z5", "--", "sh", "-c", "echo now > /root/data")
	d.MustC("copy", "z5", "z6")
	if got := snapshotNames(t, d, "z6"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("copy's snapshots = %v", got)
	}
	for _, s := range []string{"a", "b"} {
		if b, err := os.ReadFile(filepath.Join(pool, "snapshots", "z6", s, "rootfs", "root", "data")); err != nil || strings.TrimSpace(string(b)) != s {
			t.Errorf("copy's snapshot %s: %q %v", s, b, err)
		}
	}
	d.MustC("exec", "z5", "--", "sh", "-c", "echo c > /root/data")
	d.MustC("snapshot", "z5", "c")
	d.MustC("exec", "z5", "--", "sh", "-c", "echo later > /root/data")
	d.MustC("copy", "z5", "z6", "--refresh")
	if got := snapshotNames(t, d, "z6"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("refreshed copy's snapshots = %v", got)
	}
	d.MustC("start", "z6")
	if got := strings.TrimSpace(d.MustC("exec", "z6", "--", "cat", "/root/data")); got != "later" {
		t.Errorf("refreshed copy's data = %q, want later", got)
	}
	// The snapshots are the copy's own history: restore works.
	d.MustC("restore", "z6", "c")
	if got := strings.TrimSpace(d.MustC("exec", "z6", "--", "cat", "/root/data")); got != "c" {
		t.Errorf("copy restored to c: %q", got)
	}
	d.MustC("delete", "-f", "z5", "z6")
	d.MustC("storage", "delete", "tank")
}

// TestZFSCopyClone: on zfs, a copy of an instance or of a snapshot is a
// clone (it shares the source's blocks), and the source, its snapshot and
// the copies can then be deleted in any order, the copies keeping their
// data, with nothing left in the zpool once all are gone.
func TestZFSCopyClone(t *testing.T) {
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
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustC("storage", "create", "tank", "zfs", "size=1GiB")
	zpool = strings.TrimSpace(d.MustC("storage", "get", "tank", "zfs.pool_name"))
	ds := func(name string) string { return zpool + "/containers/" + name }
	data := func(name string) string {
		out, _, code := d.C("exec", name, "--", "cat", "/root/data")
		if code != 0 {
			return "<missing>"
		}
		return strings.TrimSpace(out)
	}

	d.MustC("launch", "bb", "src", "-s", "tank")
	d.MustC("exec", "src", "--", "sh", "-c", "echo one > /root/data")
	d.MustC("snapshot", "src", "snap0")
	d.MustC("exec", "src", "--", "sh", "-c", "echo two > /root/data")

	d.MustC("copy", "src", "whole", "--instance-only")
	if origin := zfsOut(t, "get", "-H", "-o", "value", "origin", ds("whole")); !strings.HasPrefix(origin, ds("src")+"@clone-") {
		t.Fatalf("origin of the copy = %q, want a snapshot of %s", origin, ds("src"))
	}
	d.MustC("copy", "src/snap0", "fromsnap")
	if origin := zfsOut(t, "get", "-H", "-o", "value", "origin", ds("fromsnap")); origin != ds("src")+"@snapshot-snap0" {
		t.Fatalf("origin of the snapshot's copy = %q, want %s@snapshot-snap0", origin, ds("src"))
	}
	// The hidden origin is not one of src's snapshots.
	if got := snapshotNames(t, d, "src"); !slices.Equal(got, []string{"snap0"}) {
		t.Fatalf("src's snapshots after copies = %v, want [snap0]", got)
	}

	// The source's snapshot, then the source itself, go while the copy
	// of the instance runs.
	d.MustC("start", "whole")
	d.MustC("delete", "src/snap0")
	if got := snapshotNames(t, d, "src"); len(got) != 0 {
		t.Fatalf("src's snapshots after delete = %v", got)
	}
	d.MustC("snapshot", "src", "snap0") // the name is free again
	d.MustC("delete", "-f", "src")
	if exists := exec.Command("zfs", "list", ds("src")).Run() == nil; exists {
		t.Fatalf("dataset %s left after deleting src", ds("src"))
	}
	if got := data("whole"); got != "two" {
		t.Fatalf("running copy's data after its source went: %q, want two", got)
	}
	d.MustC("start", "fromsnap")
	if got := data("fromsnap"); got != "one" {
		t.Fatalf("snapshot's copy data after its source went: %q, want one", got)
	}
	// Restart: both copies still mount and boot.
	d.MustC("stop", "-f", "whole")
	d.MustC("start", "whole")
	if got := data("whole"); got != "two" {
		t.Fatalf("copy's data after restart: %q", got)
	}

	d.MustC("delete", "-f", "whole", "fromsnap")
	for _, sub := range []string{"containers", "snapshots", "deleted"} {
		out := zfsOut(t, "list", "-H", "-o", "name", "-t", "all", "-r", zpool+"/"+sub)
		for _, line := range strings.Split(out, "\n") {
			if line != zpool+"/"+sub && line != zpool+"/deleted/images" {
				t.Errorf("left in the zpool after deleting every instance: %s", line)
			}
		}
	}
	d.MustC("storage", "delete", "tank")
}
