package tests

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"cell/tests/harness"
)

// snapshotNames lists an instance's snapshots through the API.
func snapshotNames(t *testing.T, d *harness.Daemon, inst string) []string {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+inst+"/snapshots?recursion=1", nil)
	if status != http.StatusOK {
		t.Fatalf("list snapshots of %s: %d %s", inst, status, env.Error)
	}
	var list []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(env.Metadata, &list); err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, s := range list {
		names = append(names, s.Name)
	}
	return names
}

// snapshotDirs lists what is on disk in a pool's snapshots dir of an
// instance, temporary names included.
func snapshotDirs(t *testing.T, pool, inst string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(pool, "snapshots", inst))
	if os.IsNotExist(err) {
		return []string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// snapshotCycle drives one instance on a pool through snapshot, change,
// restore, naming, rename and delete.
func snapshotCycle(t *testing.T, d *harness.Daemon, pool, inst string) {
	write := func(content string) {
		d.MustC("exec", inst, "--", "sh", "-c", "echo "+content+" > /root/data && rm -f /root/later")
	}
	cat := func(file string) string {
		out, _, code := d.C("exec", inst, "--", "cat", "/root/"+file)
		if code != 0 {
			return "<missing>"
		}
		return strings.TrimSpace(out)
	}

	write("before")
	d.MustC("snapshot", inst)
	write("after")
	d.MustC("exec", inst, "--", "sh", "-c", "echo new > /root/later")
	d.MustC("snapshot", inst)
	d.MustC("snapshot", inst, "named")
	if got := snapshotNames(t, d, inst); !slices.Equal(got, []string{"snap0", "snap1", "named"}) {
		t.Fatalf("snapshots = %v, want [snap0 snap1 named]", got)
	}
	if got := snapshotDirs(t, pool, inst); !slices.Equal(got, []string{"named", "snap0", "snap1"}) {
		t.Fatalf("snapshots on disk = %v", got)
	}
	d.MustC("exec", inst, "--", "rm", "/root/data")

	// Restore of a running instance: stopped, restored, started again.
	d.MustC("restore", inst, "snap0")
	if got := cat("data"); got != "before" {
		t.Errorf("after restore of snap0: data = %q, want before", got)
	}
	if got := cat("later"); got != "<missing>" {
		t.Errorf("after restore of snap0: a file made after the snapshot is still there: %q", got)
	}
	// Restore of a stopped instance.
	d.MustC("stop", "-f", inst)
	d.MustC("restore", inst, "snap1")
	d.MustC("start", inst)
	if got, later := cat("data"), cat("later"); got != "after" || later != "new" {
		t.Errorf("after restore of snap1: data = %q, later = %q", got, later)
	}

	// Names: duplicates 409, bad names 400, first free snapN.
	if status, _ := d.API("POST", "/1.0/instances/"+inst+"/snapshots", map[string]string{"name": "snap0"}); status != http.StatusConflict {
		t.Errorf("duplicate snapshot name: %d, want 409", status)
	}
	for _, bad := range []string{"a/b", strings.Repeat("x", 64), ".hidden", "with space"} {
		if status, _ := d.API("POST", "/1.0/instances/"+inst+"/snapshots", map[string]string{"name": bad}); status != http.StatusBadRequest {
			t.Errorf("snapshot name %q: %d, want 400", bad, status)
		}
	}
	// A stateful snapshot (CRIU) of the running instance is a snapshot
	// like the others in the listing; tests/stateful_test.go covers the
	// running state it keeps.
	d.MustSucceed("POST", "/1.0/instances/"+inst+"/snapshots", map[string]any{"name": "live", "stateful": true})
	if _, env := d.API("GET", "/1.0/instances/"+inst+"/snapshots/live", nil); !strings.Contains(string(env.Metadata), `"stateful":true`) {
		t.Errorf("stateful snapshot: %s", env.Metadata)
	}
	d.MustSucceed("DELETE", "/1.0/instances/"+inst+"/snapshots/live", nil)
	if status, _ := d.API("POST", "/1.0/instances/"+inst+"/snapshots/snap0", map[string]string{"name": "snap1"}); status != http.StatusConflict {
		t.Errorf("rename onto an existing snapshot: %d, want 409", status)
	}
	if status, _ := d.API("PUT", "/1.0/instances/"+inst, map[string]string{"restore": "other/snap0"}); status != http.StatusBadRequest {
		t.Errorf("restore of another instance's snapshot: %d, want 400", status)
	}
	if status, _ := d.API("PUT", "/1.0/instances/"+inst, map[string]string{"restore": "nope"}); status != http.StatusNotFound {
		t.Errorf("restore of a missing snapshot: %d, want 404", status)
	}

	d.MustC("rename", inst+"/snap0", inst+"/first")
	d.MustC("delete", inst+"/snap1")
	d.MustC("snapshot", inst)
	if got := snapshotNames(t, d, inst); !slices.Equal(got, []string{"first", "named", "snap0"}) {
		t.Fatalf("after rename, delete and a new snapshot: %v, want [first named snap0]", got)
	}
	if got := snapshotDirs(t, pool, inst); !slices.Equal(got, []string{"first", "named", "snap0"}) {
		t.Fatalf("snapshots on disk = %v", got)
	}
	d.MustC("restore", inst, inst+"/first")
	if got := cat("data"); got != "before" {
		t.Errorf("restore of the renamed snapshot: data = %q", got)
	}

	// c info and c list show them.
	if out := d.MustC("info", inst); !strings.Contains(out, "Snapshots:") || !strings.Contains(out, "first") || !strings.Contains(out, "named") {
		t.Errorf("c info shows no snapshots:\n%s", out)
	}
	if out := d.MustC("list", inst, "--format", "csv", "-c", "nS"); strings.TrimSpace(out) != inst+",3" {
		t.Errorf("c list SNAPSHOTS column: %q, want %s,3", out, inst)
	}

	// Renaming the instance moves its snapshots; deleting it removes them.
	d.MustC("stop", "-f", inst)
	d.MustC("rename", inst, inst+"-moved")
	if got := snapshotDirs(t, pool, inst+"-moved"); len(got) != 3 {
		t.Errorf("snapshots after instance rename: %v", got)
	}
	if got := snapshotNames(t, d, inst+"-moved"); len(got) != 3 {
		t.Errorf("snapshots listed after instance rename: %v", got)
	}
	d.MustC("delete", inst+"-moved")
	for _, name := range []string{inst, inst + "-moved"} {
		if _, err := os.Stat(filepath.Join(pool, "snapshots", name)); !os.IsNotExist(err) {
			t.Errorf("snapshots of deleted instance %s left on disk (%v)", name, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(pool, "snapshots", "*")); len(left) != 0 {
		t.Errorf("left in snapshots dir: %v", left)
	}
}

func TestSnapshotDir(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "c1", nil)
	snapshotCycle(t, d, filepath.Join(d.Dir, "storage-pools", "default"), "c1")
}

func TestSnapshotBtrfs(t *testing.T) {
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustC("storage", "create", "fast", "btrfs", "size=1GiB")
	d.MustC("launch", "bb", "b1", "-s", "fast")
	pool := filepath.Join(d.Dir, "storage-pools", "fast")
	d.MustC("snapshot", "b1", "ro")
	snap := filepath.Join(pool, "snapshots", "b1", "ro")
	if flags := subvolumeField(t, snap, "Flags"); !strings.Contains(flags, "readonly") {
		t.Errorf("snapshot flags = %q, want readonly", flags)
	}
	if parent, vol := subvolumeField(t, snap, "Parent UUID"), subvolumeField(t, filepath.Join(pool, "containers", "b1"), "UUID"); parent != vol {
		t.Errorf("snapshot's parent %s is not the instance volume %s", parent, vol)
	}
	d.MustC("delete", "b1/ro")
	snapshotCycle(t, d, pool, "b1")
	d.MustC("storage", "delete", "fast")
}

// TestSnapshotLXC drives snapshots with LXD's own client.
func TestSnapshotLXC(t *testing.T) {
	needLXCClient(t)
	d := busyboxDaemon(t)
	d.Launch("bb", "l1", nil)
	d.MustC("exec", "l1", "--", "sh", "-c", "echo one > /root/f")
	mustLXC(t, d, "snapshot", "l1")
	mustLXC(t, d, "snapshot", "l1", "mine")
	d.MustC("exec", "l1", "--", "sh", "-c", "echo two > /root/f")
	mustLXC(t, d, "restore", "l1", "snap0")
	if out := d.MustC("exec", "l1", "--", "cat", "/root/f"); strings.TrimSpace(out) != "one" {
		t.Errorf("after lxc restore: %q", out)
	}
	out := mustLXC(t, d, "info", "l1")
	if !strings.Contains(out, "snap0") || !strings.Contains(out, "mine") {
		t.Errorf("lxc info shows no snapshots:\n%s", out)
	}
	if out := mustLXC(t, d, "list", "l1", "--format", "csv", "-c", "nS"); strings.TrimSpace(out) != "l1,2" {
		t.Errorf("lxc list SNAPSHOTS: %q", out)
	}
	mustLXC(t, d, "rename", "l1/mine", "l1/yours")
	mustLXC(t, d, "delete", "l1/snap0")
	if got := snapshotNames(t, d, "l1"); !slices.Equal(got, []string{"yours"}) {
		t.Errorf("after lxc rename and delete: %v", got)
	}
}

// snapshotRows reads snapshot rows straight from the database: name -> ready.
func snapshotRows(t *testing.T, d *harness.Daemon) map[string]bool {
	return readyRows(t, d, "instances_snapshots")
}

// TestSnapshotCrash kills celld while it copies a big instance into a
// snapshot: after the restart no half-made snapshot is visible, nothing is
// left on disk, and the name can be used again.
func TestSnapshotCrash(t *testing.T) {
	d := harness.StartDaemon(t)
	crashImportBig(t, d, "big")
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "s1", "source": map[string]string{"type": "image", "alias": "big"}})
	pool := crashPool(d)
	for _, delay := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond} {
		crashAccepted(t, d, "POST", "/1.0/instances/s1/snapshots", map[string]string{"name": "crash"})
		if got := snapshotNames(t, d, "s1"); slices.Contains(got, "crash") {
			t.Error("a snapshot being made is listed")
		}
		time.Sleep(delay)
		d.Kill()
		t.Logf("killed %s after snapshot: rows %v, on disk %v", delay, snapshotRows(t, d), snapshotDirs(t, pool, "s1"))
		d.Start()
		rows, dirs := snapshotRows(t, d), snapshotDirs(t, pool, "s1")
		for name, ready := range rows {
			if !ready {
				t.Errorf("unready snapshot row %s left after restart", name)
			}
		}
		for _, dir := range dirs {
			if strings.HasPrefix(dir, ".tmp-") {
				t.Errorf("temporary snapshot %s left after restart", dir)
			}
		}
		listed := snapshotNames(t, d, "s1")
		if slices.Contains(listed, "crash") != slices.Contains(dirs, "crash") {
			t.Errorf("database %v and pool %v disagree", listed, dirs)
		}
		if slices.Contains(listed, "crash") {
			n := len(imagesNames(t, filepath.Join(pool, "snapshots", "s1", "crash", "rootfs", "big")))
			if n != 200 {
				t.Errorf("finished snapshot holds %d of 200 files", n)
			}
			d.MustSucceed("DELETE", "/1.0/instances/s1/snapshots/crash", nil)
		}
	}
	d.MustSucceed("POST", "/1.0/instances/s1/snapshots", map[string]string{"name": "crash"})
	if n := len(imagesNames(t, filepath.Join(pool, "snapshots", "s1", "crash", "rootfs", "big"))); n != 200 {
		t.Errorf("snapshot holds %d of 200 files", n)
	}
}
