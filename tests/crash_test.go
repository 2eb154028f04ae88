package tests

import (
	"archive/tar"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // the daemon's database, read and edited while it is down
	"github.com/ulikunitz/xz"

	"cell/tests/harness"
)

// crashExec runs a command in a running instance through the API (with
// recorded output, no websockets) and returns its exit code and stdout.
func crashExec(t *testing.T, d *harness.Daemon, inst string, cmd ...string) (int, string) {
	t.Helper()
	op := d.MustSucceed("POST", "/1.0/instances/"+inst+"/exec", map[string]any{
		"command": cmd, "record-output": true, "wait-for-websocket": false})
	code, ok := op.Metadata["return"].(float64)
	if !ok {
		t.Fatalf("exec %v: no return code in %v", cmd, op.Metadata)
	}
	output, _ := op.Metadata["output"].(map[string]any)
	stdout, _ := output["1"].(string)
	if stdout == "" {
		t.Fatalf("exec %v: no recorded stdout in %v", cmd, op.Metadata)
	}
	resp, err := d.HTTP().Get("http://celld" + stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("exec output %s: %d %s", stdout, resp.StatusCode, data)
	}
	return int(code), string(data)
}

// crashPool is the default pool's directory.
func crashPool(d *harness.Daemon) string { return filepath.Join(d.Dir, "storage-pools", "default") }

// crashRows reads the instance rows straight from the database: name ->
// ready. Reading is safe while the daemon runs (WAL).
func crashRows(t *testing.T, d *harness.Daemon) map[string]bool {
	return readyRows(t, d, "instances")
}

// readyRows reads name -> ready of a table of rows that stay hidden while
// the disk is touched (instances, instances_snapshots).
func readyRows(t *testing.T, d *harness.Daemon, table string) map[string]bool {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.Dir, "cell.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT name, ready FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		var ready bool
		if err := rows.Scan(&name, &ready); err != nil {
			t.Fatal(err)
		}
		out[name] = ready
	}
	return out
}

// crashSQL changes the database of a stopped daemon, as a crash would
// have left it.
func crashSQL(t *testing.T, d *harness.Daemon, query string, args ...any) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.Dir, "cell.db")+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s %v changed nothing", query, args)
	}
}

// crashState returns the API's status of an instance and its init pid.
func crashState(t *testing.T, d *harness.Daemon, name string) (string, int) {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name+"/state", nil)
	if status != 200 {
		t.Fatalf("state of %s: %d %s", name, status, env.Error)
	}
	var st struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	}
	if err := json.Unmarshal(env.Metadata, &st); err != nil {
		t.Fatal(err)
	}
	return st.Status, st.Pid
}

// crashAgree checks what a restarted daemon must guarantee: the API lists
// exactly the instances that have a volume, nothing half made is visible or
// left on disk, and the API's state of each instance is liblxc's. It
// returns the listed instances.
func crashAgree(t *testing.T, d *harness.Daemon) []string {
	t.Helper()
	listed := imagesInstances(t, d)
	slices.Sort(listed)
	var volumes []string
	for _, dir := range []string{"containers", "images"} {
		for _, n := range imagesNames(t, filepath.Join(crashPool(d), dir)) {
			if strings.HasPrefix(n, ".tmp-") {
				t.Errorf("half-made volume left in the pool: %s/%s", dir, n)
			} else if dir == "containers" {
				volumes = append(volumes, n)
			}
		}
	}
	slices.Sort(volumes)
	if !slices.Equal(listed, volumes) {
		t.Errorf("API lists %v, the pool has volumes %v", listed, volumes)
	}
	for name, ready := range crashRows(t, d) {
		if !ready {
			t.Errorf("unfinished row %q still in the database", name)
		}
	}
	for _, n := range imagesNames(t, filepath.Join(d.Dir, "lxc")) {
		if !slices.Contains(listed, n) {
			t.Errorf("liblxc still has a container %q that the API does not list", n)
		}
	}
	for _, name := range listed {
		api, _ := crashState(t, d, name)
		lxc := d.LXCState(name)
		if want := map[string]string{"RUNNING": "Running", "STOPPED": "Stopped", "": "Stopped"}[lxc]; api != want {
			t.Errorf("%s: the API says %s, liblxc %q", name, api, lxc)
		}
	}
	return listed
}

// crashUsable checks that an instance works: exec when it runs, stop,
// start, exec, stop and delete.
func crashUsable(t *testing.T, d *harness.Daemon, name string) {
	t.Helper()
	if status, _ := crashState(t, d, name); status == "Running" {
		if code, _ := crashExec(t, d, name, "true"); code != 0 {
			t.Errorf("%s: exec true exited %d", name, code)
		}
		d.MustSucceed("PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "stop", "force": true})
	}
	d.MustSucceed("PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "start"})
	if code, out := crashExec(t, d, name, "cat", "/etc/hostname"); code != 0 || strings.TrimSpace(out) != name {
		t.Errorf("%s: hostname %q (exit %d)", name, out, code)
	}
	d.MustSucceed("PUT", "/1.0/instances/"+name+"/state", map[string]any{"action": "stop", "force": true})
	d.MustSucceed("DELETE", "/1.0/instances/"+name, nil)
	if _, err := os.Stat(filepath.Join(crashPool(d), "containers", name)); !os.IsNotExist(err) {
		t.Errorf("%s: volume still there after delete: %v", name, err)
	}
}

// crashBigImage streams the busybox image with bigMiB MiB of extra files
// added, as an uncompressed tarball: big enough that unpacking and copying
// it take a while, so that a kill lands in the middle.
func crashBigImage(t *testing.T, bigMiB int) io.Reader {
	t.Helper()
	src, err := os.Open(harness.BusyboxImage(t))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		defer src.Close()
		err := func() error {
			zr, err := xz.NewReader(src)
			if err != nil {
				return err
			}
			tr, tw := tar.NewReader(zr), tar.NewWriter(pw)
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := io.Copy(tw, tr); err != nil {
					return err
				}
			}
			chunk := make([]byte, 1<<20)
			for i := range chunk {
				chunk[i] = byte(i * 7)
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs/big/", Mode: 0o755}); err != nil {
				return err
			}
			for i := 0; i < bigMiB; i++ {
				chunk[0] = byte(i)
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("rootfs/big/f%03d", i), Mode: 0o644, Size: int64(len(chunk))}); err != nil {
					return err
				}
				if _, err := tw.Write(chunk); err != nil {
					return err
				}
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
	}()
	return pr
}

// crashImportBig uploads the big image under an alias.
func crashImportBig(t *testing.T, d *harness.Daemon, alias string) {
	t.Helper()
	_, _, fp := imagesUpload(t, d, crashBigImage(t, 200), "", nil)
	if status, env := d.API("POST", "/1.0/images/aliases", map[string]string{"name": alias, "target": fp}); status != 201 {
		t.Fatalf("alias: %d %s", status, env.Error)
	}
}

// crashAccepted sends a request and fails unless it was accepted (202).
func crashAccepted(t *testing.T, d *harness.Daemon, method, path string, body any) {
	t.Helper()
	if status, env := d.API(method, path, body); status != http.StatusAccepted {
		t.Fatalf("%s %s: %d %s", method, path, status, env.Error)
	}
}

// TestCrashDuringCreate kills celld while it unpacks an image, and while
// it copies the image volume into a new instance.
func TestCrashDuringCreate(t *testing.T) {
	d := harness.StartDaemon(t)
	crashImportBig(t, d, "big")
	create := func(name string) {
		crashAccepted(t, d, "POST", "/1.0/instances", map[string]any{
			"name": name, "source": map[string]string{"type": "image", "alias": "big"}})
	}

	// 1. While the image is unpacked into the pool (nothing of it exists yet).
	create("unpacking")
	if slices.Contains(imagesInstances(t, d), "unpacking") {
		t.Error("an instance being created is listed")
	}
	if status, _ := d.API("GET", "/1.0/instances/unpacking", nil); status != http.StatusNotFound {
		t.Errorf("GET of an instance being created: %d, want 404", status)
	}
	d.Kill()
	if ready, ok := crashRows(t, d)["unpacking"]; !ok || ready {
		t.Logf("the kill missed the unpack (row present %v, ready %v)", ok, ready)
	}
	d.Start()
	crashAgree(t, d)
	if slices.Contains(imagesInstances(t, d), "unpacking") {
		t.Error("an instance whose creation was killed is listed")
	}

	// 2. While the image volume is copied into the instance volume.
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "done", "source": map[string]string{"type": "image", "alias": "big"}})
	for _, delay := range []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond} {
		create("copying")
		time.Sleep(delay)
		d.Kill()
		t.Logf("killed %s after create: rows %v", delay, crashRows(t, d))
		d.Start()
		crashAgree(t, d)
		// The same name can be used again, and the copy is whole.
		if slices.Contains(imagesInstances(t, d), "copying") {
			d.MustSucceed("DELETE", "/1.0/instances/copying", nil)
		}
	}
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "copying", "source": map[string]string{"type": "image", "alias": "big"}})
	// A copy still running from before the crash would keep writing into
	// the new volume: give it the time to show.
	time.Sleep(time.Second)
	n := len(imagesNames(t, filepath.Join(crashPool(d), "containers", "copying", "rootfs", "big")))
	if n != 200 {
		t.Errorf("the recreated instance has %d of the 200 big files", n)
	}

	// 3. While an instance is deleted.
	crashAccepted(t, d, "DELETE", "/1.0/instances/done", nil)
	// Kill as soon as the deletion has begun (the row is hidden).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if ready, ok := crashRows(t, d)["done"]; !ok || !ready {
			break
		}
	}
	d.Kill()
	d.Start()
	if slices.Contains(crashAgree(t, d), "done") {
		t.Log("the kill missed the delete")
		d.MustSucceed("DELETE", "/1.0/instances/done", nil)
	}

	// 4. While an image is uploaded.
	pr, pw := io.Pipe()
	uploaded := make(chan struct{})
	go func() {
		defer close(uploaded)
		req, _ := http.NewRequest("POST", "http://celld/1.0/images", pr)
		if resp, err := d.HTTP().Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := io.CopyN(pw, crashBigImage(t, 200), 50<<20); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	pw.CloseWithError(io.ErrUnexpectedEOF)
	<-uploaded
	d.Start()
	if names := imagesNames(t, filepath.Join(d.Dir, "images")); len(names) != 1 {
		t.Errorf("image store after a killed upload: %v, want only the big image", names)
	}
	if status, env := d.API("GET", "/1.0/images", nil); status != 200 || strings.Count(string(env.Metadata), "/1.0/images/") != 1 {
		t.Errorf("images after a killed upload: %s", env.Metadata)
	}

	for _, name := range crashAgree(t, d) {
		crashUsable(t, d, name)
	}
	crashAgree(t, d)
}

// TestCrashDuringStart kills celld right after a start was accepted.
func TestCrashDuringStart(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	for i, delay := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond} {
		name := fmt.Sprintf("starting%d", i)
		d.MustSucceed("POST", "/1.0/instances", map[string]any{
			"name": name, "source": map[string]string{"type": "image", "alias": "bb"}})
		crashAccepted(t, d, "PUT", "/1.0/instances/"+name+"/state", map[string]string{"action": "start"})
		time.Sleep(delay)
		d.Kill()
		d.Start()
		crashAgree(t, d)
	}
	// Whatever state the kills left, every instance works.
	for _, name := range crashAgree(t, d) {
		crashUsable(t, d, name)
	}
}

// TestCrashDuringStop kills celld while a clean stop waits for init.
func TestCrashDuringStop(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "stopping", nil)
	d.Launch("bb", "bystander", nil)
	_, pid := crashState(t, d, "bystander")
	crashAccepted(t, d, "PUT", "/1.0/instances/stopping/state", map[string]any{"action": "stop", "timeout": 30})
	time.Sleep(200 * time.Millisecond)
	d.Kill()
	// init got its halt signal; it powers off on its own.
	deadline := time.Now().Add(15 * time.Second)
	for d.LXCState("stopping") != "STOPPED" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	d.Start()
	crashAgree(t, d)
	// The stop the user asked for stays done: the restarted daemon must
	// not start the instance again.
	time.Sleep(2 * time.Second)
	if status, _ := crashState(t, d, "stopping"); status != "Stopped" {
		t.Errorf("the instance whose stop was interrupted is %s after the restart", status)
	}
	if status, now := crashState(t, d, "bystander"); status != "Running" || now != pid {
		t.Errorf("the other instance: %s pid %d, want Running pid %d", status, now, pid)
	}
	for _, name := range crashAgree(t, d) {
		crashUsable(t, d, name)
	}
}

// TestCrashDuringExec kills celld while a command runs in a container.
func TestCrashDuringExec(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "execing", nil)
	_, pid := crashState(t, d, "execing")
	crashAccepted(t, d, "POST", "/1.0/instances/execing/exec", map[string]any{
		"command": []string{"sleep", "600"}, "record-output": true, "wait-for-websocket": false})
	time.Sleep(300 * time.Millisecond)
	d.Kill()
	if state := d.LXCState("execing"); state != "RUNNING" {
		t.Fatalf("the container is %q after celld was killed", state)
	}
	d.Start()
	crashAgree(t, d)
	if status, now := crashState(t, d, "execing"); status != "Running" || now != pid {
		t.Errorf("after the restart: %s pid %d, want Running pid %d", status, now, pid)
	}
	if code, out := crashExec(t, d, "execing", "echo", "still here"); code != 0 || out != "still here\n" {
		t.Errorf("exec after the restart: %d %q", code, out)
	}
	crashUsable(t, d, "execing")
}

// TestCrashLeftovers prepares the states a crash leaves half way through a
// create or delete: rows that are not ready (with and without their
// volume) and temporary volumes. A restart finishes the job.
func TestCrashLeftovers(t *testing.T) {
	d := harness.StartDaemon(t)
	fp := d.ImportImage(harness.BusyboxImage(t), "bb")
	for _, name := range []string{"keep", "halfdeleted", "novolume"} {
		d.MustSucceed("POST", "/1.0/instances", map[string]any{
			"name": name, "source": map[string]string{"type": "image", "alias": "bb"}})
	}
	d.MustSucceed("PUT", "/1.0/instances/keep/state", map[string]string{"action": "start"})
	d.MustSucceed("PUT", "/1.0/instances/halfdeleted/state", map[string]string{"action": "start"})
	d.MustSucceed("PUT", "/1.0/instances/halfdeleted/state", map[string]any{"action": "stop", "force": true})
	_, pid := crashState(t, d, "keep")
	d.Kill()

	pool := crashPool(d)
	crashSQL(t, d, "UPDATE instances SET ready = 0 WHERE name IN ('halfdeleted', 'novolume')")
	if err := os.RemoveAll(filepath.Join(pool, "containers", "novolume")); err != nil {
		t.Fatal(err)
	}
	for _, tmp := range []string{filepath.Join(pool, "containers", ".tmp-gone"), filepath.Join(pool, "images", ".tmp-"+strings.Repeat("ab", 32))} {
		if err := os.MkdirAll(filepath.Join(tmp, "rootfs", "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "rootfs", "etc", "x"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.Start()
	listed := crashAgree(t, d)
	if !slices.Equal(listed, []string{"keep"}) {
		t.Errorf("after the restart the API lists %v, want [keep]", listed)
	}
	for _, gone := range []string{"halfdeleted", "novolume"} {
		if _, err := os.Stat(filepath.Join(pool, "containers", gone)); !os.IsNotExist(err) {
			t.Errorf("volume of unfinished %s still there: %v", gone, err)
		}
		if _, ok := crashRows(t, d)[gone]; ok {
			t.Errorf("row of unfinished %s still there", gone)
		}
		if status, _ := d.API("GET", "/1.0/instances/"+gone, nil); status != 404 {
			t.Errorf("GET %s: %d, want 404", gone, status)
		}
	}
	if status, now := crashState(t, d, "keep"); status != "Running" || now != pid {
		t.Errorf("keep: %s pid %d, want Running pid %d", status, now, pid)
	}
	// The names are free again and the image still works.
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "halfdeleted", "source": map[string]string{"type": "image", "fingerprint": fp}})
	crashUsable(t, d, "halfdeleted")
	crashUsable(t, d, "keep")
	crashAgree(t, d)
}

// TestCrashSIGTERMKeepsRunning: stopping celld (an upgrade) leaves
// containers running, and the next celld takes them over as they are.
func TestCrashSIGTERMKeepsRunning(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "upgrade", nil)
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "idle", "source": map[string]string{"type": "image", "alias": "bb"}})
	_, pid := crashState(t, d, "upgrade")
	if err := d.Signal(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if state := d.LXCState("upgrade"); state != "RUNNING" {
		t.Fatalf("the container is %q once celld stopped", state)
	}
	d.Start()
	if status, now := crashState(t, d, "upgrade"); status != "Running" || now != pid {
		t.Errorf("after the restart: %s pid %d, want Running with the same init pid %d", status, now, pid)
	}
	if code, out := crashExec(t, d, "upgrade", "echo", "ok"); code != 0 || out != "ok\n" {
		t.Errorf("exec after the restart: %d %q", code, out)
	}
	// A stopped instance stays stopped.
	if status, _ := crashState(t, d, "idle"); status != "Stopped" {
		t.Errorf("idle is %s after the restart", status)
	}
	crashAgree(t, d)
	crashUsable(t, d, "upgrade")
	crashUsable(t, d, "idle")
}

// TestCrashInterruptedShift: a crash while a start rewrites the owners of
// a rootfs (security.privileged switched off) leaves part of the tree
// shifted and the old map recorded. The next start must finish the job,
// not shift the finished part a second time.
func TestCrashInterruptedShift(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.Launch("bb", "shifty", map[string]string{"security.privileged": "true"})
	d.MustSucceed("PUT", "/1.0/instances/shifty/state", map[string]any{"action": "stop", "force": true})
	if status, env := d.API("PATCH", "/1.0/instances/shifty", map[string]any{"config": map[string]string{"security.privileged": "false"}}); status != 200 {
		t.Fatalf("PATCH: %d %s", status, env.Error)
	}
	d.Kill()
	// What ShiftTree had done when the daemon died: /etc and /bin shifted
	// to the unprivileged map, the rest not yet.
	rootfs := filepath.Join(crashPool(d), "containers", "shifty", "rootfs")
	for _, dir := range []string{"etc", "bin"} {
		err := filepath.Walk(filepath.Join(rootfs, dir), func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			return os.Lchown(p, int(st.Uid)+1000000, int(st.Gid)+1000000)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	d.Start()
	d.MustSucceed("PUT", "/1.0/instances/shifty/state", map[string]string{"action": "start"})
	var wrong []string
	_ = filepath.Walk(rootfs, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid < 1000000 || st.Uid >= 1065536 || st.Gid < 1000000 || st.Gid >= 1065536 {
			wrong = append(wrong, fmt.Sprintf("%s %d:%d", strings.TrimPrefix(p, rootfs), st.Uid, st.Gid))
		}
		return nil
	})
	if len(wrong) > 0 {
		t.Errorf("%d files outside the container's ids after the shift was finished, e.g. %v", len(wrong), wrong[:min(len(wrong), 5)])
	}
	if code, out := crashExec(t, d, "shifty", "stat", "-c", "%u:%g", "/etc/passwd", "/bin/busybox", "/root"); code != 0 || out != "0:0\n0:0\n0:0\n" {
		t.Errorf("owners inside the container: exit %d %q", code, out)
	}
	crashUsable(t, d, "shifty")
}

// TestCrashInterruptedRename: a crash after the row was renamed but
// before the volume was leaves the row with the new name and the old name
// recorded; the next start moves the volume and the instance works.
func TestCrashInterruptedRename(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "before", "source": map[string]string{"type": "image", "alias": "bb"}})
	d.Kill()
	crashSQL(t, d, `UPDATE instances SET name = 'after', config = json_set(config, '$."volatile.rename_from"', 'before') WHERE name = 'before'`)
	d.Start()
	if listed := crashAgree(t, d); !slices.Equal(listed, []string{"after"}) {
		t.Fatalf("after the restart the API lists %v, want [after]", listed)
	}
	_, env := d.API("GET", "/1.0/instances/after", nil)
	if strings.Contains(string(env.Metadata), "rename_from") {
		t.Errorf("the rename marker outlived the recovery: %s", env.Metadata)
	}
	d.MustSucceed("PUT", "/1.0/instances/after/state", map[string]any{"action": "start"})
	if code, _ := crashExec(t, d, "after", "true"); code != 0 {
		t.Errorf("exec in the renamed instance exited %d", code)
	}
}

// TestCrashInterruptedSnapshotRename: a crash after the snapshot's row was
// renamed but before its directory was leaves the marker; the next start
// moves the directory and the snapshot restores under its new name.
func TestCrashInterruptedSnapshotRename(t *testing.T) {
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": "c1", "source": map[string]string{"type": "image", "alias": "bb"}})
	d.MustSucceed("POST", "/1.0/instances/c1/snapshots", map[string]any{"name": "before"})
	d.Kill()
	crashSQL(t, d, `UPDATE instances_snapshots SET name = 'after' WHERE name = 'before'`)
	crashSQL(t, d, `UPDATE instances SET config = json_set(config, '$."volatile.snapshot_rename"', 'before/after') WHERE name = 'c1'`)
	d.Start()
	if status, env := d.API("GET", "/1.0/instances/c1/snapshots/after", nil); status != 200 {
		t.Fatalf("snapshot after the recovery: %d %s", status, env.Error)
	}
	if _, err := os.Stat(filepath.Join(crashPool(d), "snapshots", "c1", "after")); err != nil {
		t.Fatalf("snapshot directory not moved: %v", err)
	}
	_, env := d.API("GET", "/1.0/instances/c1", nil)
	if strings.Contains(string(env.Metadata), "snapshot_rename") {
		t.Errorf("the rename marker outlived the recovery: %s", env.Metadata)
	}
	d.MustSucceed("PUT", "/1.0/instances/c1", map[string]any{"restore": "after"})
}
