package liblxc

// Checkpoint and restore with CRIU, through the lxc-checkpoint binary.
//
// Why the binary and not go-lxc's Checkpoint/Restore: liblxc's restore
// forks, and the child runs criu and then stays on as the restored
// container's monitor for the container's whole life. Doing that from
// celld would leave a forked copy of a multi-threaded Go process running C
// code for as long as the container runs (the reason containers are
// started with lxc-start). `lxc-checkpoint -r` is the restore twin of
// lxc-start: a small C program whose daemonized child becomes the monitor.
// A child process can also be killed when its context ends, while a call
// into liblxc cannot be interrupted: a dump that hangs would hang celld.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CRIUTimeout bounds one checkpoint or restore. An idle container takes
// about a second; the bound is there so that a CRIU that hangs (as it does
// on a host whose hardware breakpoints do not fire, see criuEnv) fails the
// operation instead of holding the instance's lock forever.
const CRIUTimeout = 5 * time.Minute

// CheckpointOptions says how to checkpoint a container.
type CheckpointOptions struct {
	// Dir receives CRIU's images; it is created if missing.
	Dir string
	// Stop stops the container once its state is saved; otherwise it
	// keeps running (a stateful snapshot).
	Stop bool
}

// Checkpoint saves the running state of a container into opts.Dir with
// CRIU. A failure leaves the container as it was (running) and returns
// the lines of CRIU's log that explain it.
func (r *Runtime) Checkpoint(ctx context.Context, name string, opts CheckpointOptions) error {
	pid := r.InitPID(name)
	if pid <= 0 {
		return fmt.Errorf("checkpoint %s: the container is not running", name)
	}
	if err := checkpointable(pid); err != nil {
		return fmt.Errorf("checkpoint %s: %w", name, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return fmt.Errorf("create checkpoint dir: %w", err)
	}
	args := []string{"-D", opts.Dir}
	if opts.Stop {
		args = append(args, "-s")
	}
	if err := r.lxcCheckpoint(ctx, name, args...); err != nil {
		// CRIU freezes the container while it dumps; killed (timeout)
		// it cannot thaw it.
		if r.State(name) == Frozen {
			if uerr := r.Unfreeze(name); uerr != nil {
				slog.Warn("thaw after a failed checkpoint", "instance", name, "err", uerr)
			}
		}
		return fmt.Errorf("checkpoint %s: %w%s", name, err, criuLogTail(filepath.Join(opts.Dir, "dump.log")))
	}
	return nil
}

// Restore starts a container from the state Checkpoint saved in dir. The
// container's config must have been written by WriteConfig. dir is left
// as it was, whatever happens: the caller removes it once it is sure.
//
// CRIU reads some of the images from inside the container's new user
// namespace, before its id map is written (as the overflow user): the
// images are made readable to all. dir must lie where only the
// container's root can reach it (the instance's volume: mode 0100).
func (r *Runtime) Restore(ctx context.Context, name, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "inventory.img")); err != nil {
		return fmt.Errorf("restore %s: no checkpoint in %s: %w", name, dir, err)
	}
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case e.IsDir():
			return os.Chmod(path, 0o755)
		case e.Type().IsRegular():
			return os.Chmod(path, 0o644)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore %s: make the checkpoint readable: %w", name, err)
	}
	if err := r.lxcCheckpoint(ctx, name, "-r", "-d", "-D", dir); err != nil {
		return fmt.Errorf("restore %s: %w%s%s", name, err, criuLogTail(filepath.Join(dir, "restore.log")), r.logTail(name))
	}
	return nil
}

// lxcCheckpoint runs lxc-checkpoint for a container with CRIU's
// environment, bounded by CRIUTimeout. On timeout the whole process group
// (lxc-checkpoint and the criu it runs) is killed so that no criu is left.
func (r *Runtime) lxcCheckpoint(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, CRIUTimeout)
	defer cancel()
	args = append([]string{"-n", name, "-P", r.Path, "-o", r.LogPath(name), "-l", "INFO"}, args...)
	conf, err := r.writeCRIUConfig()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "lxc-checkpoint", args...)
	// liblxc execs criu from PATH with this environment.
	cmd.Env = append(os.Environ(), criuEnv()...)
	cmd.Env = append(cmd.Env, "CRIU_CONFIG_FILE="+conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Output goes to a file, not a pipe: the daemonized monitor of a
	// restore inherits it and keeps it open as long as the container runs.
	outFile, err := os.CreateTemp("", "lxc-checkpoint-*.out")
	if err != nil {
		return fmt.Errorf("create output file: %w", err)
	}
	defer os.Remove(outFile.Name())
	defer outFile.Close()
	cmd.Stdout, cmd.Stderr = outFile, outFile
	start := time.Now()
	err = cmd.Run()
	out, _ := os.ReadFile(outFile.Name())
	slog.Debug("lxc-checkpoint", "instance", name, "args", args, "took", time.Since(start), "err", err)
	if err != nil && cmd.Process != nil {
		// A failed restore leaves criu's helpers (and the half-made
		// tasks they were creating) behind in the process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("criu did not finish within %s: %w", CRIUTimeout, ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg != "" {
			msg += ": "
		}
		return fmt.Errorf("%s%w", msg, err)
	}
	return nil
}

// criuConfig is CRIU's own config for celld's checkpoints. CRIU locks the
// container's network while it dumps it, by default with iptables rules
// that it loads with iptables-restore; celld's hosts use nftables
// (iptables is not even installed on the project's machines), and CRIU is
// built with libnftables.
const criuConfig = "network-lock nftables\n"

// writeCRIUConfig writes criuConfig next to the containers and returns its
// path, for CRIU_CONFIG_FILE (liblxc has no way to pass CRIU options).
func (r *Runtime) writeCRIUConfig() (string, error) {
	path := filepath.Join(r.Path, "criu.conf")
	if data, err := os.ReadFile(path); err == nil && string(data) == criuConfig {
		return path, nil
	}
	if err := os.WriteFile(path, []byte(criuConfig), 0o644); err != nil {
		return "", fmt.Errorf("write criu config: %w", err)
	}
	return path, nil
}

// criuLogTail returns the error lines of a CRIU log, to tell the user why
// a checkpoint or restore failed.
func criuLogTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var errs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, "Error (") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	if len(errs) > 5 {
		errs = errs[len(errs)-5:]
	}
	if len(errs) == 0 {
		return ""
	}
	return "\ncriu (" + path + "):\n" + strings.Join(errs, "\n")
}

// checkpointable refuses, before CRIU is run, a container CRIU is known
// not to save: a ramfs mount (systemd mounts one per service credential
// under /run/credentials) has contents CRIU cannot dump, and the dump
// would fail after freezing the container.
func checkpointable(pid int) error {
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return fmt.Errorf("read the container's mounts: %w", err)
	}
	defer f.Close()
	var ramfs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, fs := strings.Fields(pre), strings.Fields(post)
		if ok && len(fields) >= 5 && len(fs) > 0 && fs[0] == "ramfs" {
			ramfs = append(ramfs, fields[4])
		}
	}
	if len(ramfs) > 0 {
		return fmt.Errorf("CRIU cannot save the contents of ramfs mounts, and the container has %s (systemd mounts one under /run/credentials for each service started with credentials): its running state cannot be saved; stop it without --stateful", strings.Join(ramfs, ", "))
	}
	return sc.Err()
}

var (
	criuEnvOnce sync.Once
	criuEnvVars []string
)

// criuEnv is the environment CRIU needs on this host. CRIU stops the
// threads it injects its parasite code into with a hardware breakpoint;
// where breakpoints are accepted but never fire (some virtual machines,
// this project's test VM among them) `criu dump` waits forever.
// CRIU_FAULT=130 makes CRIU trace the parasite by syscalls instead, a
// little slower and working everywhere. The probe runs once.
func criuEnv() []string {
	criuEnvOnce.Do(func() {
		ok, err := hwBreakpointsWork()
		if !ok {
			criuEnvVars = []string{"CRIU_FAULT=130"}
		}
		slog.Info("criu: hardware breakpoints probed", "work", ok, "err", err, "env", criuEnvVars)
	})
	return criuEnvVars
}

// NeedsCRIUFault says whether CRIU runs with CRIU_FAULT=130 on this host.
func NeedsCRIUFault() bool { return len(criuEnv()) > 0 }

// hwBreakpointVar is the word the probe watches.
var hwBreakpointVar uint64

// hwBreakpointsWork sets a hardware write breakpoint on a variable of this
// process (perf_event_open, PERF_TYPE_BREAKPOINT), writes the variable and
// reads how often the breakpoint fired. Hosts without debug registers
// refuse the event; broken ones accept it and count nothing.
func hwBreakpointsWork() (bool, error) {
	type result struct {
		ok  bool
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The event watches this thread only; the thread is not given back
		// to the scheduler, so it ends with the goroutine.
		runtime.LockOSThread()
		attr := unix.PerfEventAttr{
			Type:    unix.PERF_TYPE_BREAKPOINT,
			Size:    uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Bits:    unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
			Bp_type: 2, // HW_BREAKPOINT_W
			Ext1:    uint64(uintptr(unsafe.Pointer(&hwBreakpointVar))),
			Ext2:    8, // HW_BREAKPOINT_LEN_8
		}
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			done <- result{false, fmt.Errorf("perf_event_open(PERF_TYPE_BREAKPOINT): %w", err)}
			return
		}
		defer unix.Close(fd)
		for i := uint64(1); i <= 4; i++ {
			storeWatched(i)
		}
		var buf [8]byte
		n, err := unix.Read(fd, buf[:])
		if err != nil || n != 8 {
			done <- result{false, fmt.Errorf("read breakpoint count: %d bytes: %w", n, err)}
			return
		}
		count := *(*uint64)(unsafe.Pointer(&buf[0]))
		if count == 0 {
			done <- result{false, errors.New("a hardware breakpoint was accepted but never fired")}
			return
		}
		done <- result{true, nil}
	}()
	res := <-done
	return res.ok, res.err
}

// storeWatched writes the watched word; not inlined, so that every call
// really stores.
//
//go:noinline
func storeWatched(v uint64) { hwBreakpointVar = v }
