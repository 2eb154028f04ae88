package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Manager keeps the host's side of the managed networks: one bridge, one
// nft table and one supervised dnsmasq each, with files under Dir/<name>/.
type Manager struct {
	// Dir holds one directory per network ($CELL_DIR/networks).
	Dir string

	mu   sync.Mutex
	sups map[string]*supervisor
}

// NewManager returns a manager whose networks keep their files in dir.
func NewManager(dir string) *Manager {
	return &Manager{Dir: dir, sups: map[string]*supervisor{}}
}

// supervisor restarts one network's dnsmasq when it dies.
type supervisor struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NetDir is the directory of network name.
func (m *Manager) NetDir(name string) string { return filepath.Join(m.Dir, name) }

// LeasesPath is the dnsmasq lease file of network name.
func (m *Manager) LeasesPath(name string) string {
	return filepath.Join(m.NetDir(name), leasesFile)
}

// HostsDir is network name's dhcp-hostsdir.
func (m *Manager) HostsDir(name string) string { return filepath.Join(m.NetDir(name), HostsDir) }

// DnsmasqPID is the pid of the network's running dnsmasq, 0 if none.
func (m *Manager) DnsmasqPID(name string) int { return dnsmasqPID(m.NetDir(name)) }

// Up makes the host match s: the bridge with its addresses, the NAT table,
// and a dnsmasq with s's configuration, supervised until Detach or
// Remove. It is idempotent: at daemon start it adopts a dnsmasq that still
// runs with the same configuration rather than starting a second one.
// The background supervision lives until ctx ends.
func (m *Manager) Up(ctx, background context.Context, s Spec) error {
	m.stopSupervisor(s.Name)
	dir := m.NetDir(s.Name)
	if err := os.MkdirAll(filepath.Join(dir, HostsDir), 0o755); err != nil {
		return fmt.Errorf("create network directory: %w", err)
	}
	// dnsmasq drops to nobody: it must be able to read its hosts files.
	for _, p := range []string{m.Dir, dir, filepath.Join(dir, HostsDir)} {
		if err := os.Chmod(p, 0o755); err != nil {
			return fmt.Errorf("network directory: %w", err)
		}
	}
	created, err := ensureBridge(ctx, s)
	if err != nil {
		return err
	}
	if err := enableForwarding(s); err != nil {
		return err
	}
	if err := applyNAT(ctx, s); err != nil {
		return err
	}
	if !s.IPv4.IsValid() && !s.IPv6.IsValid() {
		// A bridge without addresses has nothing for dnsmasq to serve
		// (and dnsmasq refuses to bind to it).
		return stopDnsmasq(ctx, dir)
	}
	conf := RenderDnsmasq(s, dir)
	confPath := filepath.Join(dir, confFile)
	old, _ := os.ReadFile(confPath)
	// A dnsmasq of a bridge that was made again (deleted behind celld's
	// back) listens on the old one: it is replaced too.
	if pid := dnsmasqPID(dir); pid == 0 || created || string(old) != conf {
		if err := stopDnsmasq(ctx, dir); err != nil {
			return err
		}
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("write dnsmasq configuration: %w", err)
		}
		if _, err := startDnsmasq(ctx, dir); err != nil {
			return err
		}
	} else {
		slog.Info("adopted running dnsmasq", "network", s.Name, "pid", pid)
	}
	m.startSupervisor(background, s.Name)
	return nil
}

func (m *Manager) startSupervisor(ctx context.Context, name string) {
	sctx, cancel := context.WithCancel(ctx)
	sup := &supervisor{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	m.sups[name] = sup
	m.mu.Unlock()
	go func() {
		defer close(sup.done)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			m.watchHosts(sctx, name)
		}()
		m.supervise(sctx, name)
		<-watched
	}()
}

// supervise waits for the network's dnsmasq to exit and starts a new one,
// backing off while starts keep failing, until ctx ends.
func (m *Manager) supervise(ctx context.Context, name string) {
	dir := m.NetDir(name)
	backoff := time.Second
	for {
		if pid := dnsmasqPID(dir); pid != 0 {
			if !waitExit(ctx, pid) {
				return
			}
			backoff = time.Second
		}
		if ctx.Err() != nil {
			return
		}
		slog.Warn("dnsmasq is not running; starting it again", "network", name)
		pid, err := startDnsmasq(ctx, dir)
		if err == nil {
			slog.Info("dnsmasq restarted", "network", name, "pid", pid)
			continue
		}
		slog.Error("restart dnsmasq", "network", name, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// stopSupervisor stops watching the network's dnsmasq (which keeps running).
func (m *Manager) stopSupervisor(name string) {
	m.mu.Lock()
	sup := m.sups[name]
	delete(m.sups, name)
	m.mu.Unlock()
	if sup != nil {
		sup.cancel()
		<-sup.done
	}
}

// Detach stops supervising every network and leaves bridges and dnsmasq
// running: what celld does when it stops, so that instances keep their
// network across a daemon restart.
func (m *Manager) Detach() {
	m.mu.Lock()
	names := make([]string, 0, len(m.sups))
	for n := range m.sups {
		names = append(names, n)
	}
	m.mu.Unlock()
	for _, n := range names {
		m.stopSupervisor(n)
	}
}

// Remove takes the network off the host: dnsmasq, NAT table, bridge and
// directory (leases included). Anything already gone is fine, so it also
// finishes an interrupted removal or undoes a failed creation.
func (m *Manager) Remove(ctx context.Context, name string) error {
	m.stopSupervisor(name)
	dir := m.NetDir(name)
	if err := stopDnsmasq(ctx, dir); err != nil {
		return err
	}
	if err := deleteNAT(ctx, name); err != nil {
		return err
	}
	if err := deleteBridge(ctx, name); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove network directory: %w", err)
	}
	return nil
}

// Rename moves a network that is down (after Down) to its new name: the
// bridge and the directory, leases and hosts files included. Up with the
// new Spec brings it back.
func (m *Manager) Rename(ctx context.Context, oldName, newName string) error {
	if err := renameBridge(ctx, oldName, newName); err != nil {
		return err
	}
	if err := os.Rename(m.NetDir(oldName), m.NetDir(newName)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rename network directory: %w", err)
	}
	return nil
}

// Down stops the network's dnsmasq and removes its NAT table, keeping the
// bridge and files: the first step of a rename.
func (m *Manager) Down(ctx context.Context, name string) error {
	m.stopSupervisor(name)
	if err := stopDnsmasq(ctx, m.NetDir(name)); err != nil {
		return err
	}
	return deleteNAT(ctx, name)
}

// ReloadHosts makes the network's dnsmasq read its hosts directory again.
// New and changed files are picked up on their own, but dnsmasq keeps the
// entries of a removed or rewritten file until it is told (SIGHUP).
func (m *Manager) ReloadHosts(name string) error {
	pid := dnsmasqPID(m.NetDir(name))
	if pid == 0 {
		return nil // the supervisor's next start reads the directory anyway
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("reload dnsmasq hosts of %s: %w", name, err)
	}
	return nil
}
