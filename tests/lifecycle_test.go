package tests

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"cell/tests/harness"
)

// Helpers shared by compat_test.go, lifecycle_test.go, exec_test.go and
// debian_test.go.

// busyboxDaemon starts a celld with the busybox image imported as "bb".
func busyboxDaemon(t *testing.T) *harness.Daemon {
	t.Helper()
	d := harness.StartDaemon(t)
	d.ImportImage(harness.BusyboxImage(t), "bb")
	return d
}

// instanceView is the part of GET /1.0/instances/NAME?recursion=1 the
// tests look at.
type instanceView struct {
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	Config     map[string]string `json:"config"`
	LastUsedAt time.Time         `json:"last_used_at"`
	State      struct {
		Status string `json:"status"`
		Pid    int    `json:"pid"`
	} `json:"state"`
}

// getInstance returns an instance as the API shows it.
func getInstance(t *testing.T, d *harness.Daemon, name string) instanceView {
	t.Helper()
	status, env := d.API("GET", "/1.0/instances/"+name+"?recursion=1", nil)
	if status != http.StatusOK {
		t.Fatalf("GET instance %s: %d %s", name, status, env.Error)
	}
	var v instanceView
	if err := json.Unmarshal(env.Metadata, &v); err != nil {
		t.Fatalf("decode instance %s: %v", name, err)
	}
	return v
}

// createInstance creates a (stopped) instance from the busybox alias.
func createInstance(t *testing.T, d *harness.Daemon, name string, config map[string]string) {
	t.Helper()
	if config == nil {
		config = map[string]string{}
	}
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": name, "config": config, "source": map[string]string{"type": "image", "alias": "bb"}})
}

// changeState runs a state action (start, stop, ...) and fails the test
// unless it succeeds.
func changeState(t *testing.T, d *harness.Daemon, name, action string, extra map[string]any) {
	t.Helper()
	body := map[string]any{"action": action}
	for k, v := range extra {
		body[k] = v
	}
	d.MustSucceed("PUT", "/1.0/instances/"+name+"/state", body)
}

// wantState checks an instance's state both in the API ("Running") and in
// liblxc's own view ("RUNNING").
func wantState(t *testing.T, d *harness.Daemon, name, apiStatus string) {
	t.Helper()
	if got := getInstance(t, d, name).Status; got != apiStatus {
		t.Errorf("%s: API status %q, want %q", name, got, apiStatus)
	}
	got, want := d.LXCState(name), strings.ToUpper(apiStatus)
	if got == "" && want == "STOPPED" {
		// lxc-info knows only containers with a config, written at the
		// first start: one never started must have none.
		if _, err := os.Stat(filepath.Join(d.Dir, "lxc", name, "config")); err == nil {
			t.Errorf("%s: lxc-info cannot read the state of a configured container", name)
		}
		return
	}
	if got != want {
		t.Errorf("%s: liblxc state %q, want %q", name, got, want)
	}
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// haltMark is written by busybox init's shutdown action (see
// markedInittab): it exists only if init went through a clean halt, never
// after a kill.
const haltMark = "/root/halted"

// markedInittab is the busybox image's inittab with a shutdown action that
// leaves haltMark behind.
const markedInittab = `::sysinit:/etc/init.d/rcS
::respawn:/bin/sleep 2147483647
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/touch ` + haltMark + `
::shutdown:/bin/sync
`

// launchMarked creates an instance whose clean halts leave haltMark, and
// starts it.
func launchMarked(t *testing.T, d *harness.Daemon, name string, config map[string]string) {
	t.Helper()
	createInstance(t, d, name, config)
	pushFile(t, d, name, "/etc/inittab", markedInittab)
	changeState(t, d, name, "start", nil)
}

// pushFile writes a file into an instance with the file API.
func pushFile(t *testing.T, d *harness.Daemon, name, path, content string) {
	t.Helper()
	if status, env := d.API("POST", "/1.0/instances/"+name+"/files?path="+path, content); status != http.StatusOK {
		t.Fatalf("push %s to %s: %d %s", path, name, status, env.Error)
	}
}

// pushFileMode writes a file with the given mode into an instance.
func pushFileMode(t *testing.T, d *harness.Daemon, name, path, content, mode string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://celld/1.0/instances/"+name+"/files?path="+path, strings.NewReader(content))
	req.Header.Set("X-LXD-mode", mode)
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("push %s to %s: status %d", path, name, resp.StatusCode)
	}
}

// haltedCleanly reports whether the instance's init went through its
// shutdown actions since the mark was last cleared, and clears it.
func haltedCleanly(t *testing.T, d *harness.Daemon, name string) bool {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://celld/1.0/instances/"+name+"/files?path="+haltMark, nil)
	resp, err := d.HTTP().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if status, env := d.API("DELETE", "/1.0/instances/"+name+"/files?path="+haltMark, nil); status != http.StatusOK {
			t.Fatalf("delete %s: %d %s", haltMark, status, env.Error)
		}
		return true
	case http.StatusNotFound:
		return false
	default:
		t.Fatalf("GET %s of %s: status %d", haltMark, name, resp.StatusCode)
		return false
	}
}

// dialWebsocket opens a websocket to the daemon's API over its unix socket.
func dialWebsocket(t *testing.T, d *harness.Daemon, path string) *websocket.Conn {
	t.Helper()
	sock := d.Socket()
	dialer := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		HandshakeTimeout: 10 * time.Second,
	}
	conn, resp, err := dialer.Dial("ws://celld"+path, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket %s: %v (HTTP %d)", path, err, status)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// event is an /1.0/events message with its metadata decoded loosely.
type event struct {
	Type     string         `json:"type"`
	Metadata map[string]any `json:"metadata"`
}

// eventStream collects the events of a /1.0/events websocket.
type eventStream struct {
	mu     sync.Mutex
	events []event
	cond   chan struct{} // signalled (non-blocking) on every new event
}

func listenEvents(t *testing.T, d *harness.Daemon, types string) *eventStream {
	t.Helper()
	path := "/1.0/events"
	if types != "" {
		path += "?type=" + types
	}
	conn := dialWebsocket(t, d, path)
	s := &eventStream{cond: make(chan struct{}, 1)}
	go func() {
		for {
			var ev event
			if err := conn.ReadJSON(&ev); err != nil {
				return
			}
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
			select {
			case s.cond <- struct{}{}:
			default:
			}
		}
	}()
	return s
}

// waitFor waits for an event that match accepts and returns it.
func (s *eventStream) waitFor(t *testing.T, what string, match func(event) bool) event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		for _, ev := range s.events {
			if match(ev) {
				s.mu.Unlock()
				return ev
			}
		}
		s.mu.Unlock()
		select {
		case <-s.cond:
		case <-deadline:
			t.Fatalf("no %s event within 30s", what)
		}
	}
}

// lifecycleActions returns the actions of the lifecycle events about source
// so far, in order.
func (s *eventStream) lifecycleActions(source string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.events {
		if ev.Type == "lifecycle" && ev.Metadata["source"] == source {
			out = append(out, ev.Metadata["action"].(string))
		}
	}
	return out
}

func isLifecycle(action, source string) func(event) bool {
	return func(ev event) bool {
		return ev.Type == "lifecycle" && ev.Metadata["action"] == action && ev.Metadata["source"] == source
	}
}

// TestLifecycleStates drives one busybox instance through start, clean
// stop, forced stop, restart, freeze and unfreeze, checking the API and
// liblxc agree after each step.
func TestLifecycleStates(t *testing.T) {
	d := busyboxDaemon(t)
	launchMarked(t, d, "c1", nil)
	wantState(t, d, "c1", "Running")
	if haltedCleanly(t, d, "c1") {
		t.Fatal("halt mark present before any stop")
	}

	t.Run("clean stop halts init", func(t *testing.T) {
		start := time.Now()
		// A long timeout: had init not halted by itself, the stop would take
		// all of it before the kill.
		changeState(t, d, "c1", "stop", map[string]any{"timeout": 60})
		wantState(t, d, "c1", "Stopped")
		if !haltedCleanly(t, d, "c1") {
			t.Error("init did not run its shutdown actions: the stop was not a clean halt")
		}
		if took := time.Since(start); took >= 60*time.Second {
			t.Errorf("clean stop took %s: the container was killed at the timeout", took)
		}
		if p := getInstance(t, d, "c1").Config["volatile.last_state.power"]; p != "STOPPED" {
			t.Errorf("volatile.last_state.power after a user stop = %q, want STOPPED", p)
		}
	})

	t.Run("stop when stopped is refused", func(t *testing.T) {
		status, env := d.API("PUT", "/1.0/instances/c1/state", map[string]any{"action": "stop"})
		if status == http.StatusAccepted {
			op := d.Wait(env)
			if op.StatusCode == 200 {
				t.Fatal("stopping a stopped instance succeeded")
			}
		} else if status != http.StatusBadRequest {
			t.Fatalf("stop of a stopped instance: status %d, want 400", status)
		}
	})

	t.Run("start", func(t *testing.T) {
		changeState(t, d, "c1", "start", nil)
		wantState(t, d, "c1", "Running")
		if p := getInstance(t, d, "c1").Config["volatile.last_state.power"]; p != "RUNNING" {
			t.Errorf("volatile.last_state.power after start = %q, want RUNNING", p)
		}
	})

	t.Run("force stop kills without halting", func(t *testing.T) {
		changeState(t, d, "c1", "stop", map[string]any{"force": true})
		wantState(t, d, "c1", "Stopped")
		if haltedCleanly(t, d, "c1") {
			t.Error("a forced stop ran init's shutdown actions: it should kill at once")
		}
	})

	t.Run("restart gives a new init", func(t *testing.T) {
		changeState(t, d, "c1", "start", nil)
		before := getInstance(t, d, "c1").State.Pid
		changeState(t, d, "c1", "restart", map[string]any{"timeout": 60})
		wantState(t, d, "c1", "Running")
		after := getInstance(t, d, "c1").State.Pid
		if before <= 0 || after <= 0 || before == after {
			t.Errorf("init pid before restart %d, after %d: want two different live pids", before, after)
		}
		if !haltedCleanly(t, d, "c1") {
			t.Error("restart did not halt init cleanly")
		}
	})

	t.Run("freeze and unfreeze", func(t *testing.T) {
		changeState(t, d, "c1", "freeze", nil)
		wantState(t, d, "c1", "Frozen")
		status, env := d.API("PUT", "/1.0/instances/c1/state", map[string]any{"action": "start"})
		if status == http.StatusAccepted {
			if op := d.Wait(env); op.StatusCode == 200 {
				t.Error("start of a frozen instance succeeded")
			}
		}
		changeState(t, d, "c1", "unfreeze", nil)
		wantState(t, d, "c1", "Running")
	})

	t.Run("stop of a frozen instance", func(t *testing.T) {
		changeState(t, d, "c1", "freeze", nil)
		changeState(t, d, "c1", "stop", map[string]any{"timeout": 60})
		wantState(t, d, "c1", "Stopped")
		if !haltedCleanly(t, d, "c1") {
			t.Error("stopping a frozen instance did not halt it cleanly")
		}
	})
}

// TestLifecycleStopTimeout: an init that ignores its halt signal is killed
// once the request's timeout has passed, not before and not at the default.
func TestLifecycleStopTimeout(t *testing.T) {
	d := busyboxDaemon(t)
	// Busybox init has no handler for SIGWINCH, and the kernel drops a
	// signal without a handler sent to a pid namespace's init.
	launchMarked(t, d, "deaf", map[string]string{"raw.lxc": "lxc.signal.halt = SIGWINCH"})
	wantState(t, d, "deaf", "Running")
	start := time.Now()
	changeState(t, d, "deaf", "stop", map[string]any{"timeout": 2})
	took := time.Since(start)
	wantState(t, d, "deaf", "Stopped")
	if haltedCleanly(t, d, "deaf") {
		t.Error("init halted although it ignores the halt signal: the test proves nothing")
	}
	if took < 2*time.Second {
		t.Errorf("stop took %s: the kill came before the 2s timeout", took)
	}
	if took > 20*time.Second {
		t.Errorf("stop took %s: the request's 2s timeout was not used", took)
	}
}

// slowInit runs as the container's init for a second before it becomes
// busybox init: until then nothing handles the halt signal.
const slowInit = "#!/bin/sh\nsleep 1\nexec /bin/busybox init\n"

// TestLifecycleStopEarly: a stop that comes before init handles its halt
// signal (a pid namespace's init drops signals it has no handler for, as
// happens right after a start) still halts it cleanly, instead of waiting
// for the whole timeout and killing it.
func TestLifecycleStopEarly(t *testing.T) {
	d := busyboxDaemon(t)
	createInstance(t, d, "early", map[string]string{"raw.lxc": "lxc.init.cmd = /sbin/slowinit"})
	pushFile(t, d, "early", "/etc/inittab", markedInittab)
	pushFileMode(t, d, "early", "/sbin/slowinit", slowInit, "0755")
	changeState(t, d, "early", "start", nil)
	start := time.Now()
	changeState(t, d, "early", "stop", map[string]any{"timeout": 30})
	took := time.Since(start)
	t.Logf("stop took %s", took)
	wantState(t, d, "early", "Stopped")
	if !haltedCleanly(t, d, "early") {
		t.Errorf("a stop right after start was not a clean halt (took %s): the halt signal was lost", took)
	}
}

// TestLifecycleRenameDelete: rename only when stopped, then delete.
func TestLifecycleRenameDelete(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "old", nil)
	createInstance(t, d, "other", nil)

	status, env := d.API("POST", "/1.0/instances/old", map[string]any{"name": "new"})
	if status != http.StatusBadRequest {
		t.Errorf("rename of a running instance: status %d (%s), want 400", status, env.Error)
	}
	wantState(t, d, "old", "Running")

	changeState(t, d, "old", "stop", map[string]any{"force": true})
	status, env = d.API("POST", "/1.0/instances/old", map[string]any{"name": "other"})
	if status != http.StatusConflict {
		t.Errorf("rename onto an existing name: status %d (%s), want 409", status, env.Error)
	}
	d.MustSucceed("POST", "/1.0/instances/old", map[string]any{"name": "new"})
	if status, _ := d.API("GET", "/1.0/instances/old", nil); status != http.StatusNotFound {
		t.Errorf("old name still answers %d after rename", status)
	}
	changeState(t, d, "new", "start", nil)
	wantState(t, d, "new", "Running")
	if _, code := execCommand(t, d, "new", "true"); code != 0 {
		t.Errorf("exec in the renamed instance: exit %d", code)
	}
	// The container gets its new name; /etc/hostname (rendered at creation)
	// is the instance's own business, as with LXD.
	if cfg, err := os.ReadFile(filepath.Join(d.Dir, "lxc", "new", "config")); err != nil || !strings.Contains(string(cfg), "lxc.uts.name = new\n") {
		t.Errorf("lxc config of the renamed instance lacks lxc.uts.name = new (%v)", err)
	}

	status, env = d.API("DELETE", "/1.0/instances/new", nil)
	if status != http.StatusBadRequest {
		t.Errorf("delete of a running instance: status %d (%s), want 400", status, env.Error)
	}
	changeState(t, d, "new", "stop", map[string]any{"force": true})
	d.MustSucceed("DELETE", "/1.0/instances/new", nil)
	if status, _ := d.API("GET", "/1.0/instances/new", nil); status != http.StatusNotFound {
		t.Errorf("deleted instance still answers %d", status)
	}
	for _, p := range []string{
		filepath.Join(d.Dir, "lxc", "new"),
		filepath.Join(d.Dir, "storage-pools", "default", "containers", "new"),
		filepath.Join(d.Dir, "storage-pools", "default", "containers", "old"),
	} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left behind after delete", p)
		}
	}
}

// restartDaemon stops celld with SIGTERM (containers keep running) and
// starts it again.
func restartDaemon(t *testing.T, d *harness.Daemon) {
	t.Helper()
	if err := d.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.Start()
}

// TestLifecycleAutostart: boot.autostart=true instances are started when
// celld starts, highest boot.autostart.priority first; others stay stopped.
func TestLifecycleAutostart(t *testing.T) {
	d := busyboxDaemon(t)
	createInstance(t, d, "low", map[string]string{"boot.autostart": "true", "boot.autostart.priority": "1"})
	createInstance(t, d, "high", map[string]string{"boot.autostart": "true", "boot.autostart.priority": "10"})
	createInstance(t, d, "manual", nil)
	createInstance(t, d, "never", map[string]string{"boot.autostart": "false"})
	restartDaemon(t, d)
	waitUntil(t, 30*time.Second, "autostart of high and low", func() bool {
		return getInstance(t, d, "high").Status == "Running" && getInstance(t, d, "low").Status == "Running"
	})
	wantState(t, d, "high", "Running")
	wantState(t, d, "low", "Running")
	wantState(t, d, "manual", "Stopped")
	wantState(t, d, "never", "Stopped")
	high, low := getInstance(t, d, "high").LastUsedAt, getInstance(t, d, "low").LastUsedAt
	if !high.Before(low) {
		t.Errorf("priority 10 started at %s, priority 1 at %s: want the higher priority first", high, low)
	}
}

// runCelld runs the celld binary of d with a command (shutdown, ...).
func runCelld(t *testing.T, d *harness.Daemon, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(d.Bin, "celld"), args...)
	cmd.Env = append(os.Environ(), "CELL_DIR="+d.Dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("celld %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestLifecycleHostShutdown: `celld shutdown` and SIGPWR stop every
// container cleanly and keep their power state, so the next start brings
// back what was running; SIGTERM leaves containers running.
func TestLifecycleHostShutdown(t *testing.T) {
	d := busyboxDaemon(t)
	launchMarked(t, d, "run1", nil)
	launchMarked(t, d, "run2", nil)
	launchMarked(t, d, "pinned", map[string]string{"boot.autostart": "false"})
	launchMarked(t, d, "off", nil)
	changeState(t, d, "off", "stop", map[string]any{"timeout": 60})
	haltedCleanly(t, d, "off")

	checkDown := func(t *testing.T) {
		t.Helper()
		for _, name := range []string{"run1", "run2", "pinned", "off"} {
			if s := d.LXCState(name); s != "STOPPED" {
				t.Errorf("%s: liblxc state %q after host shutdown, want STOPPED", name, s)
			}
		}
	}
	checkBack := func(t *testing.T) {
		t.Helper()
		waitUntil(t, 30*time.Second, "run1 and run2 back", func() bool {
			return getInstance(t, d, "run1").Status == "Running" && getInstance(t, d, "run2").Status == "Running"
		})
		for _, name := range []string{"run1", "run2", "pinned"} {
			if !haltedCleanly(t, d, name) {
				t.Errorf("%s was not halted cleanly by the host shutdown", name)
			}
		}
		if haltedCleanly(t, d, "off") {
			t.Error("off, already stopped, was halted again")
		}
		wantState(t, d, "run1", "Running")
		wantState(t, d, "run2", "Running")
		wantState(t, d, "pinned", "Stopped")
		wantState(t, d, "off", "Stopped")
		// The host, not the user, stopped pinned: it stays RUNNING, and only
		// boot.autostart=false keeps it down.
		if p := getInstance(t, d, "pinned").Config["volatile.last_state.power"]; p != "RUNNING" {
			t.Errorf("pinned: volatile.last_state.power = %q after host shutdown, want RUNNING", p)
		}
		if p := getInstance(t, d, "off").Config["volatile.last_state.power"]; p != "STOPPED" {
			t.Errorf("off: volatile.last_state.power = %q, want STOPPED", p)
		}
	}

	t.Run("celld shutdown", func(t *testing.T) {
		runCelld(t, d, "shutdown")
		select {
		case <-d.Exited():
		case <-time.After(30 * time.Second):
			t.Fatal("celld still running 30s after `celld shutdown` returned")
		}
		checkDown(t)
		d.Start()
		checkBack(t)
		changeState(t, d, "pinned", "start", nil)
	})

	t.Run("SIGPWR", func(t *testing.T) {
		if err := d.Signal(syscall.SIGPWR, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		checkDown(t)
		d.Start()
		checkBack(t)
	})

	t.Run("SIGTERM leaves containers running", func(t *testing.T) {
		pid := getInstance(t, d, "run1").State.Pid
		if err := d.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if s := d.LXCState("run1"); s != "RUNNING" {
			t.Errorf("run1: liblxc state %q with celld stopped by SIGTERM, want RUNNING", s)
		}
		d.Start()
		wantState(t, d, "run1", "Running")
		if again := getInstance(t, d, "run1").State.Pid; again != pid {
			t.Errorf("run1's init changed from pid %d to %d across a daemon restart", pid, again)
		}
		if haltedCleanly(t, d, "run1") {
			t.Error("run1 was halted by a SIGTERM to celld")
		}
	})
}

// TestLifecycleEvents: /1.0/events delivers lifecycle events for start and
// stop and the operation events of the requests.
func TestLifecycleEvents(t *testing.T) {
	d := busyboxDaemon(t)
	createInstance(t, d, "ev", nil)
	all := listenEvents(t, d, "")
	lifecycleOnly := listenEvents(t, d, "lifecycle")
	logging := listenEvents(t, d, "logging")

	status, env := d.API("PUT", "/1.0/instances/ev/state", map[string]any{"action": "start"})
	if status != http.StatusAccepted {
		t.Fatalf("start: %d %s", status, env.Error)
	}
	startOp := d.Wait(env)
	if startOp.StatusCode != 200 {
		t.Fatalf("start failed: %s", startOp.Err)
	}
	all.waitFor(t, "instance-started", isLifecycle("instance-started", "/1.0/instances/ev"))
	lifecycleOnly.waitFor(t, "instance-started", isLifecycle("instance-started", "/1.0/instances/ev"))
	logging.waitFor(t, "a log record of the start", func(ev event) bool {
		ctx, _ := ev.Metadata["context"].(map[string]any)
		return ev.Type == "logging" && ev.Metadata["level"] == "info" && ctx["source"] == "/1.0/instances/ev"
	})
	all.waitFor(t, "operation success", func(ev event) bool {
		return ev.Type == "operation" && ev.Metadata["id"] == startOp.ID && ev.Metadata["status"] == "Success"
	})
	all.waitFor(t, "operation running", func(ev event) bool {
		return ev.Type == "operation" && ev.Metadata["id"] == startOp.ID && ev.Metadata["status"] == "Running"
	})

	changeState(t, d, "ev", "stop", map[string]any{"force": true})
	all.waitFor(t, "instance-stopped", isLifecycle("instance-stopped", "/1.0/instances/ev"))
	lifecycleOnly.waitFor(t, "instance-stopped", isLifecycle("instance-stopped", "/1.0/instances/ev"))
	got := lifecycleOnly.lifecycleActions("/1.0/instances/ev")
	if strings.Join(got, ",") != "instance-started,instance-stopped" {
		t.Errorf("lifecycle events of ev: %v, want [instance-started instance-stopped]", got)
	}
	lifecycleOnly.mu.Lock()
	for _, ev := range lifecycleOnly.events {
		if ev.Type != "lifecycle" {
			t.Errorf("a type=lifecycle listener got a %q event", ev.Type)
		}
	}
	lifecycleOnly.mu.Unlock()
}
