// Command bench runs the same workloads against celld and against LXD
// 5.0.2 on this machine, interleaved round by round, and reports median
// times and memory as ratios celld/LXD, next to the liblxc floor (lxc-start
// and lxc-attach on a prepared rootfs, with no daemon at all).
//
//	go run ./bench [-rounds 5] [-iters 5] [-instances 50] [-file-mb 100]
//	               [-parallel 20] [-drivers btrfs,zfs] [-data-mb 1024]
//
// Besides the lifecycle on a dir pool it runs 20 parallel launches, list and
// RSS with 50 instances, and the storage workloads (storage.go) on btrfs
// (both daemons) and zfs (celld alone) pools on loop files.
//
// `make bench` (scripts/bench.sh) is the usual way to run it. Both daemons
// run in temporary directories; everything they made (containers, mounts,
// directories) is removed at the end, also on error or Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"cell/tests/harness"
)

const imageAlias = "bench-busybox"

var (
	flagRounds         = flag.Int("rounds", 5, "rounds: each round runs every workload on celld, then on LXD")
	flagIters          = flag.Int("iters", 5, "samples per round and daemon of everything but the clean stop and push/pull")
	flagInstances      = flag.Int("instances", 50, "instances for the list and RSS workloads (0: skip them)")
	flagListIters      = flag.Int("list-iters", 1, "samples per round and daemon of list (CLI and API) with -instances running")
	flagParallel       = flag.Int("parallel", 20, "instances launched at once for the parallel launch workload (0: skip it)")
	flagParallelRounds = flag.Int("parallel-rounds", 2, "rounds of the parallel launch workload")
	flagDrivers        = flag.String("drivers", "btrfs,zfs", "loop-backed pools for the storage workloads (btrfs: both daemons; zfs: celld alone; empty: skip)")
	flagPoolSize       = flag.String("pool-size", "4GiB", "size of each loop-backed pool")
	flagStorageRounds  = flag.Int("storage-rounds", 3, "rounds of the storage workloads (one sample per round, daemon, pool and workload)")
	flagDataMB         = flag.Int("data-mb", 1024, "MiB of random data written into a container for the storage workloads with data")
	flagFileMB         = flag.Int("file-mb", 100, "size of the file pushed and pulled, in MB")
	flagSettle         = flag.Duration("settle", 3*time.Second, "idle time before measuring RSS")
	flagWorkdir        = flag.String("workdir", "", "directory for both daemons (created, and removed at the end; default: a new one in $TMPDIR)")
	flagCelld          = flag.String("celld", "", "celld binary (default: go build ./daemon/celld)")
	flagOut            = flag.String("out", "bench/results/latest.json", "where to write the JSON results (empty: do not write)")
	flagLogs           = flag.String("keep-logs", "", "copy the daemons' logs into this directory before cleaning up")
)

type bench struct {
	work     string
	runID    string
	celldBin string
	image    string
	payload  string
	size     int64

	celld, lxd *server
	floor      *floor
	res        *results
	zpools     []string // zpools celld made (or may have made) for the benchmark
}

func (b *bench) servers() []*server { return []*server{b.celld, b.lxd} }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	flag.Parse()
	if *flagRounds < 1 || *flagIters < 1 || *flagInstances < 0 || *flagFileMB < 1 || *flagDataMB < 1 || *flagListIters < 1 {
		fmt.Fprintln(os.Stderr, "bench: -rounds, -iters, -list-iters, -file-mb and -data-mb must be at least 1")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: must run as root (it runs celld, LXD and containers)")
		os.Exit(2)
	}
	// The first signal cancels the run; cleanup then runs to the end (later
	// signals are swallowed, so a second Ctrl-C cannot leave containers or
	// mounts behind).
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		logf("%v: stopping and cleaning up (this takes a few seconds)", sig)
		cancel()
		for range sigs {
		}
	}()

	b := &bench{res: newResults()}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				logf("panic: %v\n%s", r, debug.Stack())
				code = 2
			}
		}()
		if err := b.run(ctx); err != nil {
			logf("error: %v", err)
			b.dumpLogs()
			code = 1
		}
	}()
	if code != 0 && b.res.any() {
		fmt.Fprintln(os.Stderr, "partial results:")
		b.res.printTable(os.Stderr)
	}
	if err := b.cleanup(); err != nil {
		logf("cleanup: %v", err)
		if code == 0 {
			code = 1
		}
	}
	cancel()
	os.Exit(code)
}

func (b *bench) run(ctx context.Context) error {
	// b.work is set only once this run has created the directory: cleanup
	// removes it, and must never remove one that existed before.
	var work string
	var err error
	if *flagWorkdir != "" {
		work, err = filepath.Abs(*flagWorkdir)
		if err == nil {
			err = os.Mkdir(work, 0o711)
		}
	} else {
		// A short path: unix socket paths are limited to 108 bytes.
		work, err = os.MkdirTemp("", "cell-bench-")
	}
	if err != nil {
		return err
	}
	b.work = work
	if err := os.Chmod(b.work, 0o711); err != nil {
		return err
	}
	var id [2]byte
	_, _ = rand.Read(id[:])
	b.runID = fmt.Sprintf("%04x", id)
	for _, d := range []string{"home", "conf-celld", "conf-lxd"} {
		if err := os.MkdirAll(filepath.Join(b.work, d), 0o700); err != nil {
			return err
		}
	}

	b.res.Machine = machineInfo()
	b.res.Rounds, b.res.Iterations, b.res.Instances, b.res.FileMB = *flagRounds, *flagIters, *flagInstances, *flagFileMB
	logf("work dir %s, %d rounds", b.work, *flagRounds)

	if err := b.prepare(ctx); err != nil {
		return err
	}
	if err := b.warmUp(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := b.measureRSS(ctx, "rss_idle0"); err != nil {
		return err
	}
	for r := 1; r <= *flagRounds; r++ {
		logf("round %d/%d: launch, stop, start, exec, files, delete; floor", r, *flagRounds)
		if err := b.round(ctx, r); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
	}
	if err := b.parallel(ctx); err != nil {
		return err
	}
	if err := b.many(ctx); err != nil {
		return err
	}
	if err := b.storage(ctx); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	b.res.Date = time.Now().UTC().Format(time.RFC3339)
	b.res.printTable(os.Stdout)
	if *flagOut != "" {
		if err := b.res.writeJSON(*flagOut); err != nil {
			return err
		}
		logf("results written to %s", *flagOut)
	}
	return nil
}

// prepare builds celld, gets the image, starts both daemons, imports the
// image into both and sets up the floor container.
func (b *bench) prepare(ctx context.Context) error {
	b.celldBin = *flagCelld
	if b.celldBin == "" {
		b.celldBin = filepath.Join(b.work, "celld-bin")
		logf("building celld")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.celldBin, "./daemon/celld")
		cmd.Dir = harness.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./daemon/celld: %v\n%s", err, out)
		}
	}
	var err error
	if b.image, err = busyboxImage(); err != nil {
		return err
	}
	if err := b.makePayload(); err != nil {
		return err
	}
	logf("starting celld and LXD")
	if _, err := b.startCelld(ctx); err != nil {
		return err
	}
	if _, err := b.startLXD(ctx); err != nil {
		return err
	}
	for _, s := range b.servers() {
		var srv struct {
			Environment struct {
				ServerVersion string `json:"server_version"`
				DriverVersion string `json:"driver_version"`
			} `json:"environment"`
		}
		if err := s.sync(ctx, "GET", "/1.0", nil, &srv); err != nil {
			return err
		}
		if s.kind == "celld" {
			b.res.Machine.CelldVersion = srv.Environment.ServerVersion
		} else {
			b.res.Machine.LXDServerVersion = srv.Environment.ServerVersion
		}
		if _, err := s.importImage(ctx, b.image, imageAlias); err != nil {
			return err
		}
	}
	b.floor, err = b.prepareFloor(ctx, b.image)
	return err
}

// busyboxImage is the harness's cached busybox image.
func busyboxImage() (string, error) {
	return harness.BuildImage("build-busybox.sh", "busybox")
}

// makePayload writes the random file that push and pull move.
func (b *bench) makePayload() error {
	b.payload = filepath.Join(b.work, "payload.bin")
	b.size = int64(*flagFileMB) * 1000 * 1000
	f, err := os.Create(b.payload)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, b.size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// warmUp runs each workload once per daemon, untimed, so that first-use
// costs (the image volume of celld's dir pool, LXD's lazy set-up) are not
// counted as launch from a cached image.
func (b *bench) warmUp(ctx context.Context) error {
	logf("warm-up")
	for _, s := range b.servers() {
		name := s.prefix + "-warm"
		if err := s.launch(ctx, name, imageAlias); err != nil {
			return err
		}
		if _, err := s.lxc(ctx, "exec", name, "--", "true"); err != nil {
			return err
		}
		if err := s.execAPI(ctx, name, "true"); err != nil {
			return err
		}
		if _, err := s.lxc(ctx, "list", "--format", "csv"); err != nil {
			return err
		}
		if _, err := s.lxc(ctx, "query", "/1.0"); err != nil {
			return err
		}
		if _, err := s.listFull(ctx); err != nil {
			return err
		}
		if err := s.state(ctx, name, "stop", true); err != nil {
			return err
		}
		if err := s.delete(ctx, name); err != nil {
			return err
		}
	}
	if err := b.floor.start(ctx); err != nil {
		return err
	}
	if err := b.floor.attach(ctx); err != nil {
		return err
	}
	return b.floor.kill()
}

func since(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// timed runs f for each daemon in turn and records its time under key.
func (b *bench) timed(key string, f func(s *server) error) error {
	for _, s := range b.servers() {
		t := time.Now()
		if err := f(s); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		b.res.add(key, s.kind, since(t))
	}
	return nil
}

// round is one lifecycle round. Every step runs on celld, then on LXD
// (and, for start and exec, then on the floor container), so that all
// three see the same moment of a machine that may be busy with other work:
//
//	launch x iters, clean stop, (start, kill) x iters, exec (CLI, API) x
//	iters, CLI round trip x iters, push, pull, delete x iters
func (b *bench) round(ctx context.Context, r int) error {
	k := *flagIters
	name := func(s *server, i int) string { return fmt.Sprintf("%s-r%d-%d", s.prefix, r, i) }
	first := func(s *server) string { return name(s, 1) }
	for i := 1; i <= k; i++ {
		if err := b.timed("launch", func(s *server) error { return s.launch(ctx, name(s, i), imageAlias) }); err != nil {
			return err
		}
	}
	if err := b.timed("stop", func(s *server) error { return s.state(ctx, first(s), "stop", false) }); err != nil {
		return err
	}
	for i := 1; i <= k; i++ {
		if err := b.timed("start", func(s *server) error { return s.state(ctx, first(s), "start", false) }); err != nil {
			return err
		}
		t := time.Now()
		if err := b.floor.start(ctx); err != nil {
			return err
		}
		b.res.add("start", "floor", since(t))
		if st := b.floor.state(); st != "RUNNING" {
			return fmt.Errorf("floor: lxc-start returned with the container %s", st)
		}
		if i == k {
			break
		}
		for _, s := range b.servers() {
			if err := s.state(ctx, first(s), "stop", true); err != nil {
				return err
			}
		}
		if err := b.floor.kill(); err != nil {
			return err
		}
	}
	for i := 0; i < k; i++ {
		if err := b.timed("exec_cli", func(s *server) error {
			_, err := s.lxc(ctx, "exec", first(s), "--", "true")
			return err
		}); err != nil {
			return err
		}
	}
	for i := 0; i < k; i++ {
		if err := b.timed("exec_api", func(s *server) error { return s.execAPI(ctx, first(s), "true") }); err != nil {
			return err
		}
		t := time.Now()
		if err := b.floor.attach(ctx); err != nil {
			return err
		}
		b.res.add("exec", "floor", since(t))
	}
	for i := 0; i < k; i++ {
		if err := b.timed("cli_query", func(s *server) error {
			_, err := s.lxc(ctx, "query", "/1.0")
			return err
		}); err != nil {
			return err
		}
	}
	const remote = "/root/payload.bin"
	if err := b.timed("push", func(s *server) error {
		_, err := s.lxc(ctx, "file", "push", b.payload, first(s)+remote)
		return err
	}); err != nil {
		return err
	}
	pulled := filepath.Join(b.work, "pulled.bin")
	if err := b.timed("pull", func(s *server) error {
		defer os.Remove(pulled)
		if _, err := s.lxc(ctx, "file", "pull", first(s)+remote, pulled); err != nil {
			return err
		}
		st, err := os.Stat(pulled)
		if err != nil {
			return err
		}
		if st.Size() != b.size {
			return fmt.Errorf("%s: pulled %d bytes, pushed %d", s.kind, st.Size(), b.size)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := b.floor.kill(); err != nil {
		return err
	}
	for _, s := range b.servers() {
		var names []string
		for i := 1; i <= k; i++ {
			names = append(names, name(s, i))
		}
		if err := forEach(names, 4, func(n string) error { return s.state(ctx, n, "stop", true) }); err != nil {
			return err
		}
	}
	for i := 1; i <= k; i++ {
		if err := b.timed("delete", func(s *server) error { return s.delete(ctx, name(s, i)) }); err != nil {
			return err
		}
	}
	return nil
}

// many launches -instances instances on each daemon, measures RSS and
// list with them running, then removes them.
func (b *bench) many(ctx context.Context) error {
	n := *flagInstances
	if n == 0 {
		return nil
	}
	logf("launching %d instances on each daemon", n)
	names := map[*server][]string{}
	for i := 1; i <= n; i++ {
		for _, s := range b.servers() {
			name := fmt.Sprintf("%s-n%02d", s.prefix, i)
			if err := s.launch(ctx, name, imageAlias); err != nil {
				return err
			}
			names[s] = append(names[s], name)
		}
	}
	if err := b.measureRSS(ctx, "rss_idle_n"); err != nil {
		return err
	}
	logf("list with %d instances", n)
	// LXD takes seconds per list of 50: few samples per round keep the
	// default run short, and its figures vary little.
	perRound := *flagListIters
	for r := 0; r < *flagRounds; r++ {
		for i := 0; i < perRound; i++ {
			if err := b.timed("list_cli", func(s *server) error {
				out, err := s.lxc(ctx, "list", "--format", "csv")
				if err != nil {
					return err
				}
				if got := len(strings.Split(strings.TrimSpace(out), "\n")); got != n {
					return fmt.Errorf("%s: lxc list shows %d instances, want %d:\n%s", s.kind, got, n, out)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		for i := 0; i < perRound; i++ {
			if err := b.timed("list_api", func(s *server) error {
				got, err := s.listFull(ctx)
				if err == nil && got != n {
					err = fmt.Errorf("%s: GET /1.0/instances?recursion=2 lists %d instances, want %d", s.kind, got, n)
				}
				return err
			}); err != nil {
				return err
			}
		}
	}
	if err := b.httpsRate(ctx, n); err != nil {
		return err
	}
	logf("removing the %d instances", n)
	for _, s := range b.servers() {
		err := forEach(names[s], 4, func(name string) error {
			if err := s.state(ctx, name, "stop", true); err != nil {
				return err
			}
			return s.delete(ctx, name)
		})
		if err != nil {
			return err
		}
	}
	return b.measureRSS(ctx, "rss_after")
}

// measureRSS lets both daemons settle, then samples their VmRSS in turn.
func (b *bench) measureRSS(ctx context.Context, key string) error {
	if err := sleep(ctx, *flagSettle); err != nil {
		return err
	}
	for i := 0; i < 5; i++ {
		for _, s := range b.servers() {
			rss, err := vmRSS(s.pid())
			if err != nil {
				return fmt.Errorf("%s: read VmRSS: %w", s.kind, err)
			}
			b.res.add(key, s.kind, float64(rss)/(1<<20))
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) dumpLogs() {
	if b.work == "" {
		return
	}
	for _, f := range []string{"celld.log", "lxd.log", "lxd.out"} {
		if t := tailFile(filepath.Join(b.work, f), 25); t != "" {
			fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s\n", f, t)
		}
	}
}

// cleanup stops both daemons and the floor container and removes the work
// directory, after unmounting whatever is left mounted in it.
func (b *bench) cleanup() error {
	if b.work == "" {
		return nil
	}
	logf("cleaning up")
	b.stopCelld()
	b.stopLXD()
	if *flagLogs != "" {
		if err := os.MkdirAll(*flagLogs, 0o755); err == nil {
			for _, f := range []string{"celld.log", "lxd.log", "lxd.out"} {
				if data, err := os.ReadFile(filepath.Join(b.work, f)); err == nil {
					_ = os.WriteFile(filepath.Join(*flagLogs, f), data, 0o644)
				}
			}
		}
	}
	if b.floor != nil {
		if err := b.floor.kill(); err != nil {
			logf("cleanup: %v", err)
		}
	}
	return sweep(b.work, b.zpools)
}

// machineInfo describes the machine for the JSON results.
func machineInfo() machine {
	m := machine{Cores: numCPU()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		_, _ = fmt.Sscanf(string(data), "MemTotal: %d kB", &kb)
		m.MemoryBytes = kb * 1024
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if out, err := exec.Command("lxd", "--version").Output(); err == nil {
		m.LXDVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("lxc-start", "--version").Output(); err == nil {
		m.LiblxcVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "-C", harness.RepoRoot(), "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", harness.RepoRoot(), "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
			m.Commit += "-dirty"
		}
	}
	return m
}

func numCPU() int {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0
	}
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(string(data)), ",") {
		lo, hi, ok := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		if !ok {
			n++
			continue
		}
		z, _ := strconv.Atoi(hi)
		n += z - a + 1
	}
	return n
}
