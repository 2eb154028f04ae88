package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// baseEnv is the benchmark's environment without anything that would
// point a daemon or client somewhere else.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HOME", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY":
			continue
		}
		if strings.HasPrefix(k, "LXD_") || strings.HasPrefix(k, "CELL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (b *bench) cliEnv(kind, sock string) []string {
	return append(baseEnv(),
		"LXD_SOCKET="+sock,
		"LXD_CONF="+filepath.Join(b.work, "conf-"+kind),
		"HOME="+filepath.Join(b.work, "home"))
}

func writePid(path string, pid int) {
	_ = os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// startProcess starts a daemon in its own process group with its output
// in logPath.
func startProcess(s *server, env []string, name string, args ...string) error {
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	detached(cmd)
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(s.exited) }()
	return nil
}

// startCelld starts celld in an empty CELL_DIR and waits until it answers.
func (b *bench) startCelld(ctx context.Context) (*server, error) {
	dir := filepath.Join(b.work, "celld")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "unix.socket")
	s := &server{kind: "celld", dir: dir, socket: sock, prefix: "bc" + b.runID,
		http: newHTTPClient(sock), logPath: filepath.Join(b.work, "celld.log")}
	s.cliEnv = b.cliEnv("celld", sock)
	b.celld = s
	// No cellbr0: LXD here runs without a network too, and a bridge and
	// its dnsmasq would outlive the benchmark.
	if err := startProcess(s, append(baseEnv(), "CELL_DIR="+dir), b.celldBin, "--no-default-network"); err != nil {
		return nil, err
	}
	writePid(filepath.Join(b.work, "celld.pid"), s.pid())
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := s.sync(ctx, "GET", "/1.0", nil, nil); err == nil {
			return s, nil
		}
		if !s.alive() {
			return nil, fmt.Errorf("celld exited during start-up:\n%s", tailFile(s.logPath, 20))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("celld not ready after 30s:\n%s", tailFile(s.logPath, 20))
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// startLXD starts an isolated LXD (its own LXD_DIR) and gives it a dir
// storage pool in the default profile: what `lxd init --auto` would do,
// without a network (it cannot pick a subnet here, and the benchmark does
// not need one).
func (b *bench) startLXD(ctx context.Context) (*server, error) {
	dir := filepath.Join(b.work, "lxd")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "unix.socket")
	s := &server{kind: "lxd", dir: dir, socket: sock, prefix: "bl" + b.runID,
		http: newHTTPClient(sock), logPath: filepath.Join(b.work, "lxd.out")}
	s.cliEnv = b.cliEnv("lxd", sock)
	b.lxd = s
	env := append(baseEnv(), "LXD_DIR="+dir, "HOME="+filepath.Join(b.work, "home"))
	// LXD fetches instance type definitions from images.linuxcontainers.org
	// at start-up. Benchmark traffic stays on this machine: point its proxy
	// at a local port where nothing listens, so the fetch fails at once
	// without even a DNS lookup.
	for _, k := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		env = append(env, k+"=http://127.0.0.1:9")
	}
	if err := startProcess(s, env, "lxd", "--group", "root", "--logfile", filepath.Join(b.work, "lxd.log")); err != nil {
		return nil, err
	}
	writePid(filepath.Join(b.work, "lxd.pid"), s.pid())
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(wctx, "lxd", "waitready", "--timeout", "80")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lxd waitready: %v: %s\n%s", err, out, tailFile(filepath.Join(b.work, "lxd.log"), 20))
	}
	setupEnv := append(append([]string{}, s.cliEnv...), "LXD_DIR="+dir)
	for _, args := range [][]string{
		{"storage", "create", "default", "dir"},
		{"profile", "device", "add", "default", "root", "disk", "path=/", "pool=default"},
	} {
		cmd := exec.CommandContext(ctx, "lxc", args...)
		cmd.Env = setupEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("lxc %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return s, nil
}

// stopCelld kills celld, then stops its containers with lxc-stop -k.
func (b *bench) stopCelld() {
	s := b.celld
	if s == nil {
		return
	}
	if s.alive() {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			logf("cleanup: celld (pid %d) did not die after SIGKILL", s.pid())
		}
	}
	lxcPath := filepath.Join(s.dir, "lxc")
	entries, _ := os.ReadDir(lxcPath)
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			_, _ = runQuiet(60*time.Second, nil, "lxc-stop", "-k", "-n", name, "-P", lxcPath)
		}(e.Name())
	}
	wg.Wait()
}

// stopLXD force-stops LXD's instances (a clean stop of 20 busybox
// containers would only add time), then `lxd shutdown`; SIGKILL and
// lxc-stop -k only if that fails.
func (b *bench) stopLXD() {
	s := b.lxd
	if s == nil {
		return
	}
	if s.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		if names, err := s.listNames(ctx); err == nil {
			forEach(names, 4, func(name string) error {
				_, _, _ = s.api(ctx, "PUT", instPath(name)+"/state", map[string]any{"action": "stop", "force": true})
				return nil
			})
			// The stops are async: let LXD finish them before shutdown.
			for i := 0; i < 100; i++ {
				var list []struct {
					Status string `json:"status"`
				}
				if err := s.sync(ctx, "GET", "/1.0/instances?recursion=1", nil, &list); err != nil {
					break
				}
				running := 0
				for _, l := range list {
					if l.Status != "Stopped" {
						running++
					}
				}
				if running == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		cancel()
		env := append(baseEnv(), "LXD_DIR="+s.dir)
		if out, err := runQuiet(90*time.Second, env, "lxd", "shutdown", "--timeout", "60"); err != nil {
			logf("cleanup: lxd shutdown: %v: %s", err, strings.TrimSpace(out))
		}
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			logf("cleanup: lxd still running after shutdown: SIGKILL")
			_ = s.cmd.Process.Signal(syscall.SIGKILL)
			<-s.exited
		}
	}
	lxcPath := filepath.Join(s.dir, "containers")
	entries, _ := os.ReadDir(lxcPath)
	for _, e := range entries {
		if st, _ := runQuiet(10*time.Second, nil, "lxc-info", "-s", "-H", "-n", e.Name(), "-P", lxcPath); strings.TrimSpace(st) != "" && strings.TrimSpace(st) != "STOPPED" {
			_, _ = runQuiet(60*time.Second, nil, "lxc-stop", "-k", "-n", e.Name(), "-P", lxcPath)
		}
	}
}

// monitors returns the [lxc monitor] processes of containers under dir as
// (lxcpath, name) pairs: liblxc titles them "[lxc monitor] LXCPATH NAME".
func monitors(dir string) [][2]string {
	var out [][2]string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		line := strings.TrimSpace(strings.ReplaceAll(string(data), "\x00", " "))
		rest, ok := strings.CutPrefix(line, "[lxc monitor] ")
		if !ok || !strings.HasPrefix(rest, dir+"/") {
			continue
		}
		if i := strings.LastIndex(rest, " "); i > 0 {
			out = append(out, [2]string{rest[:i], rest[i+1:]})
		}
	}
	return out
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unescapeMount decodes the octal escapes (\040 for space) of mountinfo.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// sweep stops any container left under dir, destroys the zpools the
// benchmark made, unmounts everything mounted below it, detaches the loop
// devices of files under it and removes it. It refuses to remove the directory while
// something is still mounted there (RemoveAll would descend into the
// mount).
func sweep(dir string, zpools []string) error {
	for _, m := range monitors(dir) {
		logf("cleanup: container %s (%s) still running: lxc-stop -k", m[1], m[0])
		_, _ = runQuiet(60*time.Second, nil, "lxc-stop", "-k", "-n", m[1], "-P", m[0])
	}
	destroyZpools(dir, zpools)
	for attempt := 0; attempt < 10; attempt++ {
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			break
		}
		for _, mp := range mounts {
			if err := unix.Unmount(mp, 0); err != nil {
				_ = unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("not removing %s: still mounted: %s", dir, strings.Join(left, ", "))
	}
	for _, zp := range zpools {
		if zpoolExists(zp) {
			return fmt.Errorf("not removing %s: zpool %s still exists (its vdev is a file there)", dir, zp)
		}
	}
	detachLoops(dir)
	if left := loopsUnder(dir); len(left) > 0 {
		return fmt.Errorf("not removing %s: loop devices still attached: %s", dir, strings.Join(left, ", "))
	}
	if left := monitors(dir); len(left) > 0 {
		return fmt.Errorf("not removing %s: containers still running: %v", dir, left)
	}
	return os.RemoveAll(dir)
}

// forEach runs f on every item with at most n at a time and returns the
// first error.
func forEach(items []string, n int, f func(string) error) error {
	sem := make(chan struct{}, n)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func(it string) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(it)
	}
	wg.Wait()
	return first
}

func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	l := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
