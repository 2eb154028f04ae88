package daemon

// Proxy devices forward connections between the host and an instance.
//
// celld runs them itself, as goroutines, rather than as one helper process
// per device (LXD's forkproxy): a listener and its copies cost a few
// kilobytes instead of a process, and nothing outlives celld that it would
// have to find and adopt again. The price is that forwarding pauses while
// celld restarts: open connections end, and a restarted celld listens
// again for every running instance (restoreProxies) before it serves the
// API.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"cell/daemon/config"
	"cell/daemon/liblxc"
	"cell/shared/api"
)

// proxyUDPIdle is how long a UDP flow may stay silent before its socket
// into the instance is closed.
const proxyUDPIdle = 2 * time.Minute

// proxySet holds the running proxies, by "instance/device".
type proxySet struct {
	mu sync.Mutex
	m  map[string]*proxy
}

// proxy is one running proxy device.
type proxy struct {
	instance, device string
	listen, connect  config.ProxyAddress
	// inInstance: bind=instance, listen inside and connect on the host.
	inInstance bool
	cancel     context.CancelFunc
	done       chan struct{}
}

func validateProxyDevice(name string, dev map[string]string) error {
	if _, _, err := config.ValidateProxy(name, dev); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

// proxyDevices returns the names of an instance's proxy devices, sorted.
func proxyDevices(devices api.Devices) []string {
	var out []string
	for name, dev := range devices {
		if dev["type"] == "proxy" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// startProxies starts the proxies of a running instance; if one cannot
// listen, those it started are stopped again.
func (d *Daemon) startProxies(inst *instance) error {
	started := []string{}
	for _, name := range proxyDevices(inst.expandedDevices) {
		if err := d.startProxy(inst.Name, name, inst.expandedDevices[name]); err != nil {
			d.stopProxies(inst.Name, started)
			return err
		}
		started = append(started, name)
	}
	return nil
}

// startProxy listens for one proxy device (replacing a listener it may
// still have from an earlier run of the instance).
func (d *Daemon) startProxy(instance, name string, dev map[string]string) error {
	listen, connect, err := config.ValidateProxy(name, dev)
	if err != nil {
		return badRequest("%v", err)
	}
	d.stopProxies(instance, []string{name})
	p := &proxy{instance: instance, device: name, listen: listen, connect: connect,
		inInstance: dev["bind"] == "instance", done: make(chan struct{})}
	var ln net.Listener
	var pc net.PacketConn
	open := func() error {
		var err error
		if listen.Network == "udp" {
			pc, err = net.ListenPacket("udp", listen.Address)
		} else {
			if listen.Network == "unix" {
				removeStaleSocket(listen.Address)
			}
			ln, err = net.Listen(listen.Network, listen.Address)
		}
		return err
	}
	if p.inInstance {
		pid := d.runtime.InitPID(instance)
		if pid <= 0 {
			return badRequest("instance %q is not running", instance)
		}
		err = inProxyNS(pid, listen, open)
		if ul, ok := ln.(*net.UnixListener); ok {
			// Closing must not unlink the path: celld closes it from the
			// host's mount namespace, where the same path is another file.
			ul.SetUnlinkOnClose(false)
		}
	} else {
		err = open()
	}
	if err != nil {
		where := "on the host"
		if p.inInstance {
			where = "in instance " + instance
		}
		return badRequest("device %q: cannot listen on %s %s: %v", name, listen, where, err)
	}
	ctx, cancel := context.WithCancel(d.ctx)
	p.cancel = cancel
	d.proxies.mu.Lock()
	if d.proxies.m == nil {
		d.proxies.m = map[string]*proxy{}
	}
	d.proxies.m[instance+"/"+name] = p
	d.proxies.mu.Unlock()
	go func() {
		defer close(p.done)
		if pc != nil {
			d.serveUDPProxy(ctx, p, pc)
		} else {
			d.serveStreamProxy(ctx, p, ln)
		}
	}()
	slog.Debug("proxy listening", "instance", instance, "device", name, "listen", listen.String(), "connect", connect.String())
	return nil
}

// inProxyNS runs fn in the namespace of the instance an address lives in:
// a unix socket is a path in its filesystem (resolved in its mount
// namespace, so that its symlinks cannot lead out of it), anything else an
// address in its network.
func inProxyNS(pid int, a config.ProxyAddress, fn func() error) error {
	if a.Network == "unix" {
		return inMountNS(pid, fn)
	}
	return inNetNS(pid, fn)
}

// stopAllProxies stops every proxy of an instance.
func (d *Daemon) stopAllProxies(instance string) {
	d.stopProxiesIf(instance, func(string) bool { return true })
}

// stopProxies stops the named proxies of an instance; nil names stops all
// of them (an empty, non-nil list none).
func (d *Daemon) stopProxies(instance string, names []string) {
	if names == nil {
		d.stopAllProxies(instance)
		return
	}
	d.stopProxiesIf(instance, func(dev string) bool { return slices.Contains(names, dev) })
}

// stopProxiesIf stops the proxies of an instance whose device stop
// selects, and waits until their listeners are closed.
func (d *Daemon) stopProxiesIf(instance string, stop func(device string) bool) {
	d.proxies.mu.Lock()
	var stopping []*proxy
	for key, p := range d.proxies.m {
		if p.instance == instance && stop(p.device) {
			stopping = append(stopping, p)
			delete(d.proxies.m, key)
		}
	}
	d.proxies.mu.Unlock()
	for _, p := range stopping {
		p.cancel()
		<-p.done
	}
}

// updateProxies applies a change of a running instance's proxy devices
// before it is saved: removed and changed ones stop, new and changed ones
// start. undo puts the old ones back if saving fails.
func (d *Daemon) updateProxies(before, after *instance) (undo func(), err error) {
	undo = func() {}
	if s := d.runtimeState(before.Name); s != liblxc.Running && s != liblxc.Frozen {
		return undo, nil
	}
	removed, added := []string{}, []string{}
	for _, name := range proxyDevices(before.expandedDevices) {
		if nd, ok := after.expandedDevices[name]; !ok || !maps.Equal(nd, before.expandedDevices[name]) {
			removed = append(removed, name)
		}
	}
	for _, name := range proxyDevices(after.expandedDevices) {
		if od, ok := before.expandedDevices[name]; !ok || !maps.Equal(od, after.expandedDevices[name]) {
			added = append(added, name)
		}
	}
	if len(removed)+len(added) == 0 {
		return undo, nil
	}
	restore := func() {
		for _, name := range removed {
			if err := d.startProxy(before.Name, name, before.expandedDevices[name]); err != nil {
				slog.Warn("restore proxy", "instance", before.Name, "device", name, "err", err)
			}
		}
	}
	d.stopProxies(before.Name, removed)
	started := []string{}
	for _, name := range added {
		if err := d.startProxy(after.Name, name, after.expandedDevices[name]); err != nil {
			d.stopProxies(after.Name, started)
			restore()
			return nil, err
		}
		started = append(started, name)
	}
	return func() {
		d.stopProxies(after.Name, started)
		restore()
	}, nil
}

// restoreProxies listens again for the proxies of the instances that run
// while celld starts.
func (d *Daemon) restoreProxies(ctx context.Context) {
	rows, err := d.db.Instances(ctx)
	if err != nil {
		slog.Error("restore proxies", "err", err)
		return
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		slog.Error("restore proxies", "err", err)
		return
	}
	for _, row := range rows {
		inst := expand(row, profiles)
		if len(proxyDevices(inst.expandedDevices)) == 0 {
			continue
		}
		if s := d.runtimeState(inst.Name); s != liblxc.Running && s != liblxc.Frozen {
			continue
		}
		if err := d.startProxies(inst); err != nil {
			slog.Error("restore proxies", "instance", inst.Name, "err", err)
		}
	}
}

// proxyDial connects to the proxy's connect address: inside the instance for
// bind=host (a socket made in its network namespace, or a unix socket
// path resolved in its mount namespace), on the host for bind=instance.
func (d *Daemon) proxyDial(ctx context.Context, p *proxy) (net.Conn, error) {
	var dialer net.Dialer
	if p.inInstance {
		return dialer.DialContext(ctx, p.connect.Network, p.connect.Address)
	}
	pid := d.runtime.InitPID(p.instance)
	if pid <= 0 {
		return nil, fmt.Errorf("instance %q is not running", p.instance)
	}
	var c net.Conn
	err := inProxyNS(pid, p.connect, func() error {
		var err error
		c, err = dialer.DialContext(ctx, p.connect.Network, p.connect.Address)
		return err
	})
	return c, err
}

// serveStreamProxy accepts TCP or unix connections and pipes each to a
// new connection to the other side.
func (d *Daemon) serveStreamProxy(ctx context.Context, p *proxy, ln net.Listener) {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				slog.Warn("proxy accept", "instance", p.instance, "device", p.device, "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			up, err := d.proxyDial(dctx, p)
			cancel()
			if err != nil {
				slog.Warn("proxy connect", "instance", p.instance, "device", p.device, "connect", p.connect.String(), "err", err)
				return
			}
			defer up.Close()
			pipe(ctx, c, up)
		}()
	}
}

// pipe copies both ways until both directions end (each end is told when
// the other stops writing) or ctx ends.
func pipe(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	var wg sync.WaitGroup
	one := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go one(a, b)
	go one(b, a)
	wg.Wait()
}

// serveUDPProxy forwards datagrams: each client address gets its own
// socket to the other side, and the answers go back to it.
func (d *Daemon) serveUDPProxy(ctx context.Context, p *proxy, pc net.PacketConn) {
	go func() { <-ctx.Done(); pc.Close() }()
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, c := range flows {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				slog.Warn("proxy read", "instance", p.instance, "device", p.device, "err", err)
			}
			return
		}
		mu.Lock()
		up := flows[from.String()]
		mu.Unlock()
		if up == nil {
			if up, err = d.proxyDial(ctx, p); err != nil {
				slog.Warn("proxy connect", "instance", p.instance, "device", p.device, "connect", p.connect.String(), "err", err)
				continue
			}
			mu.Lock()
			flows[from.String()] = up
			mu.Unlock()
			wg.Add(1)
			go func(up net.Conn, from net.Addr) {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(flows, from.String())
					mu.Unlock()
					up.Close()
				}()
				b := make([]byte, 65535)
				for {
					_ = up.SetReadDeadline(time.Now().Add(proxyUDPIdle))
					n, err := up.Read(b)
					if err != nil {
						return
					}
					if _, err := pc.WriteTo(b[:n], from); err != nil {
						return
					}
				}
			}(up, from)
		}
		_, _ = up.Write(buf[:n])
	}
}

// removeStaleSocket removes a unix socket that nothing listens on any
// more (left by a celld that was killed, or by an instance's earlier run),
// so that listening there again works. Anything else at the path stays,
// and listening fails with its own error.
func removeStaleSocket(path string) {
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		return
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		_ = os.Remove(path)
	}
}
