package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cell/storage"
	"cell/tests/harness"
)

// requireBtrfs skips unless btrfs-progs is installed (scripts/install-deps.sh).
func requireBtrfs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("mkfs.btrfs"); err != nil {
		t.Skip("btrfs-progs is not installed: run scripts/install-deps.sh")
	}
}

// checkNoLeftovers fails the test if anything under dir is still mounted,
// or backs a loop device. Register it before StartDaemon, so that it runs
// after the daemon's own cleanup, and set *dir once it is known.
func checkNoLeftovers(t *testing.T, dir *string) {
	t.Cleanup(func() {
		if *dir == "" {
			return
		}
		if m := harness.MountsUnder(*dir); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", *dir, m)
		}
		if l := harness.LoopsUnder(*dir); len(l) > 0 {
			t.Errorf("loop devices left backed by files under %s: %v", *dir, l)
		}
		if _, err := os.Stat(*dir); err == nil {
			t.Errorf("test dir %s left behind", *dir)
		}
	})
}

func subvolumeField(t *testing.T, path, field string) string {
	t.Helper()
	out, err := exec.Command("btrfs", "subvolume", "show", path).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs subvolume show %s: %v\n%s", path, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("btrfs subvolume show %s has no %q:\n%s", path, field, out)
	return ""
}

// TestStorageBtrfs drives a btrfs pool on a loop file through its life:
// create, launch on it, restart after a "reboot", refuse deletion while
// used, delete.
func TestStorageBtrfs(t *testing.T) {
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "busybox")

	mnt := filepath.Join(d.Dir, "storage-pools", "fast")
	loopFile := filepath.Join(d.Dir, "disks", "fast.img")
	d.MustC("storage", "create", "fast", "btrfs", "size=1GiB", "--description", "loop pool")
	if got := d.MustC("storage", "list", "--format", "csv"); !strings.Contains(got, "fast,btrfs,"+loopFile+",loop pool,0,CREATED") {
		t.Fatalf("storage list:\n%s", got)
	}
	if m := harness.MountsUnder(d.Dir); len(m) != 1 || m[0] != mnt {
		t.Fatalf("mounts under the daemon dir = %v, want [%s]", m, mnt)
	}
	if l := harness.LoopsUnder(d.Dir); len(l) != 1 {
		t.Fatalf("loop devices = %v, want one", l)
	}
	var res struct {
		Space struct{ Used, Total uint64 } `json:"space"`
	}
	_, env := d.API("GET", "/1.0/storage-pools/fast/resources", nil)
	if err := json.Unmarshal(env.Metadata, &res); err != nil || res.Space.Total < 900<<20 || res.Space.Total > 1<<30 || res.Space.Used == 0 {
		t.Fatalf("resources = %+v (%v)", res, err)
	}

	d.MustC("launch", "busybox", "c1", "-s", "fast")
	var inst struct {
		ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
	}
	_, env = d.API("GET", "/1.0/instances/c1", nil)
	if err := json.Unmarshal(env.Metadata, &inst); err != nil || inst.ExpandedDevices["root"]["pool"] != "fast" {
		t.Fatalf("c1 root disk = %v (%v)", inst.ExpandedDevices["root"], err)
	}
	vol := filepath.Join(mnt, "containers", "c1")
	images, _ := filepath.Glob(filepath.Join(mnt, "images", "*"))
	if len(images) != 1 {
		t.Fatalf("image volumes on the pool: %v", images)
	}
	if parent, img := subvolumeField(t, vol, "Parent UUID"), subvolumeField(t, images[0], "UUID"); parent != img {
		t.Fatalf("instance volume's parent %s is not the image volume %s", parent, img)
	}
	if flags := subvolumeField(t, images[0], "Flags"); !strings.Contains(flags, "readonly") {
		t.Fatalf("image volume flags = %q, want readonly", flags)
	}
	if got := d.MustC("exec", "c1", "--", "cat", "/etc/hostname"); strings.TrimSpace(got) != "c1" {
		t.Fatalf("exec in c1: %q", got)
	}
	if got := d.MustC("storage", "info", "fast"); !strings.Contains(got, "driver: btrfs") || !strings.Contains(got, "- c1") {
		t.Fatalf("storage info:\n%s", got)
	}

	t.Run("delete-in-use", func(t *testing.T) {
		d := d.For(t)
		status, env := d.API("DELETE", "/1.0/storage-pools/fast", nil)
		if status != 400 || !strings.Contains(env.Error, "c1") {
			t.Fatalf("delete of a used pool: %d %q", status, env.Error)
		}
		if status, env := d.API("POST", "/1.0/profiles", map[string]any{"name": "onfast",
			"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": "fast"}}}); status != 201 {
			t.Fatalf("create profile: %d %s", status, env.Error)
		}
		d.MustC("delete", "-f", "c1")
		status, env = d.API("DELETE", "/1.0/storage-pools/fast", nil)
		if status != 400 || !strings.Contains(env.Error, "onfast") {
			t.Fatalf("delete of a pool a profile uses: %d %q", status, env.Error)
		}
		d.MustC("profile", "delete", "onfast")
		if _, err := os.Stat(vol); !os.IsNotExist(err) {
			t.Fatalf("instance volume left after delete: %v", err)
		}
		d.MustC("launch", "busybox", "c1", "-s", "fast")
	})

	t.Run("reboot", func(t *testing.T) {
		d.MustC("stop", "-f", "c1")
		// A subvolume made inside the container must not stop its deletion.
		if out, err := exec.Command("btrfs", "subvolume", "create", filepath.Join(vol, "rootfs", "nested")).CombinedOutput(); err != nil {
			t.Fatalf("create nested subvolume: %v\n%s", err, out)
		}
		d.Kill()
		// What a reboot does to the pool: no mount, no loop device.
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
		for _, dev := range harness.LoopsUnder(d.Dir) {
			_ = exec.Command("losetup", "-d", dev).Run()
		}
		if m := harness.MountsUnder(d.Dir); len(m) != 0 {
			t.Fatalf("still mounted: %v", m)
		}
		d.Start()
		if m := harness.MountsUnder(d.Dir); len(m) != 1 || m[0] != mnt {
			t.Fatalf("after restart, mounts = %v, want [%s]", m, mnt)
		}
		d.MustC("start", "c1")
		if got := d.MustC("exec", "c1", "--", "echo", "back"); got != "back\n" {
			t.Fatalf("exec after restart: %q", got)
		}
		d.MustC("delete", "-f", "c1")
		if _, err := os.Stat(vol); !os.IsNotExist(err) {
			t.Fatalf("instance volume left after delete: %v", err)
		}
		out, err := exec.Command("btrfs", "subvolume", "list", mnt).CombinedOutput()
		if err != nil || strings.Contains(string(out), "containers/") {
			t.Fatalf("subvolumes left: %v\n%s", err, out)
		}
	})

	d.MustC("storage", "delete", "fast")
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
	if got := d.MustC("storage", "list", "--format", "csv"); strings.Contains(got, "fast") {
		t.Fatalf("pool still listed:\n%s", got)
	}
}

// TestStorageInvalid checks that bad pool requests answer a clear 4xx and
// leave nothing behind.
func TestStorageInvalid(t *testing.T) {
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)

	cases := []struct {
		name   string
		body   map[string]any
		status int
		msg    string
	}{
		{"unknown driver", map[string]any{"name": "p1", "driver": "lvm2"}, 400, "supported drivers are"},
		{"unknown key", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"colour": "red"}}, 400, "unknown key"},
		{"bad size", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"size": "lots"}}, 400, "not a size"},
		{"too small", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"size": "64MiB"}}, 400, "too small"},
		{"missing source", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"source": "/nonexistent/x"}}, 400, "source"},
		{"source not btrfs", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"source": d.Dir}}, 400, "not on a btrfs"},
		{"bad name", map[string]any{"name": "a/b", "driver": "dir"}, 400, ""},
		{"duplicate", map[string]any{"name": "default", "driver": "btrfs", "config": map[string]string{"size": "1GiB"}}, 409, "already exists"},
		// The mount fails after the loop file and filesystem are made:
		// they must go again.
		{"mount fails", map[string]any{"name": "p1", "driver": "btrfs", "config": map[string]string{"size": "256MiB", "btrfs.mount_options": "nosuchoption"}}, 500, "mount"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := d.For(t)
			status, env := d.API("POST", "/1.0/storage-pools", c.body)
			if status != c.status || !strings.Contains(env.Error, c.msg) {
				t.Fatalf("status %d %q, want %d with %q", status, env.Error, c.status, c.msg)
			}
			if m := harness.MountsUnder(d.Dir); len(m) != 0 {
				t.Fatalf("mounts left: %v", m)
			}
			if l := harness.LoopsUnder(d.Dir); len(l) != 0 {
				t.Fatalf("loop devices left: %v", l)
			}
			if files, _ := filepath.Glob(filepath.Join(d.Dir, "disks", "*")); len(files) != 0 {
				t.Fatalf("loop files left: %v", files)
			}
			if dirs, _ := filepath.Glob(filepath.Join(d.Dir, "storage-pools", "*")); len(dirs) != 1 {
				t.Fatalf("pool dirs: %v, want only default", dirs)
			}
			if status, _ := d.API("GET", "/1.0/storage-pools/p1", nil); status != 404 {
				t.Fatalf("pool p1 exists after a failed create: %d", status)
			}
		})
	}

	t.Run("update", func(t *testing.T) {
		d := d.For(t)
		src := filepath.Join(d.Dir, "custom-dir-pool")
		if err := os.Mkdir(src, 0o700); err != nil {
			t.Fatal(err)
		}
		d.MustC("storage", "create", "d1", "dir", "source="+src)
		if _, _, code := d.C("storage", "create", "d1", "dir"); code == 0 {
			t.Fatal("duplicate pool name accepted")
		}
		d.MustC("storage", "set", "d1", "description", "custom")
		if got := d.MustC("storage", "show", "d1"); !strings.Contains(got, "description: custom") || !strings.Contains(got, "source: "+src) {
			t.Fatalf("storage show:\n%s", got)
		}
		if _, stderr, code := d.C("storage", "set", "d1", "source=/elsewhere"); code == 0 || !strings.Contains(stderr, "cannot be changed") {
			t.Fatalf("changing source: exit %d %q", code, stderr)
		}
		if status, env := d.API("PATCH", "/1.0/storage-pools/d1", map[string]any{"config": map[string]string{"size": "x"}}); status != 400 {
			t.Fatalf("PATCH with a bad key: %d %q", status, env.Error)
		}
		d.MustC("storage", "delete", "d1")
		if entries, err := os.ReadDir(src); err != nil || len(entries) != 0 {
			t.Fatalf("user's source dir after delete: %v %v (want it kept, empty)", entries, err)
		}
	})
}

// loopDevice attaches a new sparse file under dir to a loop device, which
// the test detaches (and the file goes with dir) at its end.
func loopDevice(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	file := filepath.Join(dir, name+".img")
	if err := storage.MakeLoopFile(file, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// TestStorageBlockDevice makes btrfs and zfs pools on block devices (loop
// devices the test made): an instance runs on each, and deleting the pool
// leaves the device to its owner, with no mount or zpool on it.
func TestStorageBlockDevice(t *testing.T) {
	requireBtrfs(t)
	requireZFS(t)
	devDir := t.TempDir() // registered first: removed after the devices are detached
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	for _, driver := range []string{"btrfs", "zfs"} {
		dev := loopDevice(t, devDir, driver, 512<<20)
		pool := "blk" + driver
		d.MustC("storage", "create", pool, driver, "source="+dev)
		zp := ""
		if driver == "zfs" {
			zp = strings.TrimSpace(d.MustC("storage", "get", pool, "zfs.pool_name"))
			t.Cleanup(func() {
				if zpoolExists(zp) {
					_ = exec.Command("zpool", "destroy", "-f", zp).Run()
				}
			})
			if status, err := exec.Command("zpool", "status", zp).CombinedOutput(); err != nil || !strings.Contains(string(status), filepath.Base(dev)) {
				t.Fatalf("zpool %s is not on %s: %v\n%s", zp, dev, err, status)
			}
		} else {
			mnt := filepath.Join(d.Dir, "storage-pools", pool)
			if src := findmntSource(t, mnt); src != dev {
				t.Fatalf("%s is mounted from %q, want %s", mnt, src, dev)
			}
		}
		if got := strings.TrimSpace(d.MustC("storage", "get", pool, "source")); got != dev {
			t.Errorf("pool source = %q, want %s", got, dev)
		}
		inst := "on" + driver
		d.MustC("launch", "busybox", inst, "-s", pool)
		if got := d.MustC("exec", inst, "--", "echo", "up"); got != "up\n" {
			t.Fatalf("exec in %s: %q", inst, got)
		}
		d.MustC("delete", "-f", inst)
		d.MustC("storage", "delete", pool)
		if zp != "" && zpoolExists(zp) {
			t.Errorf("zpool %s left on %s after pool delete", zp, dev)
		}
		if m := harness.MountsUnder(d.Dir); len(m) != 0 {
			t.Errorf("mounts after pool delete: %v", m)
		}
		if _, err := os.Stat(dev); err != nil {
			t.Errorf("device %s: %v", dev, err)
		}
	}
	// Not a block device: refused, nothing made.
	if _, errOut, code := d.C("storage", "create", "bad", "btrfs", "source=/dev/null"); code == 0 || !strings.Contains(errOut, "block device") {
		t.Errorf("btrfs on /dev/null: exit %d %q", code, errOut)
	}
}

// findmntSource is the device mounted at path ("" when none).
func findmntSource(t *testing.T, path string) string {
	t.Helper()
	out, _ := exec.Command("findmnt", "-n", "-o", "SOURCE", "--mountpoint", path).Output()
	return strings.TrimSpace(string(out))
}

// TestStorageLXCClient drives pools and custom volumes with LXD 5.0.2's
// own client: `lxc storage info` (the pool's resources and users) and
// the volume commands this issue added (copy between pools, restore).
func TestStorageLXCClient(t *testing.T) {
	needLXCClient(t)
	requireBtrfs(t)
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.MustC("storage", "create", "fast", "btrfs", "size=1GiB")
	mustLXC(t, d, "storage", "volume", "create", "fast", "data")
	info := mustLXC(t, d, "storage", "info", "fast")
	for _, want := range []string{"driver: btrfs", "total space:", "space used:", "data"} {
		if !strings.Contains(info, want) {
			t.Errorf("lxc storage info lacks %q:\n%s", want, info)
		}
	}
	vol := filepath.Join(d.Dir, "storage-pools", "fast", "custom", "data")
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustLXC(t, d, "storage", "volume", "snapshot", "fast", "data", "s0")
	if err := os.WriteFile(filepath.Join(vol, "f"), []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustLXC(t, d, "storage", "volume", "copy", "fast/data", "default/data2")
	if b, err := os.ReadFile(filepath.Join(d.Dir, "storage-pools", "default", "custom", "data2", "f")); err != nil || string(b) != "two" {
		t.Errorf("copy made by lxc holds %q (%v)", b, err)
	}
	if out := mustLXC(t, d, "storage", "volume", "show", "default", "data2/s0"); !strings.Contains(out, "name: s0") {
		t.Errorf("copy's snapshot s0:\n%s", out)
	}
	mustLXC(t, d, "storage", "volume", "restore", "fast", "data", "s0")
	if b, err := os.ReadFile(filepath.Join(vol, "f")); err != nil || string(b) != "one" {
		t.Errorf("after lxc storage volume restore: %q (%v)", b, err)
	}
	mustLXC(t, d, "storage", "volume", "delete", "default", "data2")
	mustLXC(t, d, "storage", "volume", "delete", "fast", "data")
	mustLXC(t, d, "storage", "delete", "fast")
}
