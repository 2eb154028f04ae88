package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// Used is a prefix the host or another network already has.
type Used struct {
	Prefix netip.Prefix
	// Dev is the interface the route or address is on, "" for another
	// managed network's configured subnet.
	Dev string
}

// ipRoute is the part of `ip -j route` we read.
type ipRoute struct {
	Type string `json:"type"`
	Dst  string `json:"dst"`
	Dev  string `json:"dev"`
}

// HostPrefixes lists every route (all tables, both families) and every
// global address of the host: a new network's subnet must overlap none.
// Default routes and multicast are left out: they cover everything.
func HostPrefixes(ctx context.Context) ([]Used, error) {
	var out []Used
	for _, fam := range []string{"-4", "-6"} {
		b, err := runIP(ctx, "-j", fam, "route", "show", "table", "all")
		if err != nil {
			return nil, fmt.Errorf("read host routes: %w", err)
		}
		var routes []ipRoute
		if err := json.Unmarshal(b, &routes); err != nil {
			return nil, fmt.Errorf("parse ip -j route: %w", err)
		}
		for _, r := range routes {
			if r.Dst == "default" || r.Type == "multicast" {
				continue
			}
			p, err := parseDst(r.Dst)
			if err != nil || p.Bits() == 0 {
				continue
			}
			out = append(out, Used{Prefix: p, Dev: r.Dev})
		}
	}
	addrs, err := globalAddresses(ctx, "")
	if err != nil {
		return nil, err
	}
	for dev, list := range addrs {
		for _, p := range list {
			out = append(out, Used{Prefix: p.Masked(), Dev: dev})
		}
	}
	return out, nil
}

// parseDst reads a route destination: a prefix, or a single address.
func parseDst(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Overlap returns the first entry of used that overlaps p, ignoring those
// on the interface skipDev (the network's own bridge, when it changes).
func Overlap(p netip.Prefix, used []Used, skipDev string) (Used, bool) {
	for _, u := range used {
		if skipDev != "" && u.Dev == skipDev {
			continue
		}
		if u.Prefix.Overlaps(p.Masked()) {
			return u, true
		}
	}
	return Used{}, false
}

// ErrNoFreeSubnet is returned when no free subnet was found.
var ErrNoFreeSubnet = errors.New("no free subnet found")

// PickIPv4 picks a random 10.x.y.0/24 that overlaps nothing in used and
// returns the bridge's address in it (10.x.y.1/24), as LXD's auto does.
func PickIPv4(used []Used, rnd *rand.Rand) (netip.Prefix, error) {
	for range 1000 {
		a := netip.AddrFrom4([4]byte{10, byte(rnd.IntN(256)), byte(rnd.IntN(256)), 1})
		p := netip.PrefixFrom(a, 24)
		if _, hit := Overlap(p, used, ""); !hit {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("ipv4.address=auto: %w in 10.0.0.0/8", ErrNoFreeSubnet)
}

// PickIPv6 picks a random unique local /64 (fdXX:XXXX:XXXX:YYYY::/64, RFC
// 4193) that overlaps nothing in used and returns the bridge's address
// (::1) in it.
func PickIPv6(used []Used, rnd *rand.Rand) (netip.Prefix, error) {
	for range 1000 {
		var b [16]byte
		b[0] = 0xfd
		for i := 1; i < 8; i++ {
			b[i] = byte(rnd.IntN(256))
		}
		b[15] = 1
		p := netip.PrefixFrom(netip.AddrFrom16(b), 64)
		if _, hit := Overlap(p, used, ""); !hit {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("ipv6.address=auto: %w in fd00::/8", ErrNoFreeSubnet)
}
