package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"cell/network"
	"cell/tests/harness"
)

// Network tests make real bridges, dnsmasq processes and network
// namespaces. Names start with "ct" and a random suffix so that parallel
// tests and the host never collide; subnets come from 10.213.0.0/16 and
// are checked free. NAT stays off: nothing leaves the machine.

// netTestName returns a random interface-safe name: prefix + 6 hex digits.
func netTestName(prefix string) string { return fmt.Sprintf("%s%06x", prefix, rand.IntN(1<<24)) }

// netTestSubnet returns a bridge address (10.213.x.1/24) whose subnet the
// host does not use.
func netTestSubnet(t *testing.T) string {
	t.Helper()
	used, err := network.HostPrefixes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		p := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.1/24", rand.IntN(256)))
		if _, hit := network.Overlap(p, used, ""); !hit {
			return p.String()
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return ""
}

// dnsmasqPIDs returns the dnsmasq processes started for networks of the
// daemon in dir.
func dnsmasqPIDs(dir string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(cmdline), "/usr/sbin/dnsmasq\x00") && strings.Contains(string(cmdline), dir+"/networks/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// createTestNetwork creates a NAT-less network through c and checks, when
// the test ends, that its bridge, nft table and dnsmasq are gone.
func createTestNetwork(t *testing.T, d *harness.Daemon, extra ...string) (name, addr string) {
	t.Helper()
	name, addr = netTestName("ct"), netTestSubnet(t)
	t.Cleanup(func() { checkNetworkGone(t, d, name) })
	args := append([]string{"network", "create", name, "ipv4.address=" + addr, "ipv4.nat=false", "ipv6.address=none"}, extra...)
	d.MustC(args...)
	return name, addr
}

// checkNetworkGone fails the test if anything of network name is left on
// the host: its bridge, nft table or a dnsmasq of the daemon. The
// harness's sweep removes leftovers afterwards.
func checkNetworkGone(t *testing.T, d *harness.Daemon, name string) {
	t.Helper()
	if _, err := os.Stat("/sys/class/net/" + name); err == nil {
		// Tests delete their networks; a failed test may not have.
		if d.PID() != 0 {
			d.C("network", "delete", name)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + name); err == nil {
		t.Errorf("bridge %s left behind", name)
	}
	if exec.Command("nft", "list", "table", "inet", network.NATTable(name)).Run() == nil {
		t.Errorf("nft table %s left behind", network.NATTable(name))
	}
	for _, pid := range dnsmasqPIDs(d.Dir) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), "/networks/"+name+"/") {
			t.Errorf("dnsmasq %d of network %s left behind", pid, name)
		}
	}
}

// dhcpProbe is a network namespace plugged into a bridge through a veth,
// standing in for an instance: busybox udhcpc in it is the DHCP client.
type dhcpProbe struct {
	ns, dev, hwaddr string
}

func newDHCPProbe(t *testing.T, bridge string) dhcpProbe {
	t.Helper()
	suffix := fmt.Sprintf("%06x", rand.IntN(1<<24))
	p := dhcpProbe{ns: "ctns" + suffix, dev: "ctvp" + suffix,
		hwaddr: fmt.Sprintf("00:16:3e:%02x:%02x:%02x", rand.IntN(256), rand.IntN(256), rand.IntN(256))}
	host := "ctvh" + suffix
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", p.ns).Run()
		_ = exec.Command("ip", "link", "del", host).Run()
		if _, err := os.Stat("/run/netns/" + p.ns); err == nil {
			t.Errorf("network namespace %s left behind", p.ns)
		}
		if _, err := os.Stat("/sys/class/net/" + host); err == nil {
			t.Errorf("veth %s left behind", host)
		}
	})
	for _, args := range [][]string{
		{"netns", "add", p.ns},
		{"link", "add", host, "type", "veth", "peer", "name", p.dev},
		{"link", "set", host, "master", bridge, "up"},
		{"link", "set", p.dev, "netns", p.ns},
		{"-n", p.ns, "link", "set", p.dev, "address", p.hwaddr, "up"},
		{"-n", p.ns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return p
}

// lease runs a DHCP exchange in the probe and returns the address it got,
// which is then configured on the probe's interface.
func (p dhcpProbe) lease(t *testing.T) string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	// udhcpc leaves configuring the interface to its script.
	err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\" && echo \"LEASED $ip\"\nexit 0\n"), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("ip", "-n", p.ns, "addr", "flush", "dev", p.dev).Run()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", p.ns, "busybox", "udhcpc", "-i", p.dev, "-n", "-q", "-t", "10", "-s", script).CombinedOutput()
	if err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if ip, ok := strings.CutPrefix(line, "LEASED "); ok {
			return strings.TrimSpace(ip)
		}
	}
	t.Fatalf("udhcpc got no lease:\n%s", out)
	return ""
}

// lookup asks server for name from inside the probe.
func (p dhcpProbe) lookup(t *testing.T, name, server string) string {
	t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", p.ns, "busybox", "nslookup", name, server).CombinedOutput()
	return string(out)
}

type testNetwork struct {
	Name    string            `json:"name"`
	Managed bool              `json:"managed"`
	Config  map[string]string `json:"config"`
	UsedBy  []string          `json:"used_by"`
}

func getTestNetwork(t *testing.T, d *harness.Daemon, name string) testNetwork {
	t.Helper()
	status, env := d.API("GET", "/1.0/networks/"+name, nil)
	if status != http.StatusOK {
		t.Fatalf("GET network %s: %d %s", name, status, env.Error)
	}
	var n testNetwork
	if err := json.Unmarshal(env.Metadata, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNetworkLeasesAndDNS(t *testing.T) {
	t.Parallel()
	d := harness.StartDaemon(t)
	name, addr := createTestNetwork(t, d, "dns.domain=lab")
	gw := netip.MustParsePrefix(addr)

	// Listed (also by LXD's client) as managed, with its address.
	list := d.MustC("network", "list", "--format", "csv")
	if !strings.Contains(list, name+",bridge,YES,"+addr+",none,,0,CREATED") {
		t.Errorf("c network list lacks %s:\n%s", name, list)
	}
	lxcOut, lxcErr, code := d.Run(nil, "lxc", "network", "list", "--format", "csv")
	if code != 0 || !strings.Contains(lxcOut, name+",bridge,YES,"+addr) {
		t.Errorf("lxc network list (exit %d) lacks %s:\n%s%s", code, name, lxcOut, lxcErr)
	}
	if show := d.MustC("network", "show", name); !strings.Contains(show, "ipv4.address: "+addr) || !strings.Contains(show, "managed: true") {
		t.Errorf("c network show:\n%s", show)
	}

	// Narrow the DHCP range; the lease must come from it.
	base := gw.Masked().Addr().As4()
	first, last := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 100}), netip.AddrFrom4([4]byte{base[0], base[1], base[2], 109})
	d.MustC("network", "set", name, fmt.Sprintf("ipv4.dhcp.ranges=%s-%s", first, last))
	if got := strings.TrimSpace(d.MustC("network", "get", name, "ipv4.dhcp.ranges")); got != fmt.Sprintf("%s-%s", first, last) {
		t.Errorf("network get ipv4.dhcp.ranges = %q", got)
	}

	probe := newDHCPProbe(t, name)
	// What the NIC devices do for an instance: one dhcp-host line in the
	// network's hosts directory gives the probe its DNS name.
	hosts := filepath.Join(d.Dir, "networks", name, "dhcp-hosts")
	if err := os.WriteFile(filepath.Join(hosts, "probe.eth0"), []byte(probe.hwaddr+",probe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ip := probe.lease(t)
	if a := netip.MustParseAddr(ip); a.Less(first) || last.Less(a) {
		t.Errorf("leased %s, outside the range %s-%s", ip, first, last)
	}
	leases := d.MustC("network", "list-leases", name, "--format", "csv")
	if !strings.Contains(leases, "probe,"+probe.hwaddr+","+ip+",DYNAMIC") {
		t.Errorf("list-leases lacks probe's lease %s:\n%s", ip, leases)
	}
	if out := probe.lookup(t, "probe.lab", gw.Addr().String()); !strings.Contains(out, ip) {
		t.Errorf("probe.lab does not resolve to %s through %s:\n%s", ip, gw.Addr(), out)
	}
	// The network's own domain is never forwarded anywhere.
	if out := probe.lookup(t, "nosuchhost.lab", gw.Addr().String()); !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("unknown name in the network's domain:\n%s", out)
	}

	// A reservation that is removed is forgotten (dnsmasq alone keeps it
	// until restarted): once static1 is another machine's, the probe gets
	// some other address.
	static1 := netip.AddrFrom4([4]byte{base[0], base[1], base[2], 50})
	if err := os.WriteFile(filepath.Join(hosts, "probe.eth0"), []byte(probe.hwaddr+","+static1.String()+",probe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := probe.lease(t); got != static1.String() {
		t.Errorf("lease with a reservation for %s: got %s", static1, got)
	}
	if err := os.Remove(filepath.Join(hosts, "probe.eth0")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "other.eth0"), []byte("00:16:3e:ff:ff:01,"+static1.String()+",other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		if ip = probe.lease(t); ip != static1.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the probe still gets %s after its reservation was removed", static1)
		}
	}

	// edit takes the YAML on stdin when it is not a terminal.
	edited := fmt.Sprintf("description: lab network\nconfig:\n  ipv4.address: %s\n  ipv4.nat: \"false\"\n  ipv6.address: none\n  dns.domain: lab\n  ipv4.dhcp.ranges: %s-%s\n", addr, first, last)
	if out, errOut, code := d.Run(strings.NewReader(edited), filepath.Join(d.Bin, "c"), "network", "edit", name); code != 0 {
		t.Fatalf("c network edit: exit %d: %s%s", code, out, errOut)
	}
	if show := d.MustC("network", "show", name); !strings.Contains(show, "description: lab network") {
		t.Errorf("edited description not shown:\n%s", show)
	}

	info := d.MustC("network", "info", name)
	if !strings.Contains(info, "inet\t"+addr+" (global)") || !strings.Contains(info, "State: up") {
		t.Errorf("c network info:\n%s", info)
	}

	// Rename moves the bridge and keeps the leases.
	renamed := netTestName("ct")
	t.Cleanup(func() { checkNetworkGone(t, d, renamed) })
	d.MustC("network", "rename", name, renamed)
	if _, err := os.Stat("/sys/class/net/" + name); err == nil {
		t.Errorf("bridge %s still there after the rename", name)
	}
	if st := getTestNetwork(t, d, renamed); st.Config["ipv4.address"] != addr {
		t.Errorf("renamed network config %v", st.Config)
	}
	if leases := d.MustC("network", "list-leases", renamed, "--format", "csv"); !strings.Contains(leases, ip) {
		t.Errorf("leases lost by the rename:\n%s", leases)
	}
	d.MustC("network", "delete", renamed)
	if _, err := os.Stat("/sys/class/net/" + renamed); err == nil {
		t.Errorf("bridge %s still there after delete", renamed)
	}
	if pids := dnsmasqPIDs(d.Dir); len(pids) != 0 {
		t.Errorf("dnsmasq %v still running after delete", pids)
	}
}

func TestNetworkRefusals(t *testing.T) {
	t.Parallel()
	d := harness.StartDaemon(t)
	name, addr := createTestNetwork(t, d)
	gw := netip.MustParsePrefix(addr)

	// A route the host really has (not the test network's).
	used, err := network.HostPrefixes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var hostRoute netip.Prefix
	for _, u := range used {
		if u.Prefix.Addr().Is4() && u.Dev != "lo" && u.Dev != name && u.Prefix.Bits() <= 29 && u.Prefix.Bits() >= 8 {
			hostRoute = u.Prefix
			break
		}
	}

	fresh := netTestName("ct")
	t.Cleanup(func() { checkNetworkGone(t, d, fresh) })
	overlapping := netip.PrefixFrom(gw.Addr().Next().Next(), 25).String()
	cases := []struct {
		config  map[string]string
		mention []string
	}{
		{map[string]string{"ipv4.address": overlapping}, []string{"overlaps", gw.Masked().String(), "network " + name}},
		{map[string]string{"ipv4.address": "10.213.0.1"}, []string{"ipv4.address", "CIDR"}},
		{map[string]string{"ipv4.address": "10.213.300.1/24"}, []string{"ipv4.address"}},
		{map[string]string{"ipv4.addres": "auto"}, []string{`unknown network key "ipv4.addres"`}},
		{map[string]string{"ipv4.address": "auto", "dns.mode": "loud"}, []string{"dns.mode", "managed, dynamic, none"}},
		{map[string]string{"ipv4.address": "auto", "ipv4.dhcp.ranges": "10.213.0.5-10.213.0.9", "ipv4.nat": "false"}, []string{"not inside the subnet"}},
	}
	if hostRoute.IsValid() {
		a := hostRoute.Addr().Next()
		cases = append(cases, struct {
			config  map[string]string
			mention []string
		}{map[string]string{"ipv4.address": netip.PrefixFrom(a, hostRoute.Bits()).String()}, []string{"overlaps", hostRoute.String()}})
	}
	for _, c := range cases {
		validationRefused(t, d, "POST", "/1.0/networks", map[string]any{"name": fresh, "config": c.config}, http.StatusBadRequest, c.mention...)
		if _, err := os.Stat("/sys/class/net/" + fresh); err == nil {
			t.Fatalf("refused create %v left bridge %s", c.config, fresh)
		}
		if _, err := os.Stat(filepath.Join(d.Dir, "networks", fresh)); err == nil {
			t.Fatalf("refused create %v left the network's directory", c.config)
		}
	}
	validationRefused(t, d, "POST", "/1.0/networks", map[string]any{"name": "ct-name-far-too-long"}, http.StatusBadRequest, "15")
	validationRefused(t, d, "POST", "/1.0/networks", map[string]any{"name": "lo"}, http.StatusConflict, "lo")
	validationRefused(t, d, "POST", "/1.0/networks", map[string]any{"name": name, "config": map[string]string{"ipv4.address": "auto"}}, http.StatusConflict, "already exists")
	if got := getTestNetwork(t, d, name); len(got.UsedBy) != 0 {
		t.Fatalf("fresh network used by %v", got.UsedBy)
	}

	// A bad change is refused and the old configuration stays.
	validationRefused(t, d, "PATCH", "/1.0/networks/"+name, map[string]any{"config": map[string]string{"bridge.mtu": "9"}}, http.StatusBadRequest, "bridge.mtu")
	if _, stderr, code := d.C("network", "set", name, "ipv4.address", "10.213.1.0/24"); code == 0 || !strings.Contains(stderr, "network address") {
		t.Errorf("setting the subnet's network address as the bridge's: exit %d: %s", code, stderr)
	}
	if got := getTestNetwork(t, d, name); got.Config["ipv4.address"] != addr {
		t.Errorf("a refused change altered the config: %v", got.Config)
	}

	// In use by a profile, and through it by an instance: delete names them.
	d.MustC("profile", "create", "withnic")
	status, env := d.API("PUT", "/1.0/profiles/withnic", map[string]any{"config": map[string]string{},
		"devices": map[string]any{"eth0": map[string]string{"type": "nic", "network": name, "name": "eth0"}}})
	if status != http.StatusOK {
		t.Fatalf("put a nic on profile: %d %s", status, env.Error)
	}
	validationRefused(t, d, "DELETE", "/1.0/networks/"+name, nil, http.StatusBadRequest, "in use", "/1.0/profiles/withnic")
	if _, stderr, code := d.C("network", "delete", name); code == 0 || !strings.Contains(stderr, "/1.0/profiles/withnic") {
		t.Errorf("c network delete of a network in use: exit %d: %s", code, stderr)
	}
	if _, err := os.Stat("/sys/class/net/" + name); err != nil {
		t.Fatalf("the refused delete removed the bridge: %v", err)
	}
	if got := getTestNetwork(t, d, name); len(got.UsedBy) != 1 || got.UsedBy[0] != "/1.0/profiles/withnic" {
		t.Errorf("used_by %v, want the profile", got.UsedBy)
	}
	d.MustC("profile", "delete", "withnic")
	d.MustC("network", "delete", name)

	// The host's own interfaces are listed, unmanaged, and cannot change.
	if got := getTestNetwork(t, d, "lo"); got.Managed {
		t.Errorf("lo listed as managed")
	}
	validationRefused(t, d, "DELETE", "/1.0/networks/lo", nil, http.StatusBadRequest, "not managed")
	validationRefused(t, d, "GET", "/1.0/networks/ctnosuchnet", nil, http.StatusNotFound, "not found")
}

func TestNetworkSurvivesRestartsAndKills(t *testing.T) {
	t.Parallel()
	d := harness.StartDaemon(t)
	name, _ := createTestNetwork(t, d)
	probe := newDHCPProbe(t, name)
	ip := probe.lease(t)

	pids := dnsmasqPIDs(d.Dir)
	if len(pids) != 1 {
		t.Fatalf("dnsmasq processes %v, want one", pids)
	}
	// Killed: celld starts a new one.
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := dnsmasqPIDs(d.Dir)
		if len(now) == 1 && now[0] != pids[0] {
			pids = now
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq not restarted after it was killed (now %v)", now)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The new dnsmasq has the leases file: the client renews the same address.
	if again := probe.lease(t); again != ip {
		t.Errorf("lease after dnsmasq restart %s, want %s", again, ip)
	}

	// celld restart: the bridge stays, the same dnsmasq is adopted (not a
	// second one), and the leases are still listed.
	if err := d.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + name); err != nil {
		t.Fatalf("bridge gone while celld is stopped: %v", err)
	}
	d.Start()
	if now := dnsmasqPIDs(d.Dir); len(now) != 1 || now[0] != pids[0] {
		t.Errorf("dnsmasq after celld restart %v, want the same %v", now, pids)
	}
	if leases := d.MustC("network", "list-leases", name, "--format", "csv"); !strings.Contains(leases, probe.hwaddr+","+ip) {
		t.Errorf("leases after celld restart:\n%s", leases)
	}
	// And supervision resumed with the new celld.
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		if now := dnsmasqPIDs(d.Dir); len(now) == 1 && now[0] != pids[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsmasq not restarted by the restarted celld")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.MustC("network", "delete", name)
}

// TestNetworkInterruptedCreate: a network row left not-ready by a crash
// is removed with its bridge and dnsmasq at the next start.
func TestNetworkInterruptedCreate(t *testing.T) {
	t.Parallel()
	d := harness.StartDaemon(t)
	name, _ := createTestNetwork(t, d)
	d.Kill()
	crashSQL(t, d, "UPDATE networks SET ready = 0 WHERE name = ?", name)
	d.Start()
	if _, err := os.Stat("/sys/class/net/" + name); err == nil {
		t.Errorf("bridge of the interrupted network still there")
	}
	if pids := dnsmasqPIDs(d.Dir); len(pids) != 0 {
		t.Errorf("dnsmasq %v of the interrupted network still running", pids)
	}
	validationRefused(t, d, "GET", "/1.0/networks/"+name, nil, http.StatusNotFound)
}

// TestNetworkDefault: a first start makes cellbr0 and puts eth0 on it in
// the default profile, as `lxd init --auto` does.
func TestNetworkDefault(t *testing.T) {
	// Not parallel: there is one cellbr0 per host. Its NAT rule is loaded
	// but no traffic is sent; the host's forwarding setting is restored.
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() { _ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644) })
	d := harness.StartDaemonWithDefaultNetwork(t)
	t.Cleanup(func() { checkNetworkGone(t, d, "cellbr0") })
	n := getTestNetwork(t, d, "cellbr0")
	p, err := netip.ParsePrefix(n.Config["ipv4.address"])
	if !n.Managed || err != nil || p.Bits() != 24 || n.Config["ipv4.nat"] != "true" || n.Config["ipv6.address"] != "none" {
		t.Errorf("cellbr0: %+v", n)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", network.NATTable("cellbr0")).CombinedOutput(); err != nil || !strings.Contains(string(out), "masquerade") {
		t.Errorf("no masquerade rule for cellbr0: %v\n%s", err, out)
	}
	prof := d.MustC("profile", "show", "default")
	if !strings.Contains(prof, "network: cellbr0") || !strings.Contains(prof, "type: nic") {
		t.Errorf("default profile has no eth0 on cellbr0:\n%s", prof)
	}
	validationRefused(t, d, "DELETE", "/1.0/networks/cellbr0", nil, http.StatusBadRequest, "/1.0/profiles/default")
	// A restart does not make it again (nor complain).
	if err := d.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.Start()
	if n := getTestNetwork(t, d, "cellbr0"); n.Config["ipv4.address"] != p.String() {
		t.Errorf("cellbr0 after a restart: %v, want address %s", n.Config, p)
	}
	// Free it: the default profile without eth0.
	var def struct {
		Config  map[string]string            `json:"config"`
		Devices map[string]map[string]string `json:"devices"`
	}
	_, env := d.API("GET", "/1.0/profiles/default", nil)
	if err := json.Unmarshal(env.Metadata, &def); err != nil {
		t.Fatal(err)
	}
	delete(def.Devices, "eth0")
	if status, env := d.API("PUT", "/1.0/profiles/default", def); status != http.StatusOK {
		t.Fatalf("put default profile: %d %s", status, env.Error)
	}
	d.MustC("network", "delete", "cellbr0")
}
