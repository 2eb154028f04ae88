// Command celld is the Cell daemon.
//
//	celld               run in the foreground (CELL_DIR, default /var/lib/cell)
//	celld daemon --no-default-network   same, without making cellbr0 on first start
//	celld shutdown      stop every instance cleanly, then stop the daemon
//	celld waitready     wait until the daemon answers
//
// SIGTERM and SIGINT stop the daemon and leave containers running (for
// upgrades); SIGPWR, which the systemd unit sends when the host goes down,
// first stops every container cleanly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"cell/daemon"
)

func main() {
	debug := flag.Bool("debug", false, "log debug messages")
	noDefaultNetwork := flag.Bool("no-default-network", false, "daemon: do not create the cellbr0 bridge on first start")
	timeout := flag.Duration("timeout", 0, "waitready/shutdown: give up after this long (0: no limit)")
	// The command comes first (celld waitready --timeout 5s), flags after.
	args := os.Args[1:]
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	_ = flag.CommandLine.Parse(args)
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "Error: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	dir := os.Getenv("CELL_DIR")
	if dir == "" {
		dir = "/var/lib/cell"
	}
	var err error
	switch cmd {
	case "", "daemon":
		err = run(dir, *noDefaultNetwork)
	case "shutdown":
		err = request(dir, http.MethodPut, "/internal/shutdown", *timeout)
	case "waitready":
		err = waitReady(dir, *timeout)
	default:
		err = fmt.Errorf("unknown command %q (use daemon, shutdown or waitready)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(dir string, noDefaultNetwork bool) error {
	if os.Geteuid() != 0 {
		return errors.New("celld must run as root")
	}
	// Descriptors celld inherited without close-on-exec (from the shell or
	// service manager that started it) would otherwise reach every process
	// exec'd in a container: host files leaking into the container, and
	// processes CRIU refuses to checkpoint. Go opens its own files
	// close-on-exec already.
	_ = unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	ctx := context.Background()
	d, err := daemon.New(ctx, daemon.Options{Dir: dir, NoDefaultNetwork: noDefaultNetwork})
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPWR)
	served := make(chan error, 1)
	go func() { served <- d.Serve() }()
	select {
	case err := <-served:
		return err
	case sig := <-sigs:
		slog.Info("signal received", "signal", sig)
		if sig == syscall.SIGPWR {
			if err := d.StopInstances(ctx); err != nil {
				slog.Error("stop instances", "err", err)
			}
		}
	case <-d.ShutdownRequested():
		slog.Info("shutdown requested")
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return d.Stop(stopCtx)
}

func unixClient(dir string) *http.Client {
	sock := filepath.Join(dir, "unix.socket")
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func request(dir, method, path string, timeout time.Duration) error {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://celld"+path, nil)
	if err != nil {
		return err
	}
	resp, err := unixClient(dir).Do(req)
	if err != nil {
		return fmt.Errorf("reach celld: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("celld answered %s", resp.Status)
	}
	return nil
}

func waitReady(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := request(dir, http.MethodGet, "/1.0", time.Second)
		if err == nil {
			return nil
		}
		if timeout > 0 && time.Now().After(deadline) {
			return fmt.Errorf("celld not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
