package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dnsmasq runs daemonized, not as celld's child: like LXD's, it outlives
// a celld restart (an upgrade must not cut DHCP and DNS), and the next
// celld adopts it through its pid file. Supervision watches the adopted
// process through a pidfd, which works for processes that are not our
// children, and starts a new one when it dies. Leases live in a file in
// the network's directory, so a new dnsmasq hands out the same addresses.

// Dnsmasq is the dnsmasq binary; Debian's dnsmasq-base installs it here.
var Dnsmasq = "/usr/sbin/dnsmasq"

// Files of a network's directory.
const (
	confFile   = "dnsmasq.conf"
	pidFile    = "dnsmasq.pid"
	leasesFile = "dnsmasq.leases"
	// HostsDir is the dhcp-hostsdir: one file per instance nic, each one
	// dnsmasq dhcp-host line. dnsmasq reads new files itself; celld sends
	// it a SIGHUP when one is removed or rewritten (hostswatch.go).
	HostsDir = "dhcp-hosts"
)

// RenderDnsmasq returns the dnsmasq configuration of network s whose
// files live in dir.
//
// Upstream DNS: names in the network's own domain are answered locally and
// never forwarded (local=/domain/). Other names are forwarded to the host's
// resolvers only when the network has NAT, i.e. a way out; an isolated
// network's dnsmasq reads no resolv.conf, so nothing leaves the host on
// behalf of its instances.
func RenderDnsmasq(s Spec, dir string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# Written by celld for network %s; changes are overwritten.", s.Name)
	line("pid-file=%s", filepath.Join(dir, pidFile))
	line("dhcp-leasefile=%s", filepath.Join(dir, leasesFile))
	line("dhcp-hostsdir=%s", filepath.Join(dir, HostsDir))
	// dnsmasq drops root for nobody, as with LXD, but nobody must be
	// able to reach the hosts directory it watches: under a private
	// directory (CELL_DIR in /root) it keeps root rather than silently
	// never seeing the instances' names.
	if othersCanReach(filepath.Join(dir, HostsDir)) {
		line("user=nobody")
		line("group=nogroup")
	} else {
		line("user=root")
	}
	line("bind-interfaces")
	line("interface=%s", s.Name)
	line("except-interface=lo")
	for _, p := range []struct {
		on bool
		a  string
	}{{s.IPv4.IsValid(), s.IPv4.Addr().String()}, {s.IPv6.IsValid(), s.IPv6.Addr().String()}} {
		if p.on {
			line("listen-address=%s", p.a)
		}
	}
	line("no-hosts")
	line("strict-order")
	line("domain-needed")
	line("bogus-priv")
	if !s.NAT4 && !s.NAT6 {
		line("no-resolv")
	}
	switch s.DNSMode {
	case "none":
		line("port=0")
	case "managed":
		// Only names celld gave (dhcp-hostsdir) are published: an
		// instance cannot claim another one's name through DHCP.
		line("dhcp-ignore-names")
	}
	if s.DNSMode != "none" {
		line("domain=%s", s.Domain)
		line("local=/%s/", s.Domain)
	}
	if s.IPv4.IsValid() && s.DHCP4 {
		line("dhcp-authoritative")
		line("dhcp-no-override")
		for _, r := range s.Ranges {
			line("dhcp-range=%s,%s,%s", r.Start, r.End, s.Expiry)
		}
		if s.MTU > 0 {
			line("dhcp-option-force=26,%d", s.MTU)
		}
	}
	if s.IPv6.IsValid() {
		line("enable-ra")
		mode := "ra-only"
		if s.DHCP6 {
			mode = "ra-stateless,ra-names"
		}
		line("dhcp-range=%s,%s,%d,%s", s.IPv6.Masked().Addr(), mode, s.IPv6.Bits(), s.Expiry)
	}
	if s.Raw != "" {
		line("%s", strings.TrimSpace(s.Raw))
	}
	return b.String()
}

// othersCanReach tells whether a user without privileges can traverse
// every directory down to dir.
func othersCanReach(dir string) bool {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if p == filepath.Dir(p) {
			return true
		}
	}
}

// dnsmasqPID returns the pid of the dnsmasq serving the network in dir,
// or 0 when none runs: the pid file's process must be a dnsmasq started
// with this directory's configuration (a stale pid file may name a
// recycled pid).
func dnsmasqPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || filepath.Base(args[0]) != "dnsmasq" || args[1] != "--conf-file="+filepath.Join(dir, confFile) {
		return 0
	}
	return pid
}

// startDnsmasq starts a daemonized dnsmasq for the network in dir and
// returns its pid. dnsmasq's parent exits only once the daemon has bound
// its sockets and read its configuration, with a message when that failed.
func startDnsmasq(ctx context.Context, dir string) (int, error) {
	errFile, err := os.CreateTemp(dir, ".dnsmasq-start-*")
	if err != nil {
		return 0, fmt.Errorf("start dnsmasq: %w", err)
	}
	defer os.Remove(errFile.Name())
	defer errFile.Close()
	_ = os.Remove(filepath.Join(dir, pidFile))
	cmd := exec.CommandContext(ctx, Dnsmasq, "--conf-file="+filepath.Join(dir, confFile))
	// A file rather than a pipe: the daemon inherits it, and waiting for
	// a pipe's end would wait for the daemon's exit.
	cmd.Stdout, cmd.Stderr = errFile, errFile
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return 0, fmt.Errorf("start dnsmasq: %w: %s", err, strings.TrimSpace(string(msg)))
	}
	pid := dnsmasqPID(dir)
	if pid == 0 {
		return 0, errors.New("start dnsmasq: it exited without leaving a running daemon")
	}
	return pid, nil
}

// waitExit blocks until process pid exits or ctx ends; it reports whether
// the process exited.
func waitExit(ctx context.Context, pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // already gone
	}
	defer unix.Close(fd)
	for {
		// A pidfd becomes readable when its process exits. Poll in short
		// slices so that ctx is noticed.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 500)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return true
		}
		if n > 0 {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
	}
}

// stopDnsmasq terminates the network's dnsmasq, if one runs, and waits
// for it to be gone.
func stopDnsmasq(ctx context.Context, dir string) error {
	pid := dnsmasqPID(dir)
	if pid == 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop dnsmasq %d: %w", pid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if waitExit(wctx, pid) {
		return nil
	}
	slog.Warn("dnsmasq did not stop on SIGTERM; killing it", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitExit(ctx, pid) {
		return fmt.Errorf("stop dnsmasq %d: %w", pid, ctx.Err())
	}
	return nil
}
