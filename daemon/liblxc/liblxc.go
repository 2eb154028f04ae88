// Package liblxc runs containers with liblxc: it writes each container's
// lxc config, starts it with lxc-start, and controls it (state, stop,
// freeze, attach) through go-lxc.
//
// Containers are started by the lxc-start binary rather than go-lxc's
// Start: liblxc's start forks a long-lived monitor, and forking a
// multi-threaded Go process to run C code for the container's lifetime is
// unsafe. lxc-start is a small C program that daemonizes cleanly, holds none
// of celld's file descriptors, and keeps running when celld restarts.
package liblxc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lxc "github.com/lxc/go-lxc"
)

// Runtime manages the containers under one lxc path.
type Runtime struct {
	// Path is the lxc path: Path/NAME/config is each container's config.
	Path string
	// LogDir holds NAME/lxc.log for each container.
	LogDir string

	// handles keeps one loaded container per name for State, InitPID and
	// Stats, which instance listings ask for each instance. Loading parses
	// the whole generated config (about a millisecond), while the answers
	// come from the container's monitor and never from the config, so a
	// handle loaded once stays right until the container is removed or
	// renamed. Everything else loads afresh: it needs the current config.
	handlesMu sync.Mutex
	handles   map[string]*lxc.Container
}

// New prepares a runtime rooted at path.
func New(path, logDir string) (*Runtime, error) {
	for _, d := range []string{path, logDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return &Runtime{Path: path, LogDir: logDir}, nil
}

// Version is the liblxc version.
func Version() string { return lxc.Version() }

// State is the runtime state of a container.
type State string

// Container states as liblxc names them.
const (
	Stopped  State = "STOPPED"
	Starting State = "STARTING"
	Running  State = "RUNNING"
	Stopping State = "STOPPING"
	Aborting State = "ABORTING"
	Freezing State = "FREEZING"
	Frozen   State = "FROZEN"
	Thawed   State = "THAWED"
)

func (r *Runtime) container(name string) (*lxc.Container, error) {
	c, err := lxc.NewContainer(name, r.Path)
	if err != nil {
		return nil, fmt.Errorf("load container %s: %w", name, err)
	}
	return c, nil
}

// handle returns the cached container of name for monitor queries.
func (r *Runtime) handle(name string) (*lxc.Container, error) {
	r.handlesMu.Lock()
	defer r.handlesMu.Unlock()
	if c, ok := r.handles[name]; ok {
		return c, nil
	}
	c, err := r.container(name)
	if err != nil {
		return nil, err
	}
	if r.handles == nil {
		r.handles = map[string]*lxc.Container{}
	}
	r.handles[name] = c
	return c, nil
}

// forget drops the cached handle of name. A query still using it answers
// as for a stopped container (go-lxc guards a released handle), which is
// what a removed or renamed container is.
func (r *Runtime) forget(name string) {
	r.handlesMu.Lock()
	c, ok := r.handles[name]
	delete(r.handles, name)
	r.handlesMu.Unlock()
	if ok {
		_ = c.Release()
	}
}

// State returns the state of a container; a container liblxc does not
// know is stopped.
func (r *Runtime) State(name string) State {
	c, err := r.handle(name)
	if err != nil {
		return Stopped
	}
	return State(c.State().String())
}

// InitPID returns the host pid of the container's init, or -1.
func (r *Runtime) InitPID(name string) int {
	c, err := r.handle(name)
	if err != nil {
		return -1
	}
	return c.InitPid()
}

// ConfigPath is where a container's generated lxc config lives.
func (r *Runtime) ConfigPath(name string) string { return filepath.Join(r.Path, name, "config") }

// LogPath is a container's lxc log file.
func (r *Runtime) LogPath(name string) string { return filepath.Join(r.LogDir, name, "lxc.log") }

// WriteConfig writes a container's lxc config atomically.
func (r *Runtime) WriteConfig(name string, cfg Config) error {
	dir := filepath.Join(r.Path, name)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("create container dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(r.LogDir, name), 0o700); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	cfg.Name = name
	cfg.LogFile = r.LogPath(name)
	if cfg.Seccomp != "" {
		cfg.seccompPath = filepath.Join(dir, "seccomp")
		if err := os.WriteFile(cfg.seccompPath, []byte(cfg.Seccomp), 0o600); err != nil {
			return fmt.Errorf("write seccomp profile: %w", err)
		}
	}
	text, err := cfg.Render()
	if err != nil {
		return err
	}
	tmp := r.ConfigPath(name) + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write lxc config: %w", err)
	}
	return os.Rename(tmp, r.ConfigPath(name))
}

// Start starts a container whose config was written by WriteConfig.
func (r *Runtime) Start(ctx context.Context, name string) error {
	cmd := exec.CommandContext(ctx, "lxc-start", "-n", name, "-P", r.Path, "-o", r.LogPath(name), "-l", "INFO")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("start %s: %s: %w%s", name, strings.TrimSpace(string(out)), err, r.logTail(name))
	}
	return nil
}

// logTail returns the last errors of the container's lxc log, to explain a
// failure to the user.
func (r *Runtime) logTail(name string) string {
	data, err := os.ReadFile(r.LogPath(name))
	if err != nil {
		return ""
	}
	var errs []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, " ERROR ") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	if len(errs) > 5 {
		errs = errs[len(errs)-5:]
	}
	if len(errs) == 0 {
		return ""
	}
	return "\n" + strings.Join(errs, "\n")
}

// haltResend is how often Shutdown sends the halt signal again while it
// waits. The init of a pid namespace drops signals it has no handler for,
// and right after a start init may not have installed its handler yet: a
// single signal sent then is lost, and the stop would wait for its whole
// timeout and kill. Inits ignore a repeated request once they are halting
// (busybox resets its handlers, systemd already has the job queued).
const haltResend = time.Second

// Shutdown asks the container's init to halt (lxc.signal.halt) and waits
// up to timeout for it to stop.
func (r *Runtime) Shutdown(name string, timeout time.Duration) error {
	c, err := r.container(name)
	if err != nil {
		return err
	}
	defer c.Release()
	deadline := time.Now().Add(timeout)
	for {
		// liblxc sends the signal and waits (in whole seconds) for STOPPED.
		err := c.Shutdown(haltResend)
		if err == nil || !c.Running() {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("clean shutdown of %s did not finish within %s: %w", name, timeout, err)
		}
	}
}

// Stop kills the container.
func (r *Runtime) Stop(name string) error {
	c, err := r.container(name)
	if err != nil {
		return err
	}
	defer c.Release()
	if !c.Running() {
		return nil
	}
	if err := c.Stop(); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return nil
}

// Freeze freezes every process of the container.
func (r *Runtime) Freeze(name string) error {
	c, err := r.container(name)
	if err != nil {
		return err
	}
	defer c.Release()
	if err := c.Freeze(); err != nil {
		return fmt.Errorf("freeze %s: %w", name, err)
	}
	return nil
}

// Unfreeze thaws a frozen container.
func (r *Runtime) Unfreeze(name string) error {
	c, err := r.container(name)
	if err != nil {
		return err
	}
	defer c.Release()
	if err := c.Unfreeze(); err != nil {
		return fmt.Errorf("unfreeze %s: %w", name, err)
	}
	return nil
}

// Remove deletes the container's lxc config dir and logs. The container
// must be stopped.
func (r *Runtime) Remove(name string) error {
	r.forget(name)
	return errors.Join(os.RemoveAll(filepath.Join(r.Path, name)), os.RemoveAll(filepath.Join(r.LogDir, name)))
}

// Rename moves the container's config dir and logs to a new name. The
// container must be stopped; its config is rewritten at the next start.
func (r *Runtime) Rename(oldName, newName string) error {
	r.forget(oldName)
	r.forget(newName)
	for _, base := range []string{r.Path, r.LogDir} {
		err := os.Rename(filepath.Join(base, oldName), filepath.Join(base, newName))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rename %s: %w", oldName, err)
		}
	}
	return nil
}

// Known returns the names of the containers liblxc has a config for.
func (r *Runtime) Known() []string {
	entries, err := os.ReadDir(r.Path)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Stats are the resource figures of a running container.
type Stats struct {
	Pid         int
	Processes   int64
	MemoryBytes int64
	MemoryPeak  int64
	CPUNanos    int64
}

// Stats reads a container's pid and resource use; a stopped container
// has Pid -1 and zero figures.
func (r *Runtime) Stats(name string) Stats {
	s := Stats{Pid: -1}
	c, err := r.handle(name)
	if err != nil {
		return s
	}
	s.Pid = c.InitPid()
	if s.Pid <= 0 {
		return s
	}
	// Read the cgroup files directly: through liblxc every figure costs a
	// round trip to the monitor and a fresh look at the host's cgroup
	// layout (about half a millisecond each, for every instance of every
	// listing). liblxc remains the fallback where the files are not where
	// /proc/PID/cgroup says (celld inside a cgroup namespace).
	if readCgroupStats(s.Pid, &s) {
		return s
	}
	if mem, err := c.MemoryUsage(); err == nil {
		s.MemoryBytes = int64(mem)
	}
	if cpu, err := c.CPUTime(); err == nil {
		s.CPUNanos = cpu.Nanoseconds()
	}
	for _, key := range []string{"memory.max_usage_in_bytes", "memory.peak"} {
		if v := c.CgroupItem(key); len(v) > 0 {
			fmt.Sscan(v[0], &s.MemoryPeak)
			break
		}
	}
	if v := c.CgroupItem("pids.current"); len(v) > 0 {
		fmt.Sscan(v[0], &s.Processes)
	}
	return s
}

// readCgroupStats fills s from the cgroup files of process pid, on a v2
// host or a v1 one; false when a file is missing.
func readCgroupStats(pid int, s *Stats) bool {
	dirs, err := cgroupDirs(pid)
	if err != nil {
		return false
	}
	num := func(controller, file string) (int64, bool) {
		dir, found := dirs[controller]
		if !found {
			return 0, false
		}
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0, false
		}
		var v int64
		_, err = fmt.Sscan(string(data), &v)
		return v, err == nil
	}
	var ok [4]bool
	if CgroupV2() {
		s.MemoryBytes, ok[0] = num("", "memory.current")
		s.MemoryPeak, _ = num("", "memory.peak") // kernels before 5.19 have none
		s.Processes, ok[1] = num("", "pids.current")
		data, err := os.ReadFile(filepath.Join(dirs[""], "cpu.stat"))
		for line := range strings.SplitSeq(string(data), "\n") {
			if usec, found := strings.CutPrefix(line, "usage_usec "); found && err == nil {
				var v int64
				_, scanErr := fmt.Sscan(usec, &v)
				s.CPUNanos, ok[2] = v*1000, scanErr == nil
			}
		}
		ok[3] = true
	} else {
		s.MemoryBytes, ok[0] = num("memory", "memory.usage_in_bytes")
		s.MemoryPeak, ok[1] = num("memory", "memory.max_usage_in_bytes")
		s.CPUNanos, ok[2] = num("cpuacct", "cpuacct.usage")
		s.Processes, ok[3] = num("pids", "pids.current")
	}
	return ok == [4]bool{true, true, true, true}
}

// cgroupDirs maps each controller of process pid ("" for the unified
// hierarchy) to its cgroup's directory under /sys/fs/cgroup.
func cgroupDirs(pid int) (map[string]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		controllers, path := parts[1], parts[2]
		if controllers == "" {
			mount := "/sys/fs/cgroup/unified"
			if CgroupV2() {
				mount = "/sys/fs/cgroup"
			}
			dirs[""] = filepath.Join(mount, path)
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			dirs[c] = filepath.Join("/sys/fs/cgroup", controllers, path)
		}
	}
	return dirs, nil
}
