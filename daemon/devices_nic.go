package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"cell/daemon/config"
	"cell/daemon/liblxc"
	"cell/shared/api"
)

// Volatile keys of a nic device, as LXD names them.
func keyNICHwaddr(dev string) string   { return "volatile." + dev + ".hwaddr" }
func keyNICName(dev string) string     { return "volatile." + dev + ".name" }
func keyNICHostName(dev string) string { return "volatile." + dev + ".host_name" }

// validateNICDevice checks a nic device's keys and values (validateDevices).
func validateNICDevice(name string, dev map[string]string) error {
	if err := config.ValidateNIC(name, dev); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

// nicDevices returns the names of the nic devices, sorted: the order of
// their lxc.net entries and of the ethN names they get.
func nicDevices(devices api.Devices) []string {
	var out []string
	for name, dev := range devices {
		if dev["type"] == "nic" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// checkNICs checks what the nics of an instance need from the host: the
// parent bridge or interface exists, the managed network exists, and a
// static address lies in that network's subnet.
func (d *Daemon) checkNICs(ctx context.Context, devices api.Devices) error {
	names := map[string]string{}
	for _, name := range nicDevices(devices) {
		dev := devices[name]
		if err := validateNICDevice(name, dev); err != nil {
			return err
		}
		if n := dev["name"]; n != "" {
			if other, ok := names[n]; ok {
				return badRequest("devices %q and %q both name their interface %q", other, name, n)
			}
			names[n] = name
		}
		if network := dev["network"]; network != "" {
			if err := d.checkNICNetwork(ctx, name, dev); err != nil {
				return err
			}
			continue
		}
		parent := dev["parent"]
		switch dev["nictype"] {
		case "bridged":
			if _, err := os.Stat(filepath.Join("/sys/class/net", parent, "bridge")); err != nil {
				return badRequest("device %q: parent %q is not a bridge on the host (create it, or use network=<managed network>)", name, parent)
			}
		case "macvlan":
			if _, err := os.Stat(filepath.Join("/sys/class/net", parent)); err != nil {
				return badRequest("device %q: parent interface %q does not exist on the host", name, parent)
			}
		}
	}
	return nil
}

// checkNICNetwork checks that a nic's managed network exists and that its
// static ipv4.address is a host address of the network's subnet.
func (d *Daemon) checkNICNetwork(ctx context.Context, name string, dev map[string]string) error {
	n, err := d.managedNetwork(ctx, dev["network"])
	if ae := (*apiError)(nil); errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return badRequest("device %q: managed network %q does not exist (see c network list)", name, dev["network"])
	}
	if err != nil {
		return err
	}
	bridge, _ := netip.ParsePrefix(n.Config["ipv4.address"])
	static := dev["ipv4.address"]
	if static == "" {
		return nil
	}
	if !bridge.IsValid() {
		return badRequest("device %q: network %q has no IPv4 subnet: ipv4.address cannot be used on it", name, n.Name)
	}
	addr, err := netip.ParseAddr(static)
	if err != nil {
		return badRequest("device %q: ipv4.address %q is not an IPv4 address", name, static)
	}
	subnet := bridge.Masked()
	if !subnet.Contains(addr) {
		return badRequest("device %q: ipv4.address %s is outside network %q's subnet %s", name, static, n.Name, subnet)
	}
	if addr == bridge.Addr() || addr == subnet.Addr() || addr == lastAddr(subnet) {
		return badRequest("device %q: ipv4.address %s is the bridge's, network or broadcast address of %s", name, static, subnet)
	}
	return nil
}

// lastAddr is the broadcast address of an IPv4 subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(b)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// newHwaddr makes a MAC address in LXD's 00:16:3e range.
func newHwaddr() string {
	h := randomHex(3)
	return "00:16:3e:" + h[0:2] + ":" + h[2:4] + ":" + h[4:6]
}

// nicHwaddr is the MAC address a nic has: its own hwaddr key, or the one
// generated once for it.
func nicHwaddr(inst *instance, name string) string {
	if v := inst.expandedDevices[name]["hwaddr"]; v != "" {
		return v
	}
	return inst.Config[keyNICHwaddr(name)]
}

// syncNICs makes an instance's volatile nic keys and dnsmasq host entries
// match its nics: a MAC address for each nic that has none yet, no
// volatile keys of nics that are gone, and one dhcp-hosts file per nic on
// a managed network (so that it gets its static address and the instance's
// name resolves).
func (d *Daemon) syncNICs(ctx context.Context, inst *instance) error {
	set := map[string]string{}
	nics := nicDevices(inst.expandedDevices)
	for _, name := range nics {
		if inst.expandedDevices[name]["hwaddr"] == "" && inst.Config[keyNICHwaddr(name)] == "" {
			set[keyNICHwaddr(name)] = newHwaddr()
		}
	}
	for k := range inst.Config {
		dev, field, ok := volatileDeviceKey(k)
		if ok && (field == "hwaddr" || field == "name" || field == "host_name") && inst.expandedDevices[dev]["type"] != "nic" {
			set[k] = ""
		}
	}
	if len(set) > 0 {
		if err := d.db.SetInstanceConfig(ctx, inst.ID, set); err != nil {
			return fmt.Errorf("record nic addresses of %q: %w", inst.Name, err)
		}
		for k, v := range set {
			if v == "" {
				delete(inst.Config, k)
			} else {
				inst.Config[k] = v
			}
		}
	}
	want := map[string]string{}
	for _, name := range nics {
		dev := inst.expandedDevices[name]
		if dev["network"] == "" {
			continue
		}
		line := nicHwaddr(inst, name)
		if ip := dev["ipv4.address"]; ip != "" {
			line += "," + ip
		}
		want[filepath.Join(d.networkDHCPHostsDir(dev["network"]), inst.Name+"."+name)] = line + "," + inst.Name + "\n"
	}
	for path, line := range want {
		if err := writeFileAtomic(path, []byte(line)); err != nil {
			return fmt.Errorf("write dnsmasq host entry of %q: %w", inst.Name, err)
		}
	}
	d.removeNICHostFiles(inst.Name, want)
	return nil
}

// volatileDeviceKey splits "volatile.DEV.FIELD"; FIELD is the last part
// (device names may hold dots).
func volatileDeviceKey(k string) (dev, field string, ok bool) {
	rest, ok := strings.CutPrefix(k, "volatile.")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// removeNICHostFiles removes the dnsmasq host entries of an instance's
// nics, on every managed network, except those in keep. Instance names
// hold no dots, so "NAME.*" matches this instance's files alone.
func (d *Daemon) removeNICHostFiles(instance string, keep map[string]string) {
	files, _ := filepath.Glob(filepath.Join(d.dir, "networks", "*", "dhcp-hosts", instance+".*"))
	for _, f := range files {
		if _, ok := keep[f]; ok {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove dnsmasq host entry", "file", f, "err", err)
		}
	}
}

// writeFileAtomic writes a file through a temporary and a rename, so that
// dnsmasq (which watches the directory) never reads half of it.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startNICs returns the lxc nics of an instance about to start, after
// checking the host has what they need. The ethN names and veth host
// names it picks are recorded in volatile keys (the host name only while
// the instance runs, as LXD does).
func (d *Daemon) startNICs(ctx context.Context, inst *instance) ([]liblxc.NIC, error) {
	names := nicDevices(inst.expandedDevices)
	if len(names) == 0 {
		return nil, nil
	}
	if err := d.checkNICs(ctx, inst.expandedDevices); err != nil {
		return nil, err
	}
	for _, name := range names {
		if network := inst.expandedDevices[name]["network"]; network != "" {
			if _, err := os.Stat(filepath.Join("/sys/class/net", network, "bridge")); err != nil {
				return nil, badRequest("device %q: the bridge of network %q is not up (see c network info %s)", name, network, network)
			}
		}
	}
	if err := d.syncNICs(ctx, inst); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, name := range names {
		if n := inst.expandedDevices[name]["name"]; n != "" {
			used[n] = true
		}
	}
	set := map[string]string{}
	var out []liblxc.NIC
	for _, name := range names {
		out = append(out, lxcNIC(inst, name, used, set))
	}
	if err := d.db.SetInstanceConfig(ctx, inst.ID, set); err != nil {
		return nil, fmt.Errorf("record nic names of %q: %w", inst.Name, err)
	}
	maps.Copy(inst.Config, set)
	return out, nil
}

// lxcNIC describes nic device name of inst for liblxc. An interface name
// it picks (not in used, which it adds to) and the veth host name go into
// set, to be recorded in volatile keys.
func lxcNIC(inst *instance, name string, used map[string]bool, set map[string]string) liblxc.NIC {
	dev := inst.expandedDevices[name]
	nic := liblxc.NIC{Type: "veth", Hwaddr: nicHwaddr(inst, name), Name: dev["name"]}
	if nic.Name == "" {
		// LXD's default: the first free ethN, kept across starts.
		nic.Name = inst.Config[keyNICName(name)]
		if nic.Name == "" || used[nic.Name] {
			for i := 0; ; i++ {
				if n := "eth" + strconv.Itoa(i); !used[n] {
					nic.Name = n
					break
				}
			}
			set[keyNICName(name)] = nic.Name
		}
	}
	used[nic.Name] = true
	nic.MTU, _ = strconv.Atoi(dev["mtu"])
	switch {
	case dev["network"] != "":
		// A managed network's bridge has the network's name.
		nic.Link = dev["network"]
	case dev["nictype"] == "macvlan":
		nic.Type, nic.Link = "macvlan", dev["parent"]
	case dev["nictype"] == "bridged":
		nic.Link = dev["parent"]
	}
	if nic.Type == "veth" {
		nic.HostName = dev["host_name"]
		if nic.HostName == "" {
			nic.HostName = "veth" + randomHex(4)
		}
		set[keyNICHostName(name)] = nic.HostName
	}
	return nic
}

// stoppedNICs forgets the veth host names of a stopped instance.
func (d *Daemon) stoppedNICs(ctx context.Context, inst *instance) {
	set := map[string]string{}
	for k := range inst.Config {
		if _, field, ok := volatileDeviceKey(k); ok && field == "host_name" {
			set[k] = ""
		}
	}
	if len(set) == 0 {
		return
	}
	if err := d.db.SetInstanceConfig(ctx, inst.ID, set); err != nil {
		slog.Warn("forget veth names", "instance", inst.Name, "err", err)
	}
}

// renamedNICs moves an instance's dnsmasq host entries to its new name.
// Proxies still listening for the old name (the instance stopped on its
// own, without celld) stop: they would lead nowhere.
func (d *Daemon) renamedNICs(ctx context.Context, oldName, newName string) {
	d.stopAllProxies(oldName)
	d.removeNICHostFiles(oldName, nil)
	d.resyncNICs(ctx, newName)
}

// checkNICUpdate checks the nics an update adds or changes.
func (d *Daemon) checkNICUpdate(ctx context.Context, before, after *instance) error {
	changed := api.Devices{}
	_, added := changedNICs(before, after)
	for _, name := range added {
		changed[name] = after.expandedDevices[name]
	}
	return d.checkNICs(ctx, changed)
}

// changedNICs returns the nics an update takes away (removed or changed)
// and the ones it brings (new or changed).
func changedNICs(before, after *instance) (removed, added []string) {
	for _, name := range nicDevices(before.expandedDevices) {
		if nd, ok := after.expandedDevices[name]; !ok || !maps.Equal(nd, before.expandedDevices[name]) {
			removed = append(removed, name)
		}
	}
	for _, name := range nicDevices(after.expandedDevices) {
		if od, ok := before.expandedDevices[name]; !ok || !maps.Equal(od, after.expandedDevices[name]) {
			added = append(added, name)
		}
	}
	return removed, added
}

// nicName is the interface name a nic has inside the instance.
func nicName(inst *instance, name string) string {
	if n := inst.expandedDevices[name]["name"]; n != "" {
		return n
	}
	return inst.Config[keyNICName(name)]
}

// hotplugNICs applies a change of a running instance's nics before it is
// saved, as LXD does: removed and changed nics are deleted inside the
// container, new and changed ones made on the host and moved in. The
// names and MAC addresses it picks go into after.Config, which is the
// config being saved. undo reverts the interfaces if saving fails.
func (d *Daemon) hotplugNICs(ctx context.Context, before, after *instance) (undo func(), err error) {
	undo = func() {}
	if s := d.runtimeState(before.Name); s != liblxc.Running && s != liblxc.Frozen {
		return undo, nil
	}
	pid := d.runtime.InitPID(before.Name)
	removed, added := changedNICs(before, after)
	if pid <= 0 || len(removed)+len(added) == 0 {
		return undo, nil
	}
	used := map[string]bool{}
	for _, name := range nicDevices(after.expandedDevices) {
		if !slices.Contains(added, name) || after.expandedDevices[name]["name"] != "" {
			used[nicName(after, name)] = true
		}
	}
	var undos []func()
	revert := func() {
		for _, f := range slices.Backward(undos) {
			f()
		}
	}
	for _, name := range removed {
		nic := lxcNIC(before, name, map[string]bool{}, map[string]string{})
		nic.Name = nicName(before, name)
		if err := unplugNIC(ctx, pid, nic.Name); err != nil {
			revert()
			return nil, err
		}
		if hn := before.Config[keyNICHostName(name)]; hn != "" {
			nic.HostName = hn
		}
		undos = append(undos, func() {
			if err := plugNIC(context.WithoutCancel(ctx), pid, nic); err != nil {
				slog.Warn("put back nic", "instance", before.Name, "device", name, "err", err)
			}
		})
	}
	set := map[string]string{}
	for _, name := range added {
		if nicHwaddr(after, name) == "" {
			after.Config[keyNICHwaddr(name)] = newHwaddr()
		}
		nic := lxcNIC(after, name, used, set)
		if err := plugNIC(ctx, pid, nic); err != nil {
			revert()
			return nil, badRequest("device %q: %v", name, err)
		}
		undos = append(undos, func() { _ = unplugNIC(context.WithoutCancel(ctx), pid, nic.Name) })
	}
	maps.Copy(after.Config, set)
	return revert, nil
}

// ipLink runs ip(8) with args, in the network namespace of pid when it
// is not 0.
func ipLink(ctx context.Context, pid int, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	if pid > 0 {
		cmd = exec.CommandContext(ctx, "nsenter", append([]string{"--net=/proc/" + strconv.Itoa(pid) + "/ns/net", "ip"}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %s: %w", strings.Join(args, " "), strings.TrimSpace(string(out)), err)
	}
	return nil
}

// plugNIC makes a nic on the host (a veth pair on its bridge, or a
// macvlan) and moves it into the network namespace of pid, where it gets
// its name and comes up. Nothing is left behind when a step fails.
func plugNIC(ctx context.Context, pid int, nic liblxc.NIC) error {
	tmp := "cellnic" + randomHex(4)
	var err error
	if nic.Type == "macvlan" {
		err = ipLink(ctx, 0, "link", "add", tmp, "link", nic.Link, "type", "macvlan", "mode", "bridge")
	} else {
		err = ipLink(ctx, 0, "link", "add", nic.HostName, "type", "veth", "peer", "name", tmp)
	}
	if err != nil {
		return err
	}
	steps := [][]string{{"link", "set", tmp, "address", nic.Hwaddr}}
	if nic.MTU > 0 {
		steps = append(steps, []string{"link", "set", tmp, "mtu", strconv.Itoa(nic.MTU)})
		if nic.Type == "veth" {
			steps = append(steps, []string{"link", "set", nic.HostName, "mtu", strconv.Itoa(nic.MTU)})
		}
	}
	if nic.Type == "veth" && nic.Link != "" {
		steps = append(steps, []string{"link", "set", nic.HostName, "master", nic.Link})
	}
	if nic.Type == "veth" {
		steps = append(steps, []string{"link", "set", nic.HostName, "up"})
	}
	steps = append(steps, []string{"link", "set", tmp, "netns", strconv.Itoa(pid)})
	for _, args := range steps {
		if err := ipLink(ctx, 0, args...); err != nil {
			_ = ipLink(context.WithoutCancel(ctx), 0, "link", "del", tmp)
			return err
		}
	}
	if err := ipLink(ctx, pid, "link", "set", tmp, "name", nic.Name); err != nil {
		_ = ipLink(context.WithoutCancel(ctx), pid, "link", "del", tmp)
		return err
	}
	if err := ipLink(ctx, pid, "link", "set", nic.Name, "up"); err != nil {
		_ = ipLink(context.WithoutCancel(ctx), pid, "link", "del", nic.Name)
		return err
	}
	return nil
}

// unplugNIC deletes interface name inside the network namespace of pid
// (with a veth, its host side goes too); one that is gone already is not
// an error.
func unplugNIC(ctx context.Context, pid int, name string) error {
	if name == "" {
		return nil
	}
	if err := ipLink(ctx, pid, "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		return err
	}
	return nil
}

// createdNICs gives a new instance's nics their MAC addresses and dnsmasq
// host entries.
func (d *Daemon) createdNICs(ctx context.Context, name string) error {
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	return d.syncNICs(ctx, inst)
}

// resyncNICs updates an instance's nic keys and dnsmasq host entries after
// its devices or profiles changed.
func (d *Daemon) resyncNICs(ctx context.Context, name string) {
	if err := d.createdNICs(ctx, name); err != nil {
		slog.Warn("update nic entries", "instance", name, "err", err)
	}
}

// inNetNS runs fn on a thread of its own that has joined the network
// namespace of process pid: sockets fn makes live in the container's
// network (and stay there when the thread leaves). As inMountNS does for
// mounts, the thread goes back to celld's own namespace afterwards: one
// parked in the container's would keep its network namespace, and so the
// host side of its veth pairs, alive after the container stopped.
func inNetNS(pid int, fn func() error) error {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return fmt.Errorf("open the container's network namespace: %w", err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open celld's network namespace: %w", err)
			return
		}
		defer own.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join the container's network namespace: %w", err)
			return
		}
		err = fn()
		if serr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); serr != nil {
			slog.Error("a thread could not leave a container's network namespace", "pid", pid, "err", serr)
		}
		errc <- err
	}()
	return <-errc
}
