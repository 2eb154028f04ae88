package tests

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cell/tests/harness"
)

// The image task runs every CELL_DEBUG_IMAGE_TICK and its clock moves one
// hour per run (see daemon/image_update.go), so an auto_update_interval of
// 1 hour is due at every tick and a remote_cache_expiry of 1 day after 24.
const testImageTick = "200ms"

// imageFiles lists what of an image is on the daemon's disk: its files in
// the store and its volume in any pool.
func imageFiles(t *testing.T, d *harness.Daemon, fp string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(d.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil // a container's rootfs may be unreadable in parts
		}
		if strings.HasPrefix(e.Name(), fp) {
			found = append(found, p)
			if e.IsDir() {
				return filepath.SkipDir
			}
		}
		if e.IsDir() && e.Name() == "containers" {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// hasImage says whether the daemon lists the image.
func hasImage(t *testing.T, d *harness.Daemon, fp string) bool {
	for _, img := range localImages(t, d) {
		if img["fingerprint"] == fp {
			return true
		}
	}
	return false
}

// aliasTarget is the fingerprint an alias points at.
func aliasTarget(t *testing.T, d *harness.Daemon, alias string) string {
	t.Helper()
	_, resp := d.API("GET", "/1.0/images/aliases/"+alias, nil)
	var entry struct {
		Target string `json:"target"`
	}
	_ = json.Unmarshal(resp.Metadata, &entry)
	return entry.Target
}

// eventually polls cond until it holds; the image task works in the
// background at its own pace. The deadline only bounds a failing test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not the case after 90s: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestImageAutoUpdate(t *testing.T) {
	t.Setenv("CELL_DEBUG_IMAGE_TICK", testImageTick)
	unified := harness.BusyboxImage(t)
	tree := t.TempDir()
	v1 := publishVersion(t, tree, unified, "1.35", "")
	srv := serveTreeTLS(t, tree)
	d := harness.StartDaemon(t)
	// Nothing runs on its own until the test says so.
	d.MustC("config", "set", "images.auto_update_interval", "0")

	for key, bad := range map[string]string{
		"images.auto_update_interval": "1.5", "images.remote_cache_expiry": "ten", "images.auto_update_cached": "maybe",
	} {
		_, errOut, code := d.C("config", "set", key, bad)
		if code == 0 || !strings.Contains(errOut, key) || !strings.Contains(errOut, "want") {
			t.Errorf("config set %s %s: exit %d, %q; want a refusal saying what is allowed", key, bad, code, errOut)
		}
	}

	d.MustC("remote", "add", "upd", srv.URL, "--protocol", "simplestreams")
	d.MustC("image", "copy", "upd:busybox/1.35", "local:", "--alias", "bb", "--auto-update")
	if got := aliasTarget(t, d, "bb"); got != v1.Fingerprint {
		t.Fatalf("bb -> %q, want %s", got, v1.Fingerprint)
	}
	d.MustC("launch", "bb", "U1")
	var v2 ssTree // published by the first subtest

	t.Run("the task picks up a new version", func(t *testing.T) {
		d := d.For(t)
		v2 = publishVersion(t, tree, unified, "1.35", "version 2")
		d.MustC("config", "set", "images.auto_update_interval", "1")
		eventually(t, "bb moved to the new version", func() bool { return aliasTarget(t, d, "bb") == v2.Fingerprint })
		d.MustC("config", "set", "images.auto_update_interval", "0")

		var img map[string]any
		for _, i := range localImages(t, d) {
			if i["fingerprint"] == v2.Fingerprint {
				img = i
			}
		}
		if img == nil || img["auto_update"] != true || img["cached"] != false {
			t.Fatalf("new version = %v, want auto_update and not cached, as the copy was", img)
		}
		// U1 was made from the old version: that one stays while U1 does,
		// and U1 keeps working.
		if !hasImage(t, d, v1.Fingerprint) {
			t.Fatalf("the old version went while U1 uses it")
		}
		d.MustC("restart", "U1")
		if out := d.MustC("exec", "U1", "--", "echo", "alive"); strings.TrimSpace(out) != "alive" {
			t.Fatalf("exec in U1 after the update = %q", out)
		}
		d.MustC("delete", "--force", "U1")
		d.MustC("config", "set", "images.auto_update_interval", "1")
		eventually(t, "the old version removed once unused, files included", func() bool {
			return !hasImage(t, d, v1.Fingerprint) && len(imageFiles(t, d, v1.Fingerprint)) == 0
		})
		d.MustC("config", "set", "images.auto_update_interval", "0")
		d.MustC("launch", "bb", "U2")
		d.MustC("delete", "--force", "U2")
	})

	t.Run("refresh now", func(t *testing.T) {
		d := d.For(t)
		if out := d.MustC("image", "refresh", "bb"); !strings.Contains(out, "up to date") {
			t.Fatalf("refresh with nothing new = %q", out)
		}
		v3 := publishVersion(t, tree, unified, "1.35", "version 3")
		if out := d.MustC("image", "refresh", "bb"); !strings.Contains(out, "refreshed successfully") {
			t.Fatalf("refresh with a new version = %q", out)
		}
		if got := aliasTarget(t, d, "bb"); got != v3.Fingerprint {
			t.Fatalf("bb -> %q after refresh, want %s", got, v3.Fingerprint)
		}
		// Nothing used v2: it is gone with the refresh.
		if v2.Fingerprint == "" {
			t.Fatal("the previous subtest did not publish v2")
		}
		if hasImage(t, d, v2.Fingerprint) || len(imageFiles(t, d, v2.Fingerprint)) > 0 {
			t.Fatalf("the replaced version is still there: %v", imageFiles(t, d, v2.Fingerprint))
		}
		d.MustC("image", "import", unified, "--alias", "uploaded")
		if _, errOut, code := d.C("image", "refresh", "uploaded"); code == 0 || !strings.Contains(errOut, "image server") {
			t.Fatalf("refresh of an uploaded image: exit %d, %q; want a refusal", code, errOut)
		}
	})
}

func TestImageCacheExpiry(t *testing.T) {
	t.Setenv("CELL_DEBUG_IMAGE_TICK", testImageTick)
	unified := harness.BusyboxImage(t)
	a := writeSimplestreamsTree(t, unified, "1.35", "")
	b := writeSimplestreamsTree(t, unified, "1.36", "b")
	srvA, srvB := serveTreeTLS(t, a.Dir), serveTree(t, b.Dir)
	d := harness.StartDaemon(t)
	d.MustC("config", "set", "images.remote_cache_expiry", "0")
	d.MustC("remote", "add", "a", srvA.URL, "--protocol", "simplestreams")
	d.MustC("remote", "add", "b", srvB.URL, "--protocol", "simplestreams")

	// Both are cached by a launch; only B's instance stays.
	d.MustC("init", "a:busybox/1.35", "E1")
	d.MustC("init", "b:busybox/1.36", "E2")
	d.MustC("delete", "E1")
	if !hasImage(t, d, a.Fingerprint) || !hasImage(t, d, b.Fingerprint) {
		t.Fatalf("images after the launches: %v", localImages(t, d))
	}

	d.MustC("config", "set", "images.remote_cache_expiry", "1")
	// The row goes first, then the pool volume and the files.
	eventually(t, "the unused cached image expired, files included", func() bool {
		return !hasImage(t, d, a.Fingerprint) && len(imageFiles(t, d, a.Fingerprint)) == 0
	})
	// Decided in the same run as A: an image an instance uses is kept.
	if !hasImage(t, d, b.Fingerprint) {
		t.Fatalf("the cached image E2 uses expired")
	}
	d.MustC("start", "E2")
	d.MustC("delete", "--force", "E2")
}

// Auto-update follows an alias on another celld too (protocol lxd, over
// HTTPS pinned to the certificate the copy was made with): when the
// server points the alias at a new image, the task downloads it, moves
// the local alias and removes the old version nobody uses.
func TestImageAutoUpdateFromLXDServer(t *testing.T) {
	t.Setenv("CELL_DEBUG_IMAGE_TICK", testImageTick)
	b := harness.StartDaemon(t)
	addrB := b.EnableHTTPS()
	publish := func(name string) string {
		op := b.MustSucceed("POST", "/1.0/images", bytes.NewReader(tinyImage(t, name)))
		fp, _ := op.Metadata["fingerprint"].(string)
		if status, env := b.API("PATCH", "/1.0/images/"+fp, map[string]any{"public": true}); status != 200 {
			t.Fatalf("make %s public: %s", name, env.Error)
		}
		return fp
	}
	v1 := publish("version 1")
	if status, env := b.API("POST", "/1.0/images/aliases", map[string]string{"name": "tiny", "target": v1}); status != 201 {
		t.Fatalf("alias tiny: %s", env.Error)
	}

	a := harness.StartDaemon(t)
	a.MustC("config", "set", "images.auto_update_interval", "0")
	token := strings.TrimSpace(b.MustC("config", "trust", "add", "--name", "hostA", "-q"))
	if out, errOut, code := a.C("remote", "add", "b", "https://"+addrB, "--token", token); code != 0 {
		t.Fatalf("remote add b: %s%s", out, errOut)
	}
	a.MustC("image", "copy", "b:tiny", "local:", "--alias", "t", "--auto-update")
	if got := aliasTarget(t, a, "t"); got != v1 {
		t.Fatalf("t -> %q, want %s", got, v1)
	}
	if out := a.MustC("image", "refresh", "t"); !strings.Contains(out, "up to date") {
		t.Fatalf("refresh with nothing new = %q", out)
	}

	v2 := publish("version 2")
	if status, env := b.API("PUT", "/1.0/images/aliases/tiny", map[string]string{"target": v2}); status != 200 {
		t.Fatalf("point tiny at v2: %s", env.Error)
	}
	a.MustC("config", "set", "images.auto_update_interval", "1")
	eventually(t, "t moved to the server's new image", func() bool { return aliasTarget(t, a, "t") == v2 })
	eventually(t, "the old version removed, files included", func() bool {
		return !hasImage(t, a, v1) && len(imageFiles(t, a, v1)) == 0
	})
	a.MustC("config", "set", "images.auto_update_interval", "0")
	for _, img := range localImages(t, a) {
		if img["fingerprint"] == v2 && img["auto_update"] != true {
			t.Fatalf("new version = %v, want auto_update as the copy had", img)
		}
	}
}
