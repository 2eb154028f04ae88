// Package network runs celld's managed bridge networks on the host: the
// Linux bridge and its addresses, dnsmasq for DHCP and DNS, and nftables
// masquerading. It knows nothing of the API or the database: the daemon
// hands it a validated configuration.
package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultDomain is the DNS domain of a network that does not set dns.domain:
// instances resolve each other as <instance>.cell.
const DefaultDomain = "cell"

// keys are the LXD bridge keys Cell supports, each with its value check.
var keys = map[string]func(string) error{
	"ipv4.address":     func(v string) error { return checkAddress(v, true) },
	"ipv4.nat":         checkBool,
	"ipv4.dhcp":        checkBool,
	"ipv4.dhcp.ranges": checkRangesSyntax,
	"ipv4.dhcp.expiry": checkExpiry,
	"ipv6.address":     func(v string) error { return checkAddress(v, false) },
	"ipv6.nat":         checkBool,
	"ipv6.dhcp":        checkBool,
	"dns.domain":       checkDomain,
	"dns.mode":         oneOf("managed", "dynamic", "none"),
	"bridge.mtu":       checkMTU,
	"bridge.hwaddr":    checkMAC,
	"raw.dnsmasq":      func(string) error { return nil },
}

// SupportedKeys lists the keys ValidateConfig accepts (besides user.*),
// sorted, for error messages and documentation.
func SupportedKeys() []string {
	out := make([]string, 0, len(keys))
	for k := range keys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ValidateConfig checks key names and the syntax of each value. Checks that
// need the whole configuration (a range inside the subnet) are in Parse,
// and checks against the host (overlaps) are in CheckOverlap.
func ValidateConfig(config map[string]string) error {
	for k, v := range config {
		if strings.HasPrefix(k, "user.") {
			continue
		}
		check, ok := keys[k]
		if !ok {
			return fmt.Errorf("unknown network key %q (supported: %s, user.*)", k, strings.Join(SupportedKeys(), ", "))
		}
		if v == "" {
			continue // an empty value means the default
		}
		if err := check(v); err != nil {
			return fmt.Errorf("invalid value %q for %s: %w", v, k, err)
		}
	}
	return nil
}

// validName matches what Linux accepts as an interface name, which a
// managed network's name is: at most 15 characters, no '/', ':' or spaces.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)

// ValidateName checks a network name, which is also its bridge's name.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("invalid network name %q: it is the bridge's interface name: 1 to 15 letters, digits, '-', '_' or '.', starting with a letter or digit", name)
	}
	return nil
}

func checkBool(v string) error {
	if _, err := strconv.ParseBool(v); err != nil {
		return errors.New("must be true or false")
	}
	return nil
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("must be one of: %s", strings.Join(allowed, ", "))
		}
		return nil
	}
}

// checkAddress accepts "auto", "none" or the bridge's address in CIDR
// form (10.0.0.1/24): a host address of the family, not the subnet's own
// network or broadcast address.
func checkAddress(v string, v4 bool) error {
	if v == "auto" || v == "none" {
		return nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return fmt.Errorf("must be auto, none or an address in CIDR form (%s): %w", map[bool]string{true: "10.0.0.1/24", false: "fd42::1/64"}[v4], err)
	}
	if p.Addr().Is4() != v4 {
		return errors.New("wrong address family")
	}
	if v4 && (p.Bits() < 8 || p.Bits() > 30) {
		return errors.New("the prefix length must be between 8 and 30")
	}
	if !v4 && (p.Bits() < 8 || p.Bits() > 126) {
		return errors.New("the prefix length must be between 8 and 126")
	}
	if p.Addr() == p.Masked().Addr() {
		return fmt.Errorf("%s is the subnet's network address; give the bridge's own address, e.g. %s/%d", p.Addr(), p.Addr().Next(), p.Bits())
	}
	if v4 && p.Addr() == lastAddr(p) {
		return fmt.Errorf("%s is the subnet's broadcast address", p.Addr())
	}
	if p.Addr().IsLoopback() || p.Addr().IsMulticast() || p.Addr().IsUnspecified() || p.Addr().IsLinkLocalUnicast() {
		return errors.New("not a usable unicast address")
	}
	return nil
}

// lastAddr is the highest address of p's subnet.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Range is one DHCP range, both ends included.
type Range struct{ Start, End netip.Addr }

func parseRanges(v string) ([]Range, error) {
	var out []Range
	for _, part := range strings.Split(v, ",") {
		s, e, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			return nil, fmt.Errorf("range %q: must be FIRST-LAST (10.0.0.100-10.0.0.200), several separated by commas", part)
		}
		start, err1 := netip.ParseAddr(strings.TrimSpace(s))
		end, err2 := netip.ParseAddr(strings.TrimSpace(e))
		if err1 != nil || err2 != nil || !start.Is4() || !end.Is4() {
			return nil, fmt.Errorf("range %q: both ends must be IPv4 addresses", part)
		}
		if end.Less(start) {
			return nil, fmt.Errorf("range %q: the first address is after the last", part)
		}
		out = append(out, Range{start, end})
	}
	return out, nil
}

func checkRangesSyntax(v string) error {
	_, err := parseRanges(v)
	return err
}

// checkExpiry accepts dnsmasq's lease times: "infinite" or a number with
// an optional unit (s, m, h, d, w), at least two minutes as dnsmasq wants.
func checkExpiry(v string) error {
	if v == "infinite" {
		return nil
	}
	if _, err := expirySeconds(v); err != nil {
		return err
	}
	return nil
}

func expirySeconds(v string) (int, error) {
	unit := time.Second
	num := v
	switch v[len(v)-1] {
	case 's':
		num = v[:len(v)-1]
	case 'm':
		unit, num = time.Minute, v[:len(v)-1]
	case 'h':
		unit, num = time.Hour, v[:len(v)-1]
	case 'd':
		unit, num = 24*time.Hour, v[:len(v)-1]
	case 'w':
		unit, num = 7*24*time.Hour, v[:len(v)-1]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return 0, errors.New("must be infinite or a duration like 3600, 45m, 1h, 2d")
	}
	secs := time.Duration(n) * unit / time.Second
	if secs < 120 {
		return 0, errors.New("must be at least 2 minutes")
	}
	return int(secs), nil
}

var domainLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

func checkDomain(v string) error {
	for _, l := range strings.Split(v, ".") {
		if !domainLabel.MatchString(l) {
			return errors.New("must be a DNS domain: dot-separated labels of letters, digits and '-'")
		}
	}
	return nil
}

func checkMTU(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1280 || n > 65520 {
		return errors.New("must be a number between 1280 and 65520")
	}
	return nil
}

func checkMAC(v string) error {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 {
		return errors.New("must be a MAC address like 00:16:3e:12:34:56")
	}
	if hw[0]&1 == 1 {
		return errors.New("must be a unicast MAC address")
	}
	return nil
}

// Spec is a managed network's configuration, parsed and complete: what the
// host should have.
type Spec struct {
	Name string
	// IPv4 and IPv6 are the bridge's own addresses with their prefix
	// lengths; invalid (zero) when that family is off.
	IPv4, IPv6   netip.Prefix
	NAT4, NAT6   bool
	DHCP4, DHCP6 bool
	Ranges       []Range
	// Expiry is the lease time in dnsmasq's syntax ("1h", "infinite").
	Expiry  string
	Domain  string
	DNSMode string
	MTU     int
	HWAddr  string
	Raw     string
}

func boolKey(config map[string]string, key string, def bool) bool {
	v, ok := config[key]
	if !ok || v == "" {
		return def
	}
	b, _ := strconv.ParseBool(v)
	return b
}

// Parse turns a validated configuration whose addresses are resolved (no
// "auto" left) into a Spec, checking what needs several keys together.
func Parse(name string, config map[string]string) (Spec, error) {
	if err := ValidateConfig(config); err != nil {
		return Spec{}, err
	}
	s := Spec{Name: name, Domain: config["dns.domain"], DNSMode: config["dns.mode"],
		Expiry: config["ipv4.dhcp.expiry"], HWAddr: config["bridge.hwaddr"], Raw: config["raw.dnsmasq"],
		NAT4: boolKey(config, "ipv4.nat", false), NAT6: boolKey(config, "ipv6.nat", false),
		DHCP4: boolKey(config, "ipv4.dhcp", true), DHCP6: boolKey(config, "ipv6.dhcp", true)}
	if s.Domain == "" {
		s.Domain = DefaultDomain
	}
	if s.DNSMode == "" {
		s.DNSMode = "managed"
	}
	if s.Expiry == "" {
		s.Expiry = "1h"
	}
	if v := config["bridge.mtu"]; v != "" {
		s.MTU, _ = strconv.Atoi(v)
	}
	for _, fam := range []struct {
		key string
		dst *netip.Prefix
	}{{"ipv4.address", &s.IPv4}, {"ipv6.address", &s.IPv6}} {
		switch v := config[fam.key]; v {
		case "", "none":
		case "auto":
			return Spec{}, fmt.Errorf("%s is still auto: pick a subnet first", fam.key)
		default:
			*fam.dst = netip.MustParsePrefix(v)
		}
	}
	if s.NAT4 && !s.IPv4.IsValid() {
		return Spec{}, errors.New("ipv4.nat needs ipv4.address")
	}
	if s.NAT6 && !s.IPv6.IsValid() {
		return Spec{}, errors.New("ipv6.nat needs ipv6.address")
	}
	if v := config["ipv4.dhcp.ranges"]; v != "" {
		if !s.IPv4.IsValid() {
			return Spec{}, errors.New("ipv4.dhcp.ranges needs ipv4.address")
		}
		s.Ranges, _ = parseRanges(v)
		for _, r := range s.Ranges {
			if !s.IPv4.Masked().Contains(r.Start) || !s.IPv4.Masked().Contains(r.End) {
				return Spec{}, fmt.Errorf("ipv4.dhcp.ranges: %s-%s is not inside the subnet %s", r.Start, r.End, s.IPv4.Masked())
			}
		}
	} else if s.IPv4.IsValid() {
		// Everything but the network, broadcast and bridge's addresses.
		first, last := s.IPv4.Masked().Addr().Next(), lastAddr(s.IPv4).Prev()
		if first == s.IPv4.Addr() {
			first = first.Next()
		}
		if last == s.IPv4.Addr() {
			last = last.Prev()
		}
		s.Ranges = []Range{{first, last}}
	}
	return s, nil
}
