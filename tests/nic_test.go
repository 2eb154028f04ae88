package tests

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cell/tests/harness"
)

// randomSuffix returns n random hex characters for host-wide names
// (bridges, networks) that must not clash with parallel tests.
func randomSuffix(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// testBridge makes an unmanaged bridge with no address and NAT off (traffic
// on it stays between the containers attached to it); it is removed when
// the test ends.
func testBridge(t *testing.T) string {
	t.Helper()
	name := "ctnic" + randomSuffix(6)
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("create bridge: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete bridge %s: %v: %s", name, err, out)
		}
	})
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("bring bridge up: %v: %s", err, out)
	}
	return name
}

// linkExists reports whether the host has a network interface called name.
func linkExists(name string) bool {
	_, err := os.Lstat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// expectLinksGone fails the test if any interface whose name *names
// holds when the test ends (after its daemon and containers are gone)
// still exists. Register it before StartDaemon so that it runs last.
func expectLinksGone(t *testing.T, names *[]string) {
	t.Cleanup(func() {
		for _, n := range *names {
			if linkExists(n) {
				t.Errorf("interface %s is still on the host after the test", n)
				_ = exec.Command("ip", "link", "del", n).Run()
			}
		}
	})
}

// waitFor polls cond (every 200 ms, up to limit) and fails the test with
// what if it never holds: for things that take their own time, such as a
// DHCP lease.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNICBridged puts two busybox containers on an unmanaged bridge: they
// get veth pairs with LXD-style MAC addresses and host names, reach each
// other over the bridge (addresses configured inside, as nothing hands
// them out there), and c list, c info and lxc list show the addresses.
// Everything goes away with the containers.
func TestNICBridged(t *testing.T) {
	var links []string
	expectLinksGone(t, &links)
	d := busyboxDaemon(t)
	br := testBridge(t)
	links = append(links, br)

	addrs := map[string]string{"n1": "192.0.2.11", "n2": "192.0.2.12"}
	for _, name := range []string{"n1", "n2"} {
		d.MustC("init", "bb", name)
		d.MustC("config", "device", "add", name, "eth0", "nic", "nictype=bridged", "parent="+br)
		d.MustC("start", name)
		cfg := instanceConfig(t, d, name)
		hw, host := cfg["volatile.eth0.hwaddr"], cfg["volatile.eth0.host_name"]
		if !strings.HasPrefix(hw, "00:16:3e:") || host == "" {
			t.Fatalf("%s: volatile.eth0.hwaddr=%q host_name=%q: want a 00:16:3e MAC and a veth name", name, hw, host)
		}
		links = append(links, host)
		if master, err := os.Readlink(filepath.Join("/sys/class/net", host, "master")); err != nil || filepath.Base(master) != br {
			t.Fatalf("%s: host side %s is not on bridge %s (master %q, %v)", name, host, br, master, err)
		}
		if got := strings.TrimSpace(d.MustC("exec", name, "--", "cat", "/sys/class/net/eth0/address")); got != hw {
			t.Fatalf("%s: eth0 inside has MAC %q, volatile says %q", name, got, hw)
		}
		d.MustC("exec", name, "--", "ip", "addr", "add", addrs[name]+"/24", "dev", "eth0")
	}
	// The MAC address is kept across restarts.
	hw := instanceConfig(t, d, "n1")["volatile.eth0.hwaddr"]

	if out, errOut, code := d.C("exec", "n1", "--", "ping", "-c1", "-W5", addrs["n2"]); code != 0 {
		t.Fatalf("n1 cannot ping n2 over the bridge: %s%s", out, errOut)
	}

	list := d.MustC("list", "-c", "n4", "--format", "csv")
	for name, ip := range addrs {
		if !strings.Contains(list, name+","+ip+" (eth0)") {
			t.Errorf("c list does not show %s with %s (eth0):\n%s", name, ip, list)
		}
	}
	info := d.MustC("info", "n1")
	for _, want := range []string{"    eth0:\n", "inet:  " + addrs["n1"] + "/24 (global)", "MAC address: " + hw, "Host interface: "} {
		if !strings.Contains(info, want) {
			t.Errorf("c info n1 lacks %q:\n%s", want, info)
		}
	}
	if _, err := exec.LookPath("lxc"); err == nil {
		if out := mustLXC(t, d, "list", "-c", "n4", "--format", "csv"); !strings.Contains(out, "n1,"+addrs["n1"]+" (eth0)") {
			t.Errorf("lxc list does not show n1's address:\n%s", out)
		}
	}

	// Hotplug: a p2p nic comes and goes while n1 runs.
	d.MustC("config", "device", "add", "n1", "eth1", "nic", "nictype=p2p")
	cfg := instanceConfig(t, d, "n1")
	p2p := cfg["volatile.eth1.host_name"]
	links = append(links, p2p)
	if !linkExists(p2p) {
		t.Errorf("hotplugged p2p nic: host side %q does not exist", p2p)
	}
	if got := strings.TrimSpace(d.MustC("exec", "n1", "--", "cat", "/sys/class/net/eth1/address")); got != cfg["volatile.eth1.hwaddr"] || got == "" {
		t.Errorf("hotplugged eth1 has MAC %q; volatile says %q", got, cfg["volatile.eth1.hwaddr"])
	}
	d.MustC("config", "device", "remove", "n1", "eth1")
	if linkExists(p2p) {
		t.Errorf("host side %s still exists after eth1 was removed", p2p)
	}
	if _, _, code := d.C("exec", "n1", "--", "test", "-e", "/sys/class/net/eth1"); code == 0 {
		t.Errorf("eth1 is still in n1 after it was removed")
	}
	// A changed nic is replaced live and keeps its MAC address.
	d.MustC("config", "device", "set", "n1", "eth0", "mtu=1400")
	newHost := instanceConfig(t, d, "n1")["volatile.eth0.host_name"]
	links = append(links, newHost)
	if got := strings.TrimSpace(d.MustC("exec", "n1", "--", "cat", "/sys/class/net/eth0/mtu", "/sys/class/net/eth0/address")); got != "1400\n"+hw {
		t.Errorf("after a live change, eth0 has mtu and MAC %q; want 1400 and %s", got, hw)
	}
	if master, err := os.Readlink(filepath.Join("/sys/class/net", newHost, "master")); err != nil || filepath.Base(master) != br {
		t.Errorf("after a live change, host side %s is not on bridge %s (%q, %v)", newHost, br, master, err)
	}

	host := instanceConfig(t, d, "n1")["volatile.eth0.host_name"]
	d.MustC("stop", "-f", "n1")
	if linkExists(host) {
		t.Errorf("veth %s still exists after n1 stopped", host)
	}
	cfg = instanceConfig(t, d, "n1")
	if cfg["volatile.eth0.host_name"] != "" {
		t.Errorf("volatile.eth0.host_name = %q after stop; want it unset", cfg["volatile.eth0.host_name"])
	}
	d.MustC("config", "device", "set", "n1", "eth0", "name=lan0")
	d.MustC("start", "n1")
	links = append(links, instanceConfig(t, d, "n1")["volatile.eth0.host_name"])
	if got := strings.TrimSpace(d.MustC("exec", "n1", "--", "cat", "/sys/class/net/lan0/mtu", "/sys/class/net/lan0/address")); got != "1400\n"+hw {
		t.Errorf("after the change, lan0 has mtu and MAC %q; want 1400 and %s", got, hw)
	}
}

// TestNICMacvlan puts two containers on macvlan nics of one end of a veth
// pair the test makes (the other end has no address and goes nowhere): in
// macvlan's bridge mode they reach each other through their shared parent.
func TestNICMacvlan(t *testing.T) {
	var links []string
	expectLinksGone(t, &links)
	d := busyboxDaemon(t)
	parent := "ctmv" + randomSuffix(6)
	peer := parent + "p"
	if out, err := exec.Command("ip", "link", "add", parent, "type", "veth", "peer", "name", peer).CombinedOutput(); err != nil {
		t.Fatalf("create veth parent: %v: %s", err, out)
	}
	links = append(links, parent, peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", parent).Run() })
	for _, l := range []string{parent, peer} {
		if out, err := exec.Command("ip", "link", "set", l, "up").CombinedOutput(); err != nil {
			t.Fatalf("bring %s up: %v: %s", l, err, out)
		}
	}

	addrs := map[string]string{"m1": "192.0.2.21", "m2": "192.0.2.22"}
	for _, name := range []string{"m1", "m2"} {
		d.MustC("init", "bb", name)
		d.MustC("config", "device", "add", name, "eth0", "nic", "nictype=macvlan", "parent="+parent)
		d.MustC("start", name)
		hw := instanceConfig(t, d, name)["volatile.eth0.hwaddr"]
		if got := strings.TrimSpace(d.MustC("exec", name, "--", "cat", "/sys/class/net/eth0/address")); got != hw || !strings.HasPrefix(hw, "00:16:3e:") {
			t.Fatalf("%s: eth0 has MAC %q, volatile says %q", name, got, hw)
		}
		d.MustC("exec", name, "--", "ip", "addr", "add", addrs[name]+"/24", "dev", "eth0")
	}
	if out, errOut, code := d.C("exec", "m1", "--", "ping", "-c1", "-W5", addrs["m2"]); code != 0 {
		t.Fatalf("m1 cannot ping m2 over macvlan on %s: %s%s", parent, out, errOut)
	}
	d.MustC("stop", "-f", "m1")
	if _, _, code := d.C("start", "m1"); code != 0 {
		t.Fatalf("m1 does not start again with its macvlan nic")
	}
}

// TestNICValidation refuses nic and proxy devices celld cannot set up,
// with a message that says what is wrong, and changes nothing.
func TestNICValidation(t *testing.T) {
	d := busyboxDaemon(t)
	br := testBridge(t)
	d.MustC("init", "bb", "v1")
	cases := []struct {
		dev  map[string]string
		want string
	}{
		{map[string]string{"type": "nic", "nictype": "bogus", "parent": br}, `unknown nictype "bogus"`},
		{map[string]string{"type": "nic", "nictype": "bridged"}, "needs parent"},
		{map[string]string{"type": "nic"}, "needs network"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": "ctnomissing0"}, "not a bridge on the host"},
		{map[string]string{"type": "nic", "nictype": "macvlan", "parent": "ctnomissing0"}, "does not exist on the host"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": br, "hwaddr": "00:16:3e:zz:00:01"}, "not a MAC address"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": br, "hwaddr": "01:16:3e:00:00:01"}, "multicast"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": br, "mtu": "9"}, "mtu"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": br, "ipv4.address": "192.0.2.5"}, "needs a managed network"},
		{map[string]string{"type": "nic", "network": "ctnonet" + randomSuffix(4)}, "does not exist"},
		{map[string]string{"type": "nic", "nictype": "bridged", "parent": br, "vlan": "5"}, `unknown nic key "vlan"`},
		{map[string]string{"type": "proxy", "listen": "tcp:127.0.0.1", "connect": "tcp:127.0.0.1:80"}, "HOST:PORT"},
		{map[string]string{"type": "proxy", "listen": "tcp:127.0.0.1:8080"}, "needs listen and connect"},
		{map[string]string{"type": "proxy", "listen": "sctp:127.0.0.1:1", "connect": "tcp:127.0.0.1:80"}, `unsupported protocol "sctp"`},
		{map[string]string{"type": "proxy", "listen": "udp:127.0.0.1:53", "connect": "tcp:127.0.0.1:53"}, "udp can only be proxied to udp"},
		{map[string]string{"type": "proxy", "listen": "tcp:127.0.0.1:1-5", "connect": "tcp:127.0.0.1:80"}, "port ranges"},
		{map[string]string{"type": "proxy", "listen": "tcp:127.0.0.1:8080", "connect": "tcp:127.0.0.1:80", "bind": "guest"}, "bind"},
	}
	for _, c := range cases {
		status, env := d.API("PATCH", "/1.0/instances/v1", map[string]any{"devices": map[string]any{"dev0": c.dev}})
		if status != http.StatusBadRequest || !strings.Contains(env.Error, c.want) {
			t.Errorf("device %v: status %d %q; want 400 mentioning %q", c.dev, status, env.Error, c.want)
		}
		// Nor at creation: no instance is left behind.
		status, env = d.API("POST", "/1.0/instances", map[string]any{"name": "v2", "source": map[string]string{"type": "none"},
			"devices": map[string]any{"dev0": c.dev}})
		if status != http.StatusBadRequest || !strings.Contains(env.Error, c.want) {
			t.Errorf("create with device %v: status %d %q; want 400 mentioning %q", c.dev, status, env.Error, c.want)
		}
	}
	var devs map[string]any
	status, env := d.API("GET", "/1.0/instances/v1", nil)
	var inst struct {
		Devices map[string]any `json:"devices"`
	}
	if err := json.Unmarshal(env.Metadata, &inst); status != 200 || err != nil {
		t.Fatalf("GET v1: %d %v", status, err)
	}
	devs = inst.Devices
	if len(devs) != 0 {
		t.Errorf("refused devices were saved: %v", devs)
	}
	if status, _ := d.API("GET", "/1.0/instances/v2", nil); status != http.StatusNotFound {
		t.Errorf("an instance with a refused device was created (GET status %d)", status)
	}
}

// managedNetwork creates a managed bridge with a random name, a free
// private subnet, NAT and IPv6 off, and returns its name and the bridge's
// address (CIDR). The test's cleanup removes it (after the instances that
// use it: delete them in an earlier-registered cleanup's stead, see
// deleteInstances); expectLinksGone checks the bridge is gone.
func managedNetwork(t *testing.T, d *harness.Daemon) (name, cidr string) {
	t.Helper()
	name = "ctn" + randomSuffix(6)
	status, env := d.API("POST", "/1.0/networks", map[string]any{"name": name,
		"config": map[string]string{"ipv4.address": "auto", "ipv4.nat": "false", "ipv6.address": "none"}})
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("create network %s: %d %s", name, status, env.Error)
	}
	status, env = d.API("GET", "/1.0/networks/"+name, nil)
	var n struct {
		Config map[string]string `json:"config"`
	}
	if err := json.Unmarshal(env.Metadata, &n); status != http.StatusOK || err != nil {
		t.Fatalf("GET network %s: %d %s %v", name, status, env.Error, err)
	}
	cidr = n.Config["ipv4.address"]
	if _, _, err := net.ParseCIDR(cidr); err != nil {
		t.Fatalf("network %s has ipv4.address %q", name, cidr)
	}
	return name, cidr
}

// deleteOnCleanup deletes instances (forcing them off) and then the
// network when the test ends, before the daemon goes.
func deleteOnCleanup(t *testing.T, d *harness.Daemon, network string, instances ...string) {
	t.Cleanup(func() {
		for _, i := range instances {
			_, _, _ = d.C("delete", "-f", i)
		}
		if status, env := d.API("DELETE", "/1.0/networks/"+network, nil); status != http.StatusOK {
			t.Errorf("delete network %s: %d %s", network, status, env.Error)
		}
	})
}

// leasedIPv4 waits until c list shows an IPv4 address on eth0 of the
// instance, and returns it.
func leasedIPv4(t *testing.T, d *harness.Daemon, name string) string {
	t.Helper()
	var ip string
	waitFor(t, 90*time.Second, name+"'s DHCP lease", func() bool {
		out := strings.TrimSpace(d.MustC("list", name, "-c", "4", "--format", "csv"))
		ip, _, _ = strings.Cut(out, " (eth0)")
		return strings.HasSuffix(out, " (eth0)")
	})
	return ip
}

// TestNICManagedNetwork puts two busybox containers on a managed bridge
// (celld's dnsmasq, NAT off): both get leases, one the static address its
// nic asks for; they resolve each other as NAME.cell and ping each other;
// dnsmasq's host entries follow renames and deletions.
func TestNICManagedNetwork(t *testing.T) {
	var links []string
	expectLinksGone(t, &links)
	d := busyboxDaemon(t)
	netName, cidr := managedNetwork(t, d)
	links = append(links, netName)
	deleteOnCleanup(t, d, netName, "m1", "m2", "m3")
	_, subnet, _ := net.ParseCIDR(cidr)
	base := subnet.IP.To4()
	static := net.IPv4(base[0], base[1], base[2], 50).String()

	d.MustC("init", "bb", "m1")
	d.MustC("config", "device", "add", "m1", "eth0", "nic", "network="+netName)
	d.MustC("init", "bb", "m2")
	d.MustC("config", "device", "add", "m2", "eth0", "nic", "network="+netName, "ipv4.address="+static)
	hosts := filepath.Join(d.Dir, "networks", netName, "dhcp-hosts")
	entry, err := os.ReadFile(filepath.Join(hosts, "m2.eth0"))
	if want := instanceConfig(t, d, "m2")["volatile.eth0.hwaddr"] + "," + static + ",m2\n"; err != nil || string(entry) != want {
		t.Fatalf("dnsmasq entry of m2: %q, %v; want %q", entry, err, want)
	}
	// A static address outside the subnet is refused.
	_, errOut, code := d.C("config", "device", "set", "m2", "eth0", "ipv4.address=192.0.2.7")
	if code == 0 || !strings.Contains(errOut, "outside") {
		t.Errorf("static address outside the subnet: exit %d %q; want a refusal", code, errOut)
	}
	d.MustC("start", "m1")
	d.MustC("start", "m2")
	for _, n := range []string{"m1", "m2"} {
		links = append(links, instanceConfig(t, d, n)["volatile.eth0.host_name"])
	}
	ip1, ip2 := leasedIPv4(t, d, "m1"), leasedIPv4(t, d, "m2")
	if ip2 != static {
		t.Errorf("m2 got %s; its nic asks for %s", ip2, static)
	}
	if !subnet.Contains(net.ParseIP(ip1)) {
		t.Errorf("m1 got %s, outside %s", ip1, cidr)
	}
	if out, errOut, code := d.C("exec", "m1", "--", "nslookup", "m2.cell"); code != 0 || !strings.Contains(out, ip2) {
		t.Errorf("m1 cannot resolve m2.cell to %s: %s%s", ip2, out, errOut)
	}
	if out, errOut, code := d.C("exec", "m1", "--", "ping", "-c1", "-W5", "m2.cell"); code != 0 {
		t.Errorf("m1 cannot ping m2.cell: %s%s", out, errOut)
	}
	if out, errOut, code := d.C("exec", "m2", "--", "ping", "-c1", "-W5", ip1); code != 0 {
		t.Errorf("m2 cannot ping m1 (%s): %s%s", ip1, out, errOut)
	}

	// Renamed: the entry follows; deleted: it goes.
	d.MustC("stop", "-f", "m2")
	d.MustC("rename", "m2", "m3")
	if _, err := os.Stat(filepath.Join(hosts, "m2.eth0")); err == nil {
		t.Errorf("m2's dnsmasq entry is still there after the rename")
	}
	if entry, err := os.ReadFile(filepath.Join(hosts, "m3.eth0")); err != nil || !strings.HasSuffix(string(entry), ","+static+",m3\n") {
		t.Errorf("m3's dnsmasq entry: %q, %v", entry, err)
	}
	d.MustC("delete", "-f", "m1")
	if _, err := os.Stat(filepath.Join(hosts, "m1.eth0")); err == nil {
		t.Errorf("m1's dnsmasq entry is still there after it was deleted")
	}
}

// TestNICDebianDHCP boots the Debian image on a managed bridge: its
// systemd-networkd gets a lease and systemd-resolved resolves the
// instance's own name through the bridge's dnsmasq.
func TestNICDebianDHCP(t *testing.T) {
	image := harness.DebianImage(t)
	var links []string
	expectLinksGone(t, &links)
	d := harness.StartDaemon(t)
	d.ImportImage(image, "debian")
	netName, cidr := managedNetwork(t, d)
	links = append(links, netName)
	deleteOnCleanup(t, d, netName, "deb1")
	d.MustC("init", "debian", "deb1")
	d.MustC("config", "device", "add", "deb1", "eth0", "nic", "network="+netName)
	d.MustC("start", "deb1")
	links = append(links, instanceConfig(t, d, "deb1")["volatile.eth0.host_name"])
	ip := leasedIPv4(t, d, "deb1")
	if _, subnet, _ := net.ParseCIDR(cidr); !subnet.Contains(net.ParseIP(ip)) {
		t.Fatalf("deb1 got %s, outside %s", ip, cidr)
	}
	var out string
	waitFor(t, 30*time.Second, "deb1.cell to resolve inside deb1", func() bool {
		out, _, _ = d.C("exec", "deb1", "--", "getent", "hosts", "deb1.cell")
		return strings.HasPrefix(out, ip+" ")
	})
}
