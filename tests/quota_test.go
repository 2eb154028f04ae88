package tests

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cell/tests/harness"
)

// quotaPool creates a pool of driver on d and returns its zpool name (zfs).
func quotaPool(t *testing.T, d *harness.Daemon, name, driver string, args ...string) string {
	t.Helper()
	d.MustC(append([]string{"storage", "create", name, driver}, args...)...)
	if driver != "zfs" {
		return ""
	}
	var pool struct {
		Config map[string]string `json:"config"`
	}
	_, env := d.API("GET", "/1.0/storage-pools/"+name, nil)
	if err := json.Unmarshal(env.Metadata, &pool); err != nil {
		t.Fatal(err)
	}
	zp := pool.Config["zfs.pool_name"]
	t.Cleanup(func() {
		if zp != "" && zpoolExists(zp) {
			_ = exec.Command("zpool", "destroy", "-f", zp).Run()
		}
	})
	return zp
}

func rootDevice(t *testing.T, d *harness.Daemon, inst string) map[string]string {
	t.Helper()
	_, env := d.API("GET", "/1.0/instances/"+inst, nil)
	var i struct {
		Devices map[string]map[string]string `json:"devices"`
	}
	if err := json.Unmarshal(env.Metadata, &i); err != nil {
		t.Fatal(err)
	}
	return i.Devices["root"]
}

// TestQuota limits the root disk of instances on btrfs (qgroups) and zfs
// (refquota): live, at creation, refused below the used space, and
// refused on dir pools.
func TestQuota(t *testing.T) {
	var testDir string
	checkNoLeftovers(t, &testDir)
	d := harness.StartDaemon(t)
	testDir = filepath.Dir(d.Dir)
	d.ImportImage(harness.BusyboxImage(t), "busybox")

	for _, driver := range []string{"btrfs", "zfs"} {
		t.Run(driver, func(t *testing.T) {
			d := d.For(t)
			if driver == "zfs" {
				requireZFS(t)
			} else {
				requireBtrfs(t)
			}
			pool := "q" + driver
			zp := quotaPool(t, d, pool, driver, "size=1GiB")
			inst := "c-" + driver
			d.MustC("launch", "busybox", inst, "-s", pool)
			// The root device comes from the profile: set overrides it.
			d.MustC("config", "device", "set", inst, "root", "size=64MiB")
			if got := rootDevice(t, d, inst); got["size"] != "64MiB" || got["pool"] != pool || got["path"] != "/" {
				t.Fatalf("overridden root device = %v", got)
			}
			_, stderr, code := d.C("exec", inst, "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=100", "conv=fsync")
			if code == 0 || !(strings.Contains(stderr, "Disk quota exceeded") || strings.Contains(stderr, "No space left")) {
				t.Fatalf("writing 100MB under a 64MiB quota: exit %d, %q", code, stderr)
			}
			if got := strings.TrimSpace(d.MustC("exec", inst, "--", "cat", "/etc/hostname")); got != inst {
				t.Fatalf("instance after hitting its quota: hostname %q", got)
			}
			d.MustC("exec", inst, "--", "rm", "-f", "/root/big")
			d.MustC("exec", inst, "--", "sync")
			d.MustC("config", "device", "set", inst, "root", "size=256MiB")
			d.MustC("exec", inst, "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=100", "conv=fsync")

			// Below the used space: refused with both numbers, nothing changed.
			status, env := d.API("PATCH", "/1.0/instances/"+inst, map[string]any{"devices": map[string]any{
				"root": map[string]string{"type": "disk", "path": "/", "pool": pool, "size": "16MiB"}}})
			if status != 400 || !strings.Contains(env.Error, "already uses") || !strings.Contains(env.Error, "16MiB") {
				t.Fatalf("quota below used: %d %q", status, env.Error)
			}
			if got := rootDevice(t, d, inst); got["size"] != "256MiB" {
				t.Fatalf("root size after a refused quota = %q", got["size"])
			}
			if driver == "zfs" {
				if got := zfsOut(t, "get", "-H", "-p", "-o", "value", "refquota", zp+"/containers/"+inst); got != "268435456" {
					t.Fatalf("refquota = %s", got)
				}
			}

			// A restore (a new subvolume on btrfs) keeps the limit.
			d.MustC("snapshot", inst, "s0")
			d.MustC("stop", "-f", inst)
			d.MustC("restore", inst, "s0")
			d.MustC("start", inst)
			_, stderr, code = d.C("exec", inst, "--", "dd", "if=/dev/zero", "of=/root/big2", "bs=1M", "count=200", "conv=fsync")
			if code == 0 || !(strings.Contains(stderr, "Disk quota exceeded") || strings.Contains(stderr, "No space left")) {
				t.Fatalf("writing 200MB more under a 256MiB quota after a restore: exit %d, %q", code, stderr)
			}

			// At creation.
			made := inst + "-sized"
			d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": made,
				"source":  map[string]string{"type": "image", "alias": "busybox"},
				"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": pool, "size": "32MiB"}}})
			d.MustSucceed("PUT", "/1.0/instances/"+made+"/state", map[string]string{"action": "start"})
			_, stderr, code = d.C("exec", made, "--", "dd", "if=/dev/zero", "of=/root/big", "bs=1M", "count=64", "conv=fsync")
			if code == 0 || !(strings.Contains(stderr, "Disk quota exceeded") || strings.Contains(stderr, "No space left")) {
				t.Fatalf("writing 64MB into an instance created with 32MiB: exit %d, %q", code, stderr)
			}
			d.MustC("delete", "-f", made)
			d.MustC("delete", "-f", inst)
			d.MustC("storage", "delete", pool)
		})
	}

	t.Run("dir", func(t *testing.T) {
		d := d.For(t)
		d.MustC("storage", "create", "qdir", "dir")
		d.MustC("init", "busybox", "c-dir", "-s", "qdir")
		_, stderr, code := d.C("config", "device", "set", "c-dir", "root", "size=64MiB")
		if code == 0 || !strings.Contains(stderr, "dir pools cannot limit disk size") {
			t.Fatalf("quota on a dir pool: exit %d, %q", code, stderr)
		}
		if got := rootDevice(t, d, "c-dir"); got["size"] != "" {
			t.Fatalf("root device after a refused quota: %v", got)
		}
		status, env := d.API("POST", "/1.0/instances", map[string]any{"name": "c-dir2",
			"source":  map[string]string{"type": "image", "alias": "busybox"},
			"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": "qdir", "size": "1GiB"}}})
		if status != 400 || !strings.Contains(env.Error, "cannot limit disk size") {
			t.Fatalf("create with a size on a dir pool: %d %q", status, env.Error)
		}
		d.MustC("delete", "c-dir")
		d.MustC("storage", "delete", "qdir")
	})
}
