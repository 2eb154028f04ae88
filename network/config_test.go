package network

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestValidateConfig(t *testing.T) {
	good := map[string]string{
		"ipv4.address": "10.213.7.1/24", "ipv4.nat": "false", "ipv4.dhcp.ranges": "10.213.7.50-10.213.7.60",
		"ipv4.dhcp.expiry": "2h", "ipv6.address": "none", "dns.domain": "lab.example", "dns.mode": "dynamic",
		"bridge.mtu": "1400", "bridge.hwaddr": "00:16:3e:00:00:01", "user.note": "x", "raw.dnsmasq": "log-queries",
	}
	if err := ValidateConfig(good); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	bad := []struct{ key, value, want string }{
		{"ipv4.adress", "10.0.0.1/24", `unknown network key "ipv4.adress"`},
		{"ipv4.address", "10.0.0.1", "CIDR"},
		{"ipv4.address", "10.0.0.0/24", "network address"},
		{"ipv4.address", "10.0.0.255/24", "broadcast"},
		{"ipv4.address", "fd00::1/64", "family"},
		{"ipv6.address", "10.0.0.1/24", "family"},
		{"ipv4.address", "300.1.1.1/24", "CIDR"},
		{"ipv4.nat", "yes please", "true or false"},
		{"ipv4.dhcp.ranges", "10.0.0.9", "FIRST-LAST"},
		{"ipv4.dhcp.ranges", "10.0.0.9-10.0.0.2", "after the last"},
		{"ipv4.dhcp.expiry", "1m", "at least 2 minutes"},
		{"dns.mode", "chatty", "managed, dynamic, none"},
		{"dns.domain", "bad_domain", "DNS domain"},
		{"bridge.mtu", "100", "between 1280"},
		{"bridge.hwaddr", "01:00:00:00:00:01", "unicast"},
	}
	for _, c := range bad {
		err := ValidateConfig(map[string]string{c.key: c.value})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%s: got %v, want an error containing %q", c.key, c.value, err, c.want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"cellbr0", "a", "br-1.x_y", "abcdefghijklmno"} {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	for _, n := range []string{"", "abcdefghijklmnop", "a/b", "a b", "-x", "a:1"} {
		if ValidateName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestParseDefaultsAndRanges(t *testing.T) {
	s, err := Parse("br", map[string]string{"ipv4.address": "10.213.9.1/24"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Domain != "cell" || s.DNSMode != "managed" || !s.DHCP4 || s.NAT4 || s.IPv6.IsValid() {
		t.Errorf("defaults: %+v", s)
	}
	want := Range{netip.MustParseAddr("10.213.9.2"), netip.MustParseAddr("10.213.9.254")}
	if len(s.Ranges) != 1 || s.Ranges[0] != want {
		t.Errorf("default range %v, want %v", s.Ranges, want)
	}
	_, err = Parse("br", map[string]string{"ipv4.address": "10.213.9.1/24", "ipv4.dhcp.ranges": "10.213.10.5-10.213.10.9"})
	if err == nil || !strings.Contains(err.Error(), "not inside the subnet 10.213.9.0/24") {
		t.Errorf("range outside the subnet: %v", err)
	}
	if _, err := Parse("br", map[string]string{"ipv4.nat": "true", "ipv4.address": "none"}); err == nil {
		t.Error("ipv4.nat without an address accepted")
	}
}

func TestPickSubnets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	// Everything in 10.0.0.0/8 is taken but 10.77.3.0/24.
	var used []Used
	for _, p := range []string{"10.0.0.0/10", "10.64.0.0/13", "10.72.0.0/14", "10.76.0.0/16", "10.77.0.0/23",
		"10.77.2.0/24", "10.77.4.0/22", "10.77.8.0/21", "10.77.16.0/20", "10.77.32.0/19", "10.77.64.0/18",
		"10.77.128.0/17", "10.78.0.0/15", "10.80.0.0/12", "10.96.0.0/11", "10.128.0.0/9"} {
		used = append(used, Used{Prefix: netip.MustParsePrefix(p), Dev: "eth9"})
	}
	// Picking is random: the one free /24 is found only by luck. Free a
	// large block instead, then check the pick lies in it.
	used = used[1:] // 10.0.0.0/10 free
	for range 50 {
		p, err := PickIPv4(used, rnd)
		if err != nil {
			t.Fatal(err)
		}
		if !netip.MustParsePrefix("10.0.0.0/10").Contains(p.Addr()) || p.Bits() != 24 || p.Addr().As4()[3] != 1 {
			t.Fatalf("picked %s, want 10.x.y.1/24 inside the only free block 10.0.0.0/10", p)
		}
	}
	all := []Used{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}}
	if _, err := PickIPv4(all, rnd); err == nil {
		t.Error("picked a subnet although 10.0.0.0/8 is taken")
	}
	p6, err := PickIPv6([]Used{{Prefix: netip.MustParsePrefix("fd00::/9")}}, rnd)
	if err != nil {
		t.Fatal(err)
	}
	if p6.Bits() != 64 || !netip.MustParsePrefix("fd80::/9").Contains(p6.Addr()) {
		t.Errorf("picked %s, want a ULA /64 outside fd00::/9", p6)
	}
}

func TestOverlap(t *testing.T) {
	used := []Used{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Dev: "eth0"}, {Prefix: netip.MustParsePrefix("10.9.0.0/16"), Dev: "br7"}}
	if u, hit := Overlap(netip.MustParsePrefix("192.0.2.77/28"), used, ""); !hit || u.Dev != "eth0" {
		t.Errorf("no overlap found with eth0's subnet")
	}
	if _, hit := Overlap(netip.MustParsePrefix("10.9.3.1/24"), used, "br7"); hit {
		t.Errorf("a network's own bridge route counted as an overlap")
	}
	if _, hit := Overlap(netip.MustParsePrefix("10.10.0.1/24"), used, ""); hit {
		t.Errorf("disjoint subnets overlap")
	}
}

func TestParseLeases(t *testing.T) {
	file := `1763900000 00:16:3e:aa:bb:cc 10.213.7.23 c01 01:00:16:3e:aa:bb:cc
0 00:16:3e:aa:bb:dd 10.213.7.24 * *
duid 00:01:00:01:2c:6f:00:00:00:16:3e:00:00:01
1763900000 12345 fd42::23 c01 00:04:aa
`
	leases, err := ParseLeases(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 3 {
		t.Fatalf("got %d leases, want 3", len(leases))
	}
	if l := leases[0]; l.Hostname != "c01" || l.HWAddr != "00:16:3e:aa:bb:cc" || l.Address != "10.213.7.23" || l.Expiry.Unix() != 1763900000 || l.IPv6 {
		t.Errorf("first lease %+v", l)
	}
	if l := leases[1]; l.Hostname != "" || !l.Expiry.IsZero() {
		t.Errorf("second lease %+v", l)
	}
	if l := leases[2]; !l.IPv6 || l.Address != "fd42::23" || l.HWAddr != "" || l.ClientID != "00:04:aa" {
		t.Errorf("ipv6 lease %+v", l)
	}
	if _, err := ParseLeases(strings.NewReader("garbage\n")); err == nil {
		t.Error("a malformed lease file parsed")
	}
}

func TestRenderDnsmasq(t *testing.T) {
	s, err := Parse("ctx1", map[string]string{"ipv4.address": "10.213.7.1/24", "dns.domain": "lab"})
	if err != nil {
		t.Fatal(err)
	}
	conf := RenderDnsmasq(s, "/d")
	for _, want := range []string{"interface=ctx1\n", "bind-interfaces\n", "except-interface=lo\n", "listen-address=10.213.7.1\n",
		"dhcp-range=10.213.7.2,10.213.7.254,1h\n", "domain=lab\n", "local=/lab/\n", "dhcp-hostsdir=/d/dhcp-hosts\n",
		"dhcp-leasefile=/d/dnsmasq.leases\n", "pid-file=/d/dnsmasq.pid\n", "no-resolv\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("dnsmasq.conf lacks %q:\n%s", want, conf)
		}
	}
	s.NAT4 = true
	if strings.Contains(RenderDnsmasq(s, "/d"), "no-resolv") {
		t.Error("a NAT network's dnsmasq does not forward upstream")
	}
}
