package tests

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"cell/tests/harness"
)

// Stateful stop/start and stateful snapshots with the real CRIU (through
// liblxc's lxc-checkpoint).

// startCounter starts, by exec, a detached process in the instance that
// counts in its own memory and writes the count to /tmp/c five times a
// second, and its pid to /tmp/pid. Detached (setsid, stdio on /dev/null):
// a process still holding the exec's pipes could not be checkpointed.
func startCounter(t *testing.T, d *harness.Daemon, name string) (pid string) {
	t.Helper()
	d.MustC("exec", name, "--", "sh", "-c",
		`setsid sh -c 'echo $$ > /tmp/pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.2; done' </dev/null >/dev/null 2>&1 &`)
	waitCounter(t, d, name, 10)
	return strings.TrimSpace(d.MustC("exec", name, "--", "cat", "/tmp/pid"))
}

// readCounter reads the counter's last value.
func readCounter(t *testing.T, d *harness.Daemon, name string) int {
	t.Helper()
	out, _, code := d.C("exec", name, "--", "cat", "/tmp/c")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil {
		return -1
	}
	return n
}

// waitCounter waits until the counter reaches at least min.
func waitCounter(t *testing.T, d *harness.Daemon, name string, min int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if n := readCounter(t, d, name); n >= min {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter in %s did not reach %d (last %d)", name, min, readCounter(t, d, name))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// criuProcesses lists the criu processes running on the host.
func criuProcesses() []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range dirs {
		if comm, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(comm)) == "criu" {
			out = append(out, filepath.Base(filepath.Dir(p)))
		}
	}
	return out
}

// noCRIULeft fails the test if a criu process is still running when it ends.
func noCRIULeft(t *testing.T) {
	t.Cleanup(func() {
		if left := criuProcesses(); len(left) > 0 {
			t.Errorf("criu processes left behind: %v", left)
		}
	})
}

// statefulFlag reads the instance's "stateful" as the API shows it.
func statefulFlag(t *testing.T, d *harness.Daemon, name string) bool {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name, nil)
	if status != http.StatusOK {
		t.Fatalf("GET instance %s: %d %s", name, status, env.Error)
	}
	var v struct {
		Stateful bool `json:"stateful"`
	}
	if err := json.Unmarshal(env.Metadata, &v); err != nil {
		t.Fatal(err)
	}
	return v.Stateful
}

func TestStatefulStopStart(t *testing.T) {
	noCRIULeft(t)
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", nil)
	pid := startCounter(t, d, "C01")
	before := waitCounter(t, d, "C01", 20)
	stateDir := filepath.Join(d.Dir, "storage-pools", "default", "containers", "C01", "state")

	start := time.Now()
	d.MustC("stop", "C01", "--stateful")
	t.Logf("checkpoint (stateful stop) of an idle busybox container: %s", time.Since(start))
	if st := getInstance(t, d, "C01").Status; st != "Stopped" {
		t.Fatalf("status after stateful stop = %s, want Stopped", st)
	}
	if !statefulFlag(t, d, "C01") {
		t.Fatal("stateful = false after a stateful stop")
	}
	if _, err := os.Stat(filepath.Join(stateDir, "inventory.img")); err != nil {
		t.Fatalf("no checkpoint in the instance's volume: %v", err)
	}

	start = time.Now()
	d.MustC("start", "C01")
	t.Logf("restore (stateful start) of an idle busybox container: %s", time.Since(start))
	after := readCounter(t, d, "C01")
	if after < before {
		t.Fatalf("counter after restore = %d, was %d before the stop: the process did not resume", after, before)
	}
	if got := strings.TrimSpace(d.MustC("exec", "C01", "--", "cat", "/tmp/pid")); got != pid {
		t.Fatalf("counter pid file says %s, want %s", got, pid)
	}
	// The same process, with its memory, keeps counting.
	d.MustC("exec", "C01", "--", "kill", "-0", pid)
	waitCounter(t, d, "C01", after+5)
	if statefulFlag(t, d, "C01") {
		t.Fatal("stateful still true after the state was restored")
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Fatalf("checkpoint not removed after the restore: %v", err)
	}
	if left := criuProcesses(); len(left) > 0 {
		t.Fatalf("criu processes left after restore: %v", left)
	}

	// A stateful start with no saved state is refused, saying why.
	if _, stderr, code := d.C("stop", "C01", "--stateful"); code != 0 {
		t.Fatalf("second stateful stop: %s", stderr)
	}
	// --stateless boots afresh and drops the state.
	d.MustC("start", "C01", "--stateless")
	if statefulFlag(t, d, "C01") {
		t.Fatal("stateful still true after a --stateless start")
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		t.Fatalf("checkpoint not discarded by --stateless: %v", err)
	}
	if n := readCounter(t, d, "C01"); n != -1 {
		// A cold boot: the counter process is gone (and /tmp is a tmpfs
		// or still holds the old value, which must not change).
		time.Sleep(time.Second)
		if m := readCounter(t, d, "C01"); m != n {
			t.Fatalf("counter still running after a --stateless start (%d -> %d)", n, m)
		}
	}
	d.MustC("stop", "C01", "-f")
	if _, stderr, code := d.C("start", "C01", "--stateful"); code == 0 || !strings.Contains(stderr, "no saved running state") {
		t.Fatalf("stateful start without a saved state: code %d, %q", code, stderr)
	}

	// LXD's own client: `lxc stop --stateful`, and `lxc start` resumes (it
	// asks for a stateful start when the instance shows "stateful").
	mustLXC(t, d, "start", "C01")
	pid = startCounter(t, d, "C01")
	before = waitCounter(t, d, "C01", 15)
	mustLXC(t, d, "stop", "C01", "--stateful")
	mustLXC(t, d, "start", "C01")
	if after := readCounter(t, d, "C01"); after < before {
		t.Fatalf("lxc stop --stateful / lxc start: counter %d, was %d", after, before)
	}
	if got := strings.TrimSpace(d.MustC("exec", "C01", "--", "cat", "/tmp/pid")); got != pid {
		t.Fatalf("lxc start: counter pid %s, want %s", got, pid)
	}
}

func TestStatefulRestoreFailureKeepsCheckpoint(t *testing.T) {
	noCRIULeft(t)
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", nil)
	startCounter(t, d, "C01")
	d.MustC("stop", "C01", "--stateful")
	stateDir := filepath.Join(d.Dir, "storage-pools", "default", "containers", "C01", "state")
	// Corrupt the saved process tree: CRIU cannot restore it.
	if err := os.WriteFile(filepath.Join(stateDir, "pstree.img"), []byte("not a criu image"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := d.C("start", "C01")
	if code == 0 {
		t.Fatal("start from a corrupt checkpoint succeeded")
	}
	if !strings.Contains(stderr, "saved state is kept") || !strings.Contains(stderr, "restore") {
		t.Fatalf("restore failure message does not say what failed: %q", stderr)
	}
	if st := getInstance(t, d, "C01").Status; st != "Stopped" {
		t.Fatalf("status after a failed restore = %s, want Stopped", st)
	}
	if got := d.LXCState("C01"); got != "STOPPED" {
		t.Fatalf("liblxc state after a failed restore = %q", got)
	}
	if !statefulFlag(t, d, "C01") {
		t.Fatal("stateful dropped by a failed restore")
	}
	if data, err := os.ReadFile(filepath.Join(stateDir, "pstree.img")); err != nil || string(data) != "not a criu image" {
		t.Fatalf("checkpoint not kept as it was: %v", err)
	}
	if left := criuProcesses(); len(left) > 0 {
		t.Fatalf("criu processes left after a failed restore: %v", left)
	}
	// The way out: boot afresh.
	d.MustC("start", "C01", "--stateless")
	if st := getInstance(t, d, "C01").Status; st != "Running" {
		t.Fatalf("status after --stateless start = %s", st)
	}
}

func TestStatefulSnapshot(t *testing.T) {
	noCRIULeft(t)
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", nil)
	pid := startCounter(t, d, "C01")
	waitCounter(t, d, "C01", 10)
	d.MustC("snapshot", "C01", "live1", "--stateful")
	atSnap := readCounter(t, d, "C01")
	// The instance kept running through the snapshot, and its volume
	// keeps no checkpoint (the snapshot has it).
	later := waitCounter(t, d, "C01", atSnap+25)
	vol := filepath.Join(d.Dir, "storage-pools", "default")
	if _, err := os.Stat(filepath.Join(vol, "containers", "C01", "state")); !os.IsNotExist(err) {
		t.Fatalf("checkpoint left in the instance's volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(vol, "snapshots", "C01", "live1", "state", "inventory.img")); err != nil {
		t.Fatalf("snapshot holds no checkpoint: %v", err)
	}
	status, env := d.API("GET", "/1.0/instances/C01/snapshots/live1", nil)
	if status != http.StatusOK || !strings.Contains(string(env.Metadata), `"stateful":true`) {
		t.Fatalf("snapshot is not shown as stateful: %d %s", status, env.Metadata)
	}

	d.MustC("restore", "C01", "live1", "--stateful")
	resumed := readCounter(t, d, "C01")
	// Resumed from the snapshot's memory: back near the value at snapshot
	// time, not the later one, and not from 0 either.
	if resumed >= later || resumed < atSnap-5 {
		t.Fatalf("counter after stateful restore = %d; at snapshot %d, before restore %d", resumed, atSnap, later)
	}
	if got := strings.TrimSpace(d.MustC("exec", "C01", "--", "cat", "/tmp/pid")); got != pid {
		t.Fatalf("pid after restore %s, want %s", got, pid)
	}
	waitCounter(t, d, "C01", resumed+5)
	if statefulFlag(t, d, "C01") {
		t.Fatal("instance stateful after the snapshot's state was resumed")
	}

	// A stateless snapshot cannot be restored statefully; a stopped
	// instance cannot be snapshotted statefully.
	d.MustC("snapshot", "C01", "plain")
	if _, stderr, code := d.C("restore", "C01", "plain", "--stateful"); code == 0 || !strings.Contains(stderr, "no running state") {
		t.Fatalf("stateful restore of a stateless snapshot: %d %q", code, stderr)
	}
	d.MustC("stop", "C01", "-f")
	if _, stderr, code := d.C("snapshot", "C01", "live2", "--stateful"); code == 0 || !strings.Contains(stderr, "not running") {
		t.Fatalf("stateful snapshot of a stopped instance: %d %q", code, stderr)
	}
}

// A systemd container keeps ramfs mounts for service credentials, which
// CRIU cannot save: the stateful stop is refused, saying why, and the
// instance keeps running untouched.
func TestStatefulSystemdRefused(t *testing.T) {
	noCRIULeft(t)
	image := harness.DebianImage(t)
	d := harness.StartDaemon(t)
	d.ImportImage(image, "debian")
	d.Launch("debian", "D1", nil)
	waitSystemRunning(t, d, "D1")
	_, stderr, code := d.C("stop", "D1", "--stateful")
	if code == 0 {
		t.Fatal("stateful stop of a systemd container with credential mounts succeeded")
	}
	if !strings.Contains(stderr, "ramfs") || !strings.Contains(stderr, "/run/credentials/") {
		t.Fatalf("refusal does not say why: %q", stderr)
	}
	if st := getInstance(t, d, "D1").Status; st != "Running" {
		t.Fatalf("status after the refused stateful stop = %s, want Running", st)
	}
	if statefulFlag(t, d, "D1") {
		t.Fatal("stateful set by a refused stateful stop")
	}
	if _, err := os.Stat(filepath.Join(d.Dir, "storage-pools", "default", "containers", "D1", "state")); !os.IsNotExist(err) {
		t.Fatalf("checkpoint dir left by a refused stateful stop: %v", err)
	}
	d.MustC("exec", "D1", "--", "systemctl", "is-system-running")
}
