package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A loop-backed pool made for the storage workloads: btrfs on both
// daemons, zfs on celld alone (LXD 5.0.2 here has no ZFS).
type benchPool struct {
	name    string // the pool's name on each daemon
	driver  string
	servers []*server
}

func (b *bench) storagePools() []benchPool {
	var out []benchPool
	for _, d := range strings.Split(*flagDrivers, ",") {
		switch d = strings.TrimSpace(d); d {
		case "btrfs":
			out = append(out, benchPool{name: "bbtrfs", driver: d, servers: b.servers()})
		case "zfs":
			out = append(out, benchPool{name: "bzfs", driver: d, servers: []*server{b.celld}})
		}
	}
	return out
}

// zpoolName is the zpool celld makes for a zfs pool of this name (zfs.
// defaultPoolName): recorded before the pool is created, so that the
// cleanup (and the trap in scripts/bench.sh) can destroy it whatever
// happens.
func (b *bench) zpoolName(pool string) string {
	sum := sha256.Sum256([]byte(b.celld.dir))
	return pool + "-" + hex.EncodeToString(sum[:])[:8]
}

func (b *bench) recordZpool(name string) {
	b.zpools = append(b.zpools, name)
	_ = os.WriteFile(filepath.Join(b.work, "zpools"), []byte(strings.Join(b.zpools, "\n")+"\n"), 0o600)
}

// createPool makes a 4GiB (-pool-size) loop-backed pool on s: celld makes
// its loop file under CELL_DIR/disks, LXD under LXD_DIR/disks.
func (b *bench) createPool(ctx context.Context, s *server, p benchPool) error {
	if p.driver == "zfs" && s.kind == "celld" {
		b.recordZpool(b.zpoolName(p.name))
	}
	err := s.sync(ctx, "POST", "/1.0/storage-pools", map[string]any{
		"name": p.name, "driver": p.driver, "config": map[string]string{"size": *flagPoolSize},
	}, nil)
	if err != nil {
		return err
	}
	if p.driver == "zfs" {
		var pool struct {
			Config map[string]string `json:"config"`
		}
		if err := s.sync(ctx, "GET", "/1.0/storage-pools/"+p.name, nil, &pool); err == nil {
			if zp := pool.Config["zfs.pool_name"]; zp != "" && zp != b.zpoolName(p.name) {
				b.recordZpool(zp)
			}
		}
	}
	return nil
}

// deletePool removes a pool made by createPool through the API; the
// cleanup catches what this leaves (a failed run, LXD refusing).
func (b *bench) deletePool(ctx context.Context, s *server, p benchPool) error {
	if s.kind == "lxd" {
		// LXD keeps the image's volume on the pool: drop it first.
		var vols []string
		if err := s.sync(ctx, "GET", "/1.0/storage-pools/"+p.name+"/volumes", nil, &vols); err == nil {
			for _, v := range vols {
				if i := strings.Index(v, "/volumes/image/"); i >= 0 {
					_, _ = s.async(ctx, "DELETE", "/1.0/storage-pools/"+p.name+v[i:], nil)
				}
			}
		}
	}
	return s.sync(ctx, "DELETE", "/1.0/storage-pools/"+p.name, nil, nil)
}

func (s *server) launchOn(ctx context.Context, name, alias, pool string) error {
	_, err := s.async(ctx, "POST", "/1.0/instances", map[string]any{
		"name":    name,
		"type":    "container",
		"source":  map[string]string{"type": "image", "alias": alias},
		"devices": map[string]any{"root": map[string]string{"type": "disk", "path": "/", "pool": pool}},
	})
	if err != nil {
		return err
	}
	return s.state(ctx, name, "start", false)
}

func (s *server) snapshot(ctx context.Context, name, snap string) error {
	_, err := s.async(ctx, "POST", instPath(name)+"/snapshots", map[string]any{"name": snap})
	return err
}

func (s *server) restore(ctx context.Context, name, snap string) error {
	_, err := s.async(ctx, "PUT", instPath(name), map[string]any{"restore": snap})
	return err
}

func (s *server) copyInstance(ctx context.Context, src, dst string) error {
	_, err := s.async(ctx, "POST", "/1.0/instances", map[string]any{
		"name":   dst,
		"type":   "container",
		"source": map[string]any{"type": "copy", "source": src, "instance_only": true},
	})
	return err
}

// timedOn is timed for a pool's daemons only, under key.
func (b *bench) timedOn(servers []*server, key string, f func(s *server) error) error {
	for _, s := range servers {
		t := time.Now()
		if err := f(s); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		b.res.add(key, s.kind, since(t))
	}
	return nil
}

func onEach(servers []*server, f func(s *server) error) error {
	for _, s := range servers {
		if err := f(s); err != nil {
			return err
		}
	}
	return nil
}

// storage runs the storage workloads on each loop-backed pool:
//
//	per round and pool: an empty busybox container (launch, snapshot,
//	restore, copy, delete of the copy), then the same with -data-mb of
//	random data written into it first (everything but launch)
//
// All of it on stopped containers (a restore of a running one would add a
// stop and a start). The figures with data next to the empty ones show
// whether snapshot, restore and copy are copy-on-write.
func (b *bench) storage(ctx context.Context) error {
	pools := b.storagePools()
	if len(pools) == 0 {
		return nil
	}
	for _, p := range pools {
		logf("storage: %s pool (%s loop file) on %s", p.driver, *flagPoolSize, strings.Join(kinds(p.servers), ", "))
		for _, s := range p.servers {
			if err := b.createPool(ctx, s, p); err != nil {
				return err
			}
			// Warm-up: the image's volume on this pool.
			warm := fmt.Sprintf("%s-%s-warm", s.prefix, p.driver)
			if err := s.launchOn(ctx, warm, imageAlias, p.name); err != nil {
				return err
			}
			if err := s.state(ctx, warm, "stop", true); err != nil {
				return err
			}
			if err := s.delete(ctx, warm); err != nil {
				return err
			}
		}
		for r := 1; r <= *flagStorageRounds; r++ {
			logf("storage round %d/%d on %s: empty, then %d MiB", r, *flagStorageRounds, p.driver, *flagDataMB)
			for _, data := range []bool{false, true} {
				if err := b.storageRound(ctx, p, r, data); err != nil {
					return fmt.Errorf("%s round %d: %w", p.driver, r, err)
				}
			}
		}
		for _, s := range p.servers {
			if err := b.deletePool(ctx, s, p); err != nil {
				logf("storage: delete pool %s on %s: %v (the cleanup removes it)", p.name, s.kind, err)
			}
		}
	}
	return nil
}

func kinds(servers []*server) []string {
	var out []string
	for _, s := range servers {
		out = append(out, s.kind)
	}
	return out
}

func (b *bench) storageRound(ctx context.Context, p benchPool, r int, data bool) error {
	sfx := ""
	variant := "e"
	if data {
		sfx, variant = "_data", "d"
	}
	key := func(op string) string { return op + "_" + p.driver + sfx }
	name := func(s *server) string { return fmt.Sprintf("%s-%s%s%d", s.prefix, p.driver[:1], variant, r) }
	copyName := func(s *server) string { return name(s) + "-c" }
	if !data {
		if err := b.timedOn(p.servers, key("launch"), func(s *server) error { return s.launchOn(ctx, name(s), imageAlias, p.name) }); err != nil {
			return err
		}
	} else {
		err := onEach(p.servers, func(s *server) error {
			if err := s.launchOn(ctx, name(s), imageAlias, p.name); err != nil {
				return err
			}
			cmd := fmt.Sprintf("dd if=/dev/urandom of=/root/data bs=1048576 count=%d 2>/dev/null && sync", *flagDataMB)
			return s.execAPI(ctx, name(s), "sh", "-c", cmd)
		})
		if err != nil {
			return err
		}
	}
	if err := onEach(p.servers, func(s *server) error { return s.state(ctx, name(s), "stop", true) }); err != nil {
		return err
	}
	if err := b.timedOn(p.servers, key("snapshot"), func(s *server) error { return s.snapshot(ctx, name(s), "s1") }); err != nil {
		return err
	}
	if err := b.timedOn(p.servers, key("restore"), func(s *server) error { return s.restore(ctx, name(s), "s1") }); err != nil {
		return err
	}
	if err := b.timedOn(p.servers, key("copy"), func(s *server) error { return s.copyInstance(ctx, name(s), copyName(s)) }); err != nil {
		return err
	}
	if err := b.timedOn(p.servers, key("delete"), func(s *server) error { return s.delete(ctx, copyName(s)) }); err != nil {
		return err
	}
	return onEach(p.servers, func(s *server) error { return s.delete(ctx, name(s)) })
}

// parallel launches -parallel instances at once on the dir pool, per
// daemon in turn, and records the wall time until all run.
func (b *bench) parallel(ctx context.Context) error {
	n := *flagParallel
	if n < 1 || *flagParallelRounds < 1 {
		return nil
	}
	for r := 1; r <= *flagParallelRounds; r++ {
		logf("%d parallel launches, round %d/%d", n, r, *flagParallelRounds)
		names := map[*server][]string{}
		for _, s := range b.servers() {
			for i := 1; i <= n; i++ {
				names[s] = append(names[s], fmt.Sprintf("%s-p%d-%02d", s.prefix, r, i))
			}
		}
		err := b.timed("parallel", func(s *server) error {
			return forEach(names[s], n, func(name string) error { return s.launch(ctx, name, imageAlias) })
		})
		for _, s := range b.servers() {
			// Remove whatever was made, even after an error.
			_ = forEach(names[s], 4, func(name string) error {
				_ = s.state(ctx, name, "stop", true) // fails when not created
				_ = s.delete(ctx, name)
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// destroyZpools destroys the zpools celld made for the benchmark, if
// they still exist (zpool destroy unmounts their datasets). Right after
// the containers were killed a pool can be busy for a moment: it retries,
// unmounting what is left under dir in between.
func destroyZpools(dir string, names []string) {
	for _, zp := range names {
		for attempt := 1; zpoolExists(zp); attempt++ {
			logf("cleanup: zpool %s still there: zpool destroy -f", zp)
			out, err := runQuiet(120*time.Second, nil, "zpool", "destroy", "-f", zp)
			if err == nil {
				break
			}
			if attempt == 10 {
				logf("cleanup: zpool destroy %s: %v: %s", zp, err, strings.TrimSpace(out))
				break
			}
			for _, mp := range mountsUnder(dir) {
				_ = unix.Unmount(mp, 0)
			}
			time.Sleep(time.Second)
		}
	}
}

func zpoolExists(zp string) bool {
	_, err := runQuiet(30*time.Second, nil, "zpool", "list", "-H", "-o", "name", zp)
	return err == nil
}

// loopsUnder lists the loop devices whose backing file is at or below dir.
func loopsUnder(dir string) []string {
	var out []string
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		back := strings.TrimSuffix(strings.TrimSpace(string(data)), " (deleted)")
		if back == dir || strings.HasPrefix(back, dir+"/") {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(f))))
		}
	}
	return out
}

// detachLoops detaches the loop devices backed by files under dir (once
// their filesystems are unmounted).
func detachLoops(dir string) {
	for _, dev := range loopsUnder(dir) {
		logf("cleanup: loop device %s still attached: losetup -d", dev)
		if out, err := runQuiet(30*time.Second, nil, "losetup", "-d", dev); err != nil {
			logf("cleanup: losetup -d %s: %v: %s", dev, err, strings.TrimSpace(out))
		}
	}
}
