package tests

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cell/tests/harness"
)

// cgroupV2Only is true on a host with only the unified cgroup hierarchy.
func cgroupV2Only() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupValue reads a cgroup file of a running container with lxc-cgroup:
// v1Key on a v1 or hybrid host, v2Key on a v2 host.
func cgroupValue(t *testing.T, d *harness.Daemon, name, v1Key, v2Key string) string {
	t.Helper()
	key := v1Key
	if cgroupV2Only() {
		key = v2Key
	}
	out, err := exec.Command("lxc-cgroup", "-n", name, "-P", filepath.Join(d.Dir, "lxc"), key).CombinedOutput()
	if err != nil {
		t.Fatalf("lxc-cgroup %s %s: %v: %s", name, key, err, out)
	}
	return strings.TrimSpace(string(out))
}

// stateView is the part of /state the limit tests read.
type stateView struct {
	Processes int64 `json:"processes"`
	CPU       struct {
		Usage int64 `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage int64 `json:"usage"`
	} `json:"memory"`
}

func instanceStateOf(t *testing.T, d *harness.Daemon, name string) stateView {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name+"/state", nil)
	if status != http.StatusOK {
		t.Fatalf("GET state of %s: %d %s", name, status, env.Error)
	}
	var s stateView
	if err := json.Unmarshal(env.Metadata, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLimitsMemory: a process allocating past limits.memory is killed
// inside the container, which keeps running; the limit changes live; a
// wrong unit is refused with nothing applied.
func TestLimitsMemory(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", map[string]string{"limits.memory": "64MiB"})
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got != "67108864" {
		t.Fatalf("memory limit in the cgroup = %s, want 67108864", got)
	}

	// A shell doubling a string up to 256MiB: killed on the way when the
	// limit holds, exits 0 when it does not.
	_, _, code := d.C("exec", "C01", "--", "sh", "-c", "x=0123456789abcdef; i=0; while [ $i -lt 24 ]; do x=$x$x; i=$((i+1)); done")
	if code != 137 {
		t.Fatalf("allocating past the limit exited %d, want 137 (killed)", code)
	}
	if out := d.MustC("exec", "C01", "--", "echo", "alive"); strings.TrimSpace(out) != "alive" {
		t.Fatalf("container after the OOM kill: %q", out)
	}
	wantState(t, d, "C01", "Running")
	if out := d.MustC("info", "C01"); !strings.Contains(out, "Memory (limit): 64MiB") {
		t.Errorf("c info does not show the limit:\n%s", out)
	}

	// Live, on the running container, through LXD's own client.
	if out, errOut, code := d.Run(nil, "lxc", "config", "set", "C01", "limits.memory", "96MiB"); code != 0 {
		t.Fatalf("lxc config set: exit %d %s%s", code, out, errOut)
	}
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got != "100663296" {
		t.Fatalf("memory limit after a live change = %s, want 100663296", got)
	}

	// A wrong unit: a 400 naming what is allowed, and nothing changed,
	// not even the valid key sent with it.
	_, errOut, code := d.C("config", "set", "C01", "limits.memory", "96furlongs")
	if code == 0 || !strings.Contains(errOut, "512MiB") {
		t.Fatalf("a wrong unit: exit %d, %q", code, errOut)
	}
	status, env := d.API("PATCH", "/1.0/instances/C01", map[string]any{"config": map[string]string{
		"limits.processes": "100", "limits.cpu.allowance": "50 percent"}})
	if status != http.StatusBadRequest || !strings.Contains(env.Error, "limits.cpu.allowance") {
		t.Fatalf("PATCH with a bad allowance: %d %q", status, env.Error)
	}
	if got := cgroupValue(t, d, "C01", "pids.max", "pids.max"); got != "max" {
		t.Errorf("a refused change still set pids.max to %s", got)
	}
	if cfg := getInstance(t, d, "C01").Config; cfg["limits.processes"] != "" || cfg["limits.memory"] != "96MiB" {
		t.Errorf("config after refused changes: %v", cfg)
	}

	// Unset: no limit any more.
	d.MustC("config", "unset", "C01", "limits.memory")
	if got := cgroupValue(t, d, "C01", "memory.limit_in_bytes", "memory.max"); got == "100663296" {
		t.Errorf("memory limit still %s after unset", got)
	}
}

// TestLimitsCPUAllowance: a container burning CPU under a 25% allowance
// gets well under one CPU, measured by its own CPU time over a window.
func TestLimitsCPUAllowance(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", map[string]string{"limits.cpu.allowance": "25%"})
	if got := cgroupValue(t, d, "C01", "cpu.cfs_quota_us", "cpu.max"); got != "25000" && got != "25000 100000" {
		t.Fatalf("cpu quota = %q", got)
	}
	d.MustC("exec", "C01", "--", "sh", "-c", "sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &")
	ratio := func() float64 {
		start, t0 := instanceStateOf(t, d, "C01").CPU.Usage, time.Now()
		time.Sleep(3 * time.Second)
		end, t1 := instanceStateOf(t, d, "C01").CPU.Usage, time.Now()
		return float64(end-start) / float64(t1.Sub(t0).Nanoseconds())
	}
	if r := ratio(); r > 0.4 || r < 0.02 {
		t.Fatalf("with a 25%% allowance the busy loop used %.0f%% of a CPU", r*100)
	}
	// Live: a time slice of 10ms in every 100ms.
	d.MustC("config", "set", "C01", "limits.cpu.allowance", "10ms/100ms")
	if r := ratio(); r > 0.2 {
		t.Fatalf("with a 10ms/100ms allowance the busy loop used %.0f%% of a CPU", r*100)
	}
	d.MustC("config", "unset", "C01", "limits.cpu.allowance")
	if got := cgroupValue(t, d, "C01", "cpu.cfs_quota_us", "cpu.max"); got != "-1" && !strings.HasPrefix(got, "max") {
		t.Fatalf("cpu quota after unset = %q", got)
	}
	d.MustC("stop", "-f", "C01")
}

// TestLimitsProcesses: a fork bomb inside a container with
// limits.processes stays under the limit while celld keeps answering.
func TestLimitsProcesses(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", map[string]string{"limits.processes": "30"})
	// A fork bomb bounded at depth 10 (2047 processes) so that a broken
	// limit fails the test without taking the host down.
	d.MustC("exec", "C01", "--", "sh", "-c",
		"b() { [ $1 -ge 10 ] && exec sleep 600; b $(($1+1)) | b $(($1+1)) & }; b 0 </dev/null >/dev/null 2>&1 &")
	waitUntil(t, 30*time.Second, "the fork bomb to fill the container", func() bool {
		return instanceStateOf(t, d, "C01").Processes >= 25
	})
	for i := 0; i < 20; i++ {
		if n := instanceStateOf(t, d, "C01").Processes; n > 30 {
			t.Fatalf("%d processes in a container limited to 30", n)
		}
		if status, env := d.API("GET", "/1.0/instances?recursion=1", nil); status != http.StatusOK {
			t.Fatalf("celld during the fork bomb: %d %s", status, env.Error)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.MustC("stop", "-f", "C01")
	wantState(t, d, "C01", "Stopped")
}
