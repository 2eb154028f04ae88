package liblxc

import (
	"fmt"
	"os"
	"time"

	lxc "github.com/lxc/go-lxc"
)

// Process describes a command to run inside a running container.
type Process struct {
	Args []string
	// Env is the whole environment (KEY=VALUE); nothing of celld's leaks in.
	Env []string
	Cwd string
	// UID and GID are ids inside the container.
	UID, GID int
	// Stdin, Stdout and Stderr are handed to the process.
	Stdin, Stdout, Stderr *os.File
}

// Exec starts a process inside the container's namespaces and cgroups.
// liblxc creates it as a child of celld (CLONE_PARENT), so the returned
// process can be waited for and signalled like any child.
func (r *Runtime) Exec(name string, p Process) (*os.Process, error) {
	c, err := r.container(name)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	opts := lxc.AttachOptions{
		Namespaces: -1,
		Arch:       -1,
		Cwd:        p.Cwd,
		UID:        p.UID,
		GID:        p.GID,
		ClearEnv:   true,
		Env:        p.Env,
		StdinFd:    p.Stdin.Fd(),
		StdoutFd:   p.Stdout.Fd(),
		StderrFd:   p.Stderr.Fd(),
	}
	pid, err := c.RunCommandNoWait(p.Args, opts)
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", name, err)
	}
	return os.FindProcess(pid)
}

// Devpts opens the container's own /dev/pts, so that terminals for exec
// live inside the container (tty(1) then names them).
func (r *Runtime) Devpts(name string) (*os.File, error) {
	c, err := r.container(name)
	if err != nil {
		return nil, err
	}
	defer c.Release()
	f, err := c.DevptsFd()
	if err != nil {
		return nil, fmt.Errorf("open devpts of %s: %w", name, err)
	}
	return f, nil
}

// WaitExec waits, up to timeout, until an attached process has called
// execve. Until then it is a fork of celld running liblxc's attach code
// with the Go runtime's signal handlers, inherited over fork: a signal sent
// in that window is swallowed by them instead of reaching the command. It
// returns at once when the process is gone.
func WaitExec(pid int, timeout time.Duration) {
	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !os.SameFile(self, st) {
			return // gone, or running the command's own binary
		}
		time.Sleep(5 * time.Millisecond)
	}
}
