package tests

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// uidMap reads the uid map of a running container's init from the
// kernel: "HOSTBASE SIZE" of its single range.
func uidMap(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) != 3 || f[0] != "0" {
		t.Fatalf("uid_map of %d: %q", pid, data)
	}
	return f[1] + " " + f[2]
}

// TestSecurityIsolatedIdmaps: 20 containers with security.idmap.isolated
// run with pairwise disjoint uid ranges, none overlapping the range shared
// by the others, and keep them across a restart of celld and of
// themselves; a security.idmap.base on a used range is refused.
func TestSecurityIsolatedIdmaps(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "shared", nil)
	names := []string{"shared"}
	for i := 1; i <= 20; i++ {
		name := fmt.Sprintf("iso%02d", i)
		d.Launch("bb", name, map[string]string{"security.idmap.isolated": "true"})
		names = append(names, name)
	}
	maps := func() map[string][2]int64 {
		out := map[string][2]int64{}
		for _, n := range names {
			v := getInstance(t, d, n)
			var base, size int64
			if _, err := fmt.Sscanf(uidMap(t, v.State.Pid), "%d %d", &base, &size); err != nil {
				t.Fatal(err)
			}
			if cur := v.Config["volatile.idmap.current"]; !strings.HasPrefix(cur, fmt.Sprintf("u:0:%d:%d,", base, size)) {
				t.Errorf("%s: volatile.idmap.current %q, kernel map %d %d", n, cur, base, size)
			}
			out[n] = [2]int64{base, size}
		}
		return out
	}
	before := maps()
	for i, a := range names {
		if before[a][1] != 65536 {
			t.Errorf("%s has %d ids, want 65536", a, before[a][1])
		}
		for _, b := range names[i+1:] {
			ra, rb := before[a], before[b]
			if ra[0] < rb[0]+rb[1] && rb[0] < ra[0]+ra[1] {
				t.Errorf("%s %v and %s %v overlap", a, ra, b, rb)
			}
		}
	}

	restartDaemon(t, d)
	for _, n := range names[1:] {
		d.MustC("restart", "-f", n)
	}
	after := maps()
	for _, n := range names {
		if before[n] != after[n] {
			t.Errorf("%s: map %v before the restarts, %v after", n, before[n], after[n])
		}
	}

	// A fixed base on iso01's range: refused, nothing started.
	d.MustC("stop", "-f", "iso02")
	d.MustC("config", "set", "iso02", "security.idmap.base", fmt.Sprint(after["iso01"][0]))
	status, env := d.API("PUT", "/1.0/instances/iso02/state", map[string]string{"action": "start"})
	if status == http.StatusAccepted {
		op := d.Wait(env)
		if op.Err == "" || !strings.Contains(op.Err, "already used") {
			t.Fatalf("start on a used base: %+v", op)
		}
	} else if !strings.Contains(env.Error, "already used") {
		t.Fatalf("start on a used base: %d %q", status, env.Error)
	}
	wantState(t, d, "iso02", "Stopped")
	// A free one is taken as given.
	free := after["iso20"][0] + 10*65536
	d.MustC("config", "set", "iso02", "security.idmap.base", fmt.Sprint(free))
	d.MustC("start", "iso02")
	if got := uidMap(t, getInstance(t, d, "iso02").State.Pid); got != fmt.Sprintf("%d 65536", free) {
		t.Errorf("iso02 with base %d runs with %s", free, got)
	}
	if out := d.MustC("exec", "iso02", "--", "ls", "-ln", "/bin/busybox"); !strings.Contains(out, " 0 ") {
		t.Errorf("the rootfs was not shifted to the new map: %s", out)
	}
}

// TestSecuritySyscalls: security.syscalls.deny makes the listed calls
// fail inside the container, and only there.
func TestSecuritySyscalls(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "denied", map[string]string{"security.syscalls.deny": "mkdir,mkdirat"})
	d.Launch("bb", "free", nil)
	_, errOut, code := d.C("exec", "denied", "--", "mkdir", "/tmp/x")
	if code == 0 || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("mkdir with mkdir denied: exit %d %q", code, errOut)
	}
	d.MustC("exec", "free", "--", "mkdir", "/tmp/x")
	d.MustC("exec", "denied", "--", "touch", "/tmp/y") // other calls work

	_, errOut, code = d.C("config", "set", "free", "security.syscalls.deny", "mkdir;reboot")
	if code == 0 || !strings.Contains(errOut, "syscall name") {
		t.Errorf("a bad syscall list: exit %d %q", code, errOut)
	}
}

// TestSecurityNesting: with security.nesting a container gets /proc and
// /sys as lxc's proc:rw sys:rw give them, without the read-only overmount
// of /proc/sys that a nested container manager cannot work under.
func TestSecurityNesting(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "nest", map[string]string{"security.nesting": "true"})
	d.Launch("bb", "flat", nil)
	roSys := func(name string) bool {
		out := d.MustC("exec", name, "--", "cat", "/proc/self/mounts")
		return strings.Contains(out, "proc /proc/sys proc ro")
	}
	if roSys("nest") {
		t.Errorf("with nesting /proc/sys is still read-only")
	}
	if !roSys("flat") {
		t.Errorf("without nesting /proc/sys is writable")
	}
}
