// Package harness starts real celld daemons for integration tests: each
// test gets its own CELL_DIR, and everything the daemon made (containers,
// files) is removed when the test ends, even when it fails.
package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("go.mod not found above the working directory")
		}
		dir = parent
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds celld and c once per test process and returns the
// directory that holds them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		removeStaleBinaries()
		// The pid in the name tells later runs whose binaries these are:
		// nothing can remove them when the test process ends.
		binDir, buildErr = os.MkdirTemp("", fmt.Sprintf("cell-bin-%d-", os.Getpid()))
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"celld=./daemon/celld", "c=./cli/c"} {
			name, path, _ := strings.Cut(pkg, "=")
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), path)
			cmd.Dir = RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// removeStaleBinaries removes the binary dirs of test processes that have
// ended (cell-bin-PID-*); those of running ones, and of other users, stay.
func removeStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "cell-bin-*-*"))
	for _, dir := range dirs {
		pid, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), "cell-bin-"), "-")
		if !ok {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pid)); err == nil {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// CacheDir is where slow fixtures are kept between runs.
func CacheDir() string {
	if d := os.Getenv("CELL_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "cell")
}

var imageMu sync.Mutex

// BusyboxImage returns the path of the busybox test image, building it
// (in seconds) when the builder script changed since the cached copy.
func BusyboxImage(t testing.TB) string {
	return buildImage(t, "build-busybox.sh", "busybox")
}

// DebianImage returns the path of the Debian bookworm test image with
// systemd. The first build takes minutes (debootstrap); the builder caches
// it keyed by its own content.
func DebianImage(t testing.TB) string {
	return buildImage(t, "build-debian.sh", "debian")
}

func buildImage(t testing.TB, script, name string) string {
	t.Helper()
	path, err := BuildImage(script, name)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// BuildImage returns the cached image made by tests/images/SCRIPT, building
// it when the script changed since the cached copy. Programs other than
// tests (the benchmarks) call it directly.
func BuildImage(script, name string) (string, error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	path := filepath.Join(RepoRoot(), "tests", "images", script)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	out := filepath.Join(CacheDir(), "test-images", name+"-"+hex.EncodeToString(sum[:8])+".tar.xz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	cmd := exec.Command("bash", path, tmp)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build %s image: %v\n%s", name, err, log.String())
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

// Daemon is a celld started for one test.
type Daemon struct {
	t    testing.TB
	Dir  string
	Bin  string
	Conf string
	// DefaultNetwork lets celld make cellbr0 on first start; off by
	// default, since parallel tests would fight over it (network.go).
	DefaultNetwork bool
	// proc is shared by the copies For makes, so that a subtest that
	// restarts the daemon leaves the parent knowing the live process.
	*proc
}

// proc is the running celld process of a Daemon.
type proc struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
}

// Socket is the daemon's unix socket.
func (d *Daemon) Socket() string { return filepath.Join(d.Dir, "unix.socket") }

// StartDaemon starts a celld in a new temporary CELL_DIR. The daemon, its
// containers and its directory are removed when the test ends.
func StartDaemon(t testing.TB) *Daemon {
	t.Helper()
	return startDaemon(t, false)
}

func startDaemon(t testing.TB, defaultNetwork bool) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root (containers, idmaps): run them as root")
	}
	bin := Binaries(t)
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "cell-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{t: t, Dir: filepath.Join(dir, "cell"), Bin: bin, Conf: filepath.Join(dir, "conf"), proc: &proc{}, DefaultNetwork: defaultNetwork}
	t.Cleanup(func() { d.destroy(dir) })
	d.Start()
	return d
}

// Start starts (or restarts) the daemon process and waits until it answers.
func (d *Daemon) Start() {
	d.t.Helper()
	var err error
	d.log, err = os.OpenFile(filepath.Join(filepath.Dir(d.Dir), "celld.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd = exec.Command(filepath.Join(d.Bin, "celld"), "--debug")
	if !d.DefaultNetwork {
		d.cmd.Args = append(d.cmd.Args, "--no-default-network")
	}
	d.cmd.Env = append(os.Environ(), "CELL_DIR="+d.Dir)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(d.cmd, d.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if status, _, err := d.tryAPI("GET", "/1.0", nil); err == nil && status == 200 {
			return
		}
		select {
		case <-d.exited:
			d.t.Fatalf("celld exited during start-up:\n%s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("celld not ready after 20s:\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill kills the daemon with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
	d.log.Close()
}

// Signal sends a signal to the daemon and waits up to timeout for it to exit.
func (d *Daemon) Signal(sig os.Signal, timeout time.Duration) error {
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
		d.cmd = nil
		d.log.Close()
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("celld did not exit within %s of %v", timeout, sig)
	}
}

// PID is the running daemon's process id (0 when it is not running).
func (d *Daemon) PID() int {
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Exited is closed when the daemon process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	data, _ := os.ReadFile(filepath.Join(filepath.Dir(d.Dir), "celld.log"))
	return string(data)
}

// destroy kills the daemon and every container it ran, and removes its dir.
func (d *Daemon) destroy(dir string) {
	if d.cmd != nil {
		_ = d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
	if d.log != nil {
		d.log.Close()
	}
	lxcPath := filepath.Join(d.Dir, "lxc")
	entries, _ := os.ReadDir(lxcPath)
	for _, e := range entries {
		_ = exec.Command("lxc-stop", "-k", "-n", e.Name(), "-P", lxcPath).Run()
	}
	if d.t.Failed() {
		d.t.Logf("celld log:\n%s", tail(d.Log(), 60))
	}
	destroyZpoolsUnder(dir)
	sweepNetworks(d.t, d.Dir)
	releaseMounts(d.t, dir)
	if err := os.RemoveAll(dir); err != nil {
		d.t.Errorf("remove test dir: %v", err)
	}
}

// releaseMounts unmounts everything mounted under dir (storage pools),
// deepest first, and detaches the loop devices backed by files under it.
func releaseMounts(t testing.TB, dir string) {
	mounts := MountsUnder(dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		if out, err := exec.Command("umount", "-l", mounts[i]).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v: %s", mounts[i], err, out)
		}
	}
	for _, dev := range LoopsUnder(dir) {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("detach %s: %v: %s", dev, err, out)
		}
	}
}

// MountsUnder lists the mount points at or under dir, in mount order.
func MountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// LoopsUnder lists the loop devices backed by files at or under dir.
func LoopsUnder(dir string) []string {
	out, _ := exec.Command("losetup", "-n", "-O", "NAME,BACK-FILE", "-l").Output()
	var devs []string
	for _, line := range strings.Split(string(out), "\n") {
		dev, file, ok := strings.Cut(strings.TrimSpace(line), " ")
		file = strings.TrimSuffix(strings.TrimSpace(file), " (deleted)")
		if ok && (file == dir || strings.HasPrefix(file, dir+"/")) {
			devs = append(devs, dev)
		}
	}
	return devs
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// HTTP returns an HTTP client bound to the daemon's socket.
func (d *Daemon) HTTP() *http.Client {
	sock := d.Socket()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// Response is a decoded API envelope.
type Response struct {
	Type       string          `json:"type"`
	StatusCode int             `json:"status_code"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Operation  string          `json:"operation"`
	Metadata   json.RawMessage `json:"metadata"`
}

func (d *Daemon) tryAPI(method, path string, body any) (int, Response, error) {
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r = b
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, Response{}, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://celld"+path, r)
	if err != nil {
		return 0, Response{}, err
	}
	resp, err := d.HTTP().Do(req)
	if err != nil {
		return 0, Response{}, err
	}
	defer resp.Body.Close()
	var env Response
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &env); err != nil {
		return resp.StatusCode, env, fmt.Errorf("%s %s: not an API envelope: %q", method, path, data)
	}
	return resp.StatusCode, env, nil
}

// API sends a request (body: nil, a string, a reader, or a value to encode
// as JSON) and returns the HTTP status and envelope.
func (d *Daemon) API(method, path string, body any) (int, Response) {
	d.t.Helper()
	status, env, err := d.tryAPI(method, path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	return status, env
}

// Operation is the subset of an operation tests look at.
type Operation struct {
	ID         string         `json:"id"`
	Status     string         `json:"status"`
	StatusCode int            `json:"status_code"`
	Err        string         `json:"err"`
	Metadata   map[string]any `json:"metadata"`
}

// Wait waits for the operation of an async response and returns it.
func (d *Daemon) Wait(env Response) Operation {
	d.t.Helper()
	if env.Type != "async" {
		d.t.Fatalf("expected an async response, got %+v", env)
	}
	_, res := d.API("GET", env.Operation+"/wait?timeout=120", nil)
	var op Operation
	if err := json.Unmarshal(res.Metadata, &op); err != nil {
		d.t.Fatalf("decode operation: %v (%s)", err, res.Metadata)
	}
	return op
}

// MustSucceed runs an async request and fails the test unless its
// operation succeeds.
func (d *Daemon) MustSucceed(method, path string, body any) Operation {
	d.t.Helper()
	status, env := d.API(method, path, body)
	if status != http.StatusAccepted {
		d.t.Fatalf("%s %s: status %d: %s", method, path, status, env.Error)
	}
	op := d.Wait(env)
	if op.StatusCode != 200 {
		d.t.Fatalf("%s %s: operation %s: %s", method, path, op.Status, op.Err)
	}
	return op
}

// Run runs a command with the daemon's environment and returns its
// output and exit code.
func (d *Daemon) Run(stdin io.Reader, name string, args ...string) (stdout, stderr string, code int) {
	d.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "CELL_DIR="+d.Dir, "CELL_CONF="+d.Conf,
		"LXD_SOCKET="+d.Socket(), "LXD_CONF="+d.Conf+"-lxd", "HOME="+filepath.Dir(d.Dir))
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			d.t.Fatalf("run %s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// C runs the c client against the daemon.
func (d *Daemon) C(args ...string) (stdout, stderr string, code int) {
	d.t.Helper()
	return d.Run(nil, filepath.Join(d.Bin, "c"), args...)
}

// MustC runs c and fails the test unless it exits 0.
func (d *Daemon) MustC(args ...string) string {
	d.t.Helper()
	out, errOut, code := d.C(args...)
	if code != 0 {
		d.t.Fatalf("c %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// ImportImage uploads an image file and gives it an alias.
func (d *Daemon) ImportImage(path, alias string) string {
	d.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	op := d.MustSucceed("POST", "/1.0/images", f)
	fp, _ := op.Metadata["fingerprint"].(string)
	if fp == "" {
		d.t.Fatalf("image upload returned no fingerprint: %+v", op)
	}
	if status, env := d.API("POST", "/1.0/images/aliases", map[string]string{"name": alias, "target": fp}); status != 201 {
		d.t.Fatalf("create alias: %d %s", status, env.Error)
	}
	return fp
}

// Launch creates and starts an instance from an image alias.
func (d *Daemon) Launch(alias, name string, config map[string]string) {
	d.t.Helper()
	d.MustSucceed("POST", "/1.0/instances", map[string]any{
		"name": name, "config": config, "source": map[string]string{"type": "image", "alias": alias}})
	d.MustSucceed("PUT", "/1.0/instances/"+name+"/state", map[string]string{"action": "start"})
}

// LXCState asks liblxc directly (not celld) for a container's state.
func (d *Daemon) LXCState(name string) string {
	out, _ := exec.Command("lxc-info", "-s", "-H", "-n", name, "-P", filepath.Join(d.Dir, "lxc")).Output()
	return strings.TrimSpace(string(out))
}

// For returns the daemon bound to a subtest, so that its helpers fail the
// subtest rather than the parent. Use it only for requests: starting and
// killing the daemon belong to the test that started it.
func (d *Daemon) For(t testing.TB) *Daemon {
	c := *d
	c.t = t
	return &c
}

// destroyZpoolsUnder destroys the zpools whose devices are files under dir
// (a failed test's zfs pools), retrying while zfs-fuse says busy.
func destroyZpoolsUnder(dir string) {
	out, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	if err != nil {
		return
	}
	for _, name := range strings.Fields(string(out)) {
		status, _ := exec.Command("zpool", "status", name).Output()
		if !strings.Contains(string(status), dir+"/") {
			continue
		}
		for i := 0; i < 30; i++ {
			if exec.Command("zpool", "destroy", "-f", name).Run() == nil {
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// EnableHTTPS makes the daemon serve its API over HTTPS on a free
// loopback port (core.https_address) and returns "127.0.0.1:PORT".
func (d *Daemon) EnableHTTPS() string {
	d.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if status, env := d.API("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": addr}}); status != http.StatusOK {
		d.t.Fatalf("enable HTTPS on %s: status %d: %s", addr, status, env.Error)
	}
	return addr
}
