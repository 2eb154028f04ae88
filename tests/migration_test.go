package tests

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"cell/shared/api"
	"cell/shared/tlsutil"
	"cell/tests/harness"
)

// The two celld of these tests listen on loopback, each with its own dir
// and port (not yet in network namespaces joined by a veth pair).

// migrationHosts starts two celld with HTTPS, and makes a's client know
// both as remotes "a" and "b" (the target reaches the source over HTTPS,
// so the source must be an HTTPS remote too). a has busybox as "bb".
func migrationHosts(t *testing.T) (a, b *harness.Daemon, addrA, addrB string) {
	t.Helper()
	a = harness.StartDaemon(t)
	b = harness.StartDaemon(t)
	addrA, addrB = a.EnableHTTPS(), b.EnableHTTPS()
	a.ImportImage(harness.BusyboxImage(t), "bb")
	for _, h := range []struct {
		name string
		d    *harness.Daemon
	}{{"a", a}, {"b", b}} {
		token := strings.TrimSpace(h.d.MustC("config", "trust", "add", "--name", "client-a", "-q"))
		if out, errOut, code := a.C("remote", "add", h.name, token); code != 0 {
			t.Fatalf("remote add %s: %s%s", h.name, out, errOut)
		}
	}
	return a, b, addrA, addrB
}

// migVolumePath is where pool keeps instance name (and its snapshots).
func migVolumePath(d *harness.Daemon, pool, name string) string {
	return filepath.Join(d.Dir, "storage-pools", pool, "containers", name)
}

func migSnapshotPath(d *harness.Daemon, pool, name, snap string) string {
	return filepath.Join(d.Dir, "storage-pools", pool, "snapshots", name, snap)
}

// snapshotNames lists an instance's snapshots as the API shows them.
func migSnapshotNames(t *testing.T, d *harness.Daemon, name string) []string {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name+"/snapshots?recursion=1", nil)
	if status != http.StatusOK {
		t.Fatalf("snapshots of %s: %d %s", name, status, env.Error)
	}
	var snaps []api.InstanceSnapshot
	if err := json.Unmarshal(env.Metadata, &snaps); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name)
	}
	return names
}

func instanceStatus(t *testing.T, d *harness.Daemon, name string) (int, string) {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name, nil)
	var inst api.Instance
	_ = json.Unmarshal(env.Metadata, &inst)
	return status, inst.Status
}

// makeMigrant launches a busybox container with files that differ in
// each of its two snapshots and in the instance itself.
func makeMigrant(t *testing.T, a *harness.Daemon, name, pool string, size int) {
	t.Helper()
	args := []string{"launch", "bb", name}
	if pool != "" {
		args = append(args, "-s", pool)
	}
	a.MustC(args...)
	for i, step := range []string{"s1", "s2", ""} {
		a.MustC("exec", name, "--", "sh", "-c", "head -c "+strconv.Itoa(size)+" /dev/urandom > /data"+strconv.Itoa(i)+" && echo "+step+" > /step")
		if step != "" {
			a.MustC("snapshot", name, step)
		}
	}
}

// sameTrees compares the volume and snapshots of src on a with dst on b.
func sameTrees(t *testing.T, a *harness.Daemon, srcPool string, src string, b *harness.Daemon, dstPool, dst string, snaps []string) {
	t.Helper()
	for _, s := range snaps {
		if got, want := treeSummary(t, migSnapshotPath(b, dstPool, dst, s)), treeSummary(t, migSnapshotPath(a, srcPool, src, s)); got != want {
			t.Errorf("snapshot %s/%s differs from the source's:\n%s\nwant:\n%s", dst, s, got, want)
		}
	}
	if got, want := treeSummary(t, migVolumePath(b, dstPool, dst)), treeSummary(t, migVolumePath(a, srcPool, src)); got != want {
		t.Errorf("volume %s differs from the source's:\n%s\nwant:\n%s", dst, got, want)
	}
}

// Stateless copy and move between two celld, dir to dir and dir to
// btrfs: files and snapshots arrive bit for bit; the source is intact
// after a copy and gone after a move; a moved running instance runs on
// the target.
func TestMigrationCopyMove(t *testing.T) {
	a, b, _, _ := migrationHosts(t)
	makeMigrant(t, a, "C01", "", 1<<20)
	a.MustC("stop", "C01", "--force")

	a.MustC("copy", "a:C01", "b:C01")
	sameTrees(t, a, "default", "C01", b, "default", "C01", []string{"s1", "s2"})
	if got := strings.Join(migSnapshotNames(t, b, "C01"), ","); got != "s1,s2" {
		t.Errorf("snapshots on the target: %q, want s1,s2", got)
	}
	if got := strings.Join(migSnapshotNames(t, a, "C01"), ","); got != "s1,s2" {
		t.Errorf("snapshots on the source after a copy: %q, want s1,s2", got)
	}
	b.MustC("start", "C01")
	if out := b.MustC("exec", "C01", "--", "cat", "/step"); strings.TrimSpace(out) != "" {
		t.Errorf("/step on the copy: %q, want the instance's (empty)", out)
	}

	// --instance-only: no snapshots; push mode: the source connects to
	// the target, and the same arrives.
	a.MustC("copy", "a:C01", "b:C02", "--instance-only", "--mode", "push")
	if got := migSnapshotNames(t, b, "C02"); len(got) != 0 {
		t.Errorf("--instance-only copied snapshots %v", got)
	}
	if got, want := treeSummary(t, migVolumePath(b, "default", "C02")), treeSummary(t, migVolumePath(a, "default", "C01")); got != want {
		t.Errorf("push copy differs from the source")
	}
	// A move on one server is still a rename.
	b.MustC("move", "C02", "C02b")
	if status, _ := instanceStatus(t, b, "C02b"); status != http.StatusOK {
		t.Errorf("local move: C02b status %d", status)
	}
	b.MustC("move", "C02b", "C02")
	// A destination that exists is refused, and leaves it as it was.
	if _, stderr, code := a.C("copy", "a:C01", "b:C02"); code == 0 || !strings.Contains(stderr, "already exists") {
		t.Errorf("copy over an existing instance: code %d, %q", code, stderr)
	}

	// dir to btrfs, while the source runs.
	if _, err := exec.LookPath("mkfs.btrfs"); err == nil {
		b.MustC("storage", "create", "bt", "btrfs", "size=1GiB")
		a.MustC("copy", "a:C01", "b:C03", "-s", "bt")
		sameTrees(t, a, "default", "C01", b, "bt", "C03", []string{"s1", "s2"})
		if got := subvolumeField(t, migSnapshotPath(b, "bt", "C03", "s1"), "Received UUID"); got != "-" {
			t.Errorf("dir to btrfs: s1 was received with btrfs receive (%s)", got)
		}
		// btrfs to btrfs: btrfs send, snapshots incrementally.
		a.MustC("storage", "create", "bt", "btrfs", "size=1GiB")
		a.MustC("copy", "C01", "C04", "-s", "bt")
		a.MustC("copy", "a:C04", "b:C04", "-s", "bt")
		sameTrees(t, a, "bt", "C04", b, "bt", "C04", []string{"s1", "s2"})
		for _, s := range []string{"s1", "s2"} {
			if got := subvolumeField(t, migSnapshotPath(b, "bt", "C04", s), "Received UUID"); got == "-" || got == "" {
				t.Errorf("btrfs to btrfs: snapshot %s was not received with btrfs receive", s)
			}
		}
		if _, err := os.Stat(migSnapshotPath(a, "bt", "C04", ".migration")); !os.IsNotExist(err) {
			t.Errorf("the source kept its migration snapshot (%v)", err)
		}
		b.MustC("start", "C04")
		if out := b.MustC("exec", "C04", "--", "cat", "/step"); strings.TrimSpace(out) != "" {
			t.Errorf("/step on the btrfs copy: %q", out)
		}
	} else {
		t.Log("btrfs-progs not installed: dir to btrfs not tested")
	}

	// A move of a running instance: stopped, moved, started there.
	a.MustC("start", "C01")
	before := treeSummary(t, migSnapshotPath(a, "default", "C01", "s2"))
	a.MustC("move", "a:C01", "b:M1")
	if status, _ := instanceStatus(t, a, "C01"); status != http.StatusNotFound {
		t.Errorf("source after a move: status %d, want 404", status)
	}
	if _, st := instanceStatus(t, b, "M1"); st != "Running" {
		t.Errorf("moved instance is %q, want Running", st)
	}
	if got := treeSummary(t, migSnapshotPath(b, "default", "M1", "s2")); got != before {
		t.Errorf("moved snapshot s2 differs:\n%s\nwant:\n%s", got, before)
	}
}

// The secret is what lets the target, a client the source does not
// trust, reach the migration websockets: a wrong one is refused.
func TestMigrationWrongSecret(t *testing.T) {
	a := harness.StartDaemon(t)
	addr := a.EnableHTTPS()
	a.ImportImage(harness.BusyboxImage(t), "bb")
	a.MustC("init", "bb", "W1")
	status, env := a.API("POST", "/1.0/instances/W1", map[string]any{"migration": true})
	if status != http.StatusAccepted {
		t.Fatalf("migration POST: %d %s", status, env.Error)
	}
	var op api.Operation
	if err := json.Unmarshal(env.Metadata, &op); err != nil {
		t.Fatal(err)
	}
	secret, _ := op.Metadata["control"].(string)
	if secret == "" || op.Metadata["fs"] == nil {
		t.Fatalf("migration operation metadata has no secrets: %v", op.Metadata)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := tlsutil.Generate(certPath, keyPath, true); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	serverPEM, _ := os.ReadFile(filepath.Join(a.Dir, "server.crt"))
	server, err := tlsutil.ParseCertPEM(serverPEM)
	if err != nil {
		t.Fatal(err)
	}
	dialer := websocket.Dialer{TLSClientConfig: tlsutil.ClientConfig(&pair, server), HandshakeTimeout: 10 * time.Second}
	base := "wss://" + addr + "/1.0/operations/" + op.ID + "/websocket?secret="
	conn, resp, err := dialer.Dial(base+"wrong", nil)
	if err == nil {
		conn.Close()
		t.Fatal("a wrong secret was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong secret: %v, %+v", err, resp)
	}
	// Without a secret, an untrusted client is not let in either.
	if _, resp, err := dialer.Dial("wss://"+addr+"/1.0/operations/"+op.ID+"/websocket", nil); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no secret: %v, %+v", err, resp)
	}
	conn, _, err = dialer.Dial(base+secret, nil)
	if err != nil {
		t.Fatalf("the right secret from an untrusted client: %v", err)
	}
	conn.Close()
	// The source gives up and keeps its instance.
	a.Wait(env)
	if status, _ := instanceStatus(t, a, "W1"); status != http.StatusOK {
		t.Fatalf("source instance after a failed migration: %d", status)
	}
}

// The target killed while the files arrive: the source keeps its
// instance, running, and the target, once restarted, has no trace of it.
func TestMigrationTargetKilled(t *testing.T) {
	a, b, _, _ := migrationHosts(t)
	a.MustC("launch", "bb", "K1")
	a.MustC("snapshot", "K1", "s1")
	a.MustC("exec", "K1", "--", "sh", "-c", "head -c 300000000 /dev/urandom > /big")
	before := treeSummary(t, migSnapshotPath(a, "default", "K1", "s1"))

	cmd := exec.Command(filepath.Join(a.Bin, "c"), "copy", "a:K1", "b:K1")
	cmd.Env = append(os.Environ(), "CELL_DIR="+a.Dir, "CELL_CONF="+a.Conf, "HOME="+filepath.Dir(a.Dir))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() { copied <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Kill the target once the big file is on its way.
	rootfs := filepath.Join(migVolumePath(b, "default", "K1"), "rootfs")
	for {
		if m, _ := filepath.Glob(filepath.Join(rootfs, ".big.*")); len(m) > 0 {
			break
		}
		if _, err := os.Stat(filepath.Join(rootfs, "big")); err == nil {
			break
		}
		select {
		case err := <-copied:
			t.Fatalf("the copy ended (%v) before the target could be killed during it", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The target's operation reports the bytes received so far.
	for progress := ""; progress == ""; {
		_, env := b.API("GET", "/1.0/operations?recursion=1", nil)
		var ops map[string][]api.Operation
		_ = json.Unmarshal(env.Metadata, &ops)
		for _, op := range ops["running"] {
			if s, ok := op.Metadata["fs_progress"].(string); ok && strings.HasPrefix(s, "K1: ") {
				progress = s
			}
		}
		select {
		case err := <-copied:
			t.Fatalf("the copy ended (%v) before its progress was seen", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	b.Kill()
	if err := <-copied; err == nil {
		t.Fatal("the copy succeeded with the target killed during it")
	}

	if _, st := instanceStatus(t, a, "K1"); st != "Running" {
		t.Errorf("source after the failed copy is %q, want Running", st)
	}
	if got := treeSummary(t, migSnapshotPath(a, "default", "K1", "s1")); got != before {
		t.Error("the source's snapshot changed")
	}
	// The source's operation has ended (failed), not stuck.
	if _, err := os.Stat(migVolumePath(a, "default", "K1")); err != nil {
		t.Errorf("source volume: %v", err)
	}

	b.Start()
	if status, _ := instanceStatus(t, b, "K1"); status != http.StatusNotFound {
		t.Errorf("target after restart: K1 status %d, want 404", status)
	}
	for _, p := range []string{migVolumePath(b, "default", "K1"), filepath.Join(b.Dir, "storage-pools", "default", "snapshots", "K1")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("target after restart still has %s (%v)", p, err)
		}
	}
	// And the same copy now works.
	a.MustC("copy", "a:K1", "b:K1", "--instance-only")
}

// LXD 5.0.2's own client copies and moves an instance between two celld.
func TestMigrationLXDClient(t *testing.T) {
	if _, err := exec.LookPath("lxc"); err != nil {
		t.Skip("lxc (lxd-client) is not installed")
	}
	a, b, _, _ := migrationHosts(t)
	makeMigrant(t, a, "L1", "", 1<<16)
	conf := t.TempDir()
	lxc := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("lxc", args...)
		cmd.Env = append(os.Environ(), "LXD_CONF="+conf, "HOME="+conf)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lxc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, h := range []struct {
		name string
		d    *harness.Daemon
	}{{"a", a}, {"b", b}} {
		token := strings.TrimSpace(h.d.MustC("config", "trust", "add", "--name", "lxd-"+h.name, "-q"))
		lxc("remote", "add", h.name, token)
	}
	// A running instance: stateless (live needs CRIU, not done yet).
	lxc("copy", "a:L1", "b:L1", "--stateless")
	if got := strings.Join(migSnapshotNames(t, b, "L1"), ","); got != "s1,s2" {
		t.Errorf("snapshots after lxc copy: %q", got)
	}
	a.MustC("stop", "L1", "--force")
	sameTrees(t, a, "default", "L1", b, "default", "L1", []string{"s1", "s2"})
	// Push mode: the source connects to the target.
	lxc("copy", "a:L1", "b:L3", "--mode", "push")
	sameTrees(t, a, "default", "L1", b, "default", "L3", []string{"s1", "s2"})
	lxc("move", "a:L1", "b:L2")
	if status, _ := instanceStatus(t, a, "L1"); status != http.StatusNotFound {
		t.Errorf("source after lxc move: status %d, want 404", status)
	}
	if status, _ := instanceStatus(t, b, "L2"); status != http.StatusOK {
		t.Errorf("target after lxc move: status %d", status)
	}
}

// A live move (`c move --stateful`): the counter process keeps counting
// on the target from where it was, the source has no trace left, and the
// source's operation says how long the instance was frozen.
func TestMigrationLiveMove(t *testing.T) {
	noCRIULeft(t)
	a, b, _, _ := migrationHosts(t)
	a.MustC("launch", "bb", "V1")
	pid := startCounter(t, a, "V1")
	before := waitCounter(t, a, "V1", 10)
	a.MustC("move", "a:V1", "b:V1", "--stateful")
	if status, _ := instanceStatus(t, a, "V1"); status != http.StatusNotFound {
		t.Errorf("source after a live move: status %d, want 404", status)
	}
	if a.LXCState("V1") != "" {
		t.Errorf("liblxc on the source still knows V1: %q", a.LXCState("V1"))
	}
	if _, st := instanceStatus(t, b, "V1"); st != "Running" {
		t.Fatalf("moved instance is %q, want Running", st)
	}
	after := readCounter(t, b, "V1")
	if after < before {
		t.Errorf("counter on the target = %d, was %d on the source: the process restarted", after, before)
	}
	if got := strings.TrimSpace(b.MustC("exec", "V1", "--", "cat", "/tmp/pid")); got != pid {
		t.Errorf("counter pid %s on the target, was %s", got, pid)
	}
	waitCounter(t, b, "V1", after+3)
	if statefulFlag(t, b, "V1") {
		t.Error("stateful still true on the target after the restore")
	}
	_, env := a.API("GET", "/1.0/operations?recursion=1", nil)
	var ops map[string][]api.Operation
	if err := json.Unmarshal(env.Metadata, &ops); err != nil {
		t.Fatal(err)
	}
	var downtime string
	for _, list := range ops {
		for _, op := range list {
			if s, ok := op.Metadata["downtime"].(string); ok {
				downtime = s
			}
		}
	}
	if _, err := time.ParseDuration(downtime); err != nil {
		t.Errorf("no downtime in the source's migration operation (%q): %v", downtime, err)
	}
	t.Logf("live move of an idle busybox container: downtime %s", downtime)
}
