package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Bridges are driven with iproute2's `ip` rather than raw netlink: each
// step is one readable command whose error message (from the kernel, via
// ip) is already clear, and the handful of calls per network does not
// make the fork cost matter. `ip -j` gives JSON to parse where we read.

// runIP runs ip with args and returns its stdout; a failure carries ip's
// own message.
func runIP(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// InterfaceExists tells whether the host has a network interface of that name.
func InterfaceExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// IsBridge tells whether the host interface name is a Linux bridge.
func IsBridge(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name, "bridge"))
	return err == nil
}

// ensureBridge makes the host's bridge match s: created if missing, MTU,
// MAC address, addresses, and up. It reports whether it had to create it.
func ensureBridge(ctx context.Context, s Spec) (created bool, err error) {
	if !InterfaceExists(s.Name) {
		if _, err := runIP(ctx, "link", "add", "name", s.Name, "type", "bridge"); err != nil {
			return false, fmt.Errorf("create bridge %s: %w", s.Name, err)
		}
		created = true
	} else if !IsBridge(s.Name) {
		return false, fmt.Errorf("host interface %s exists and is not a bridge", s.Name)
	}
	// Unset bridge.mtu means the kernel's default, also after a change.
	mtu := s.MTU
	if mtu == 0 {
		mtu = 1500
	}
	if _, err := runIP(ctx, "link", "set", "dev", s.Name, "mtu", strconv.Itoa(mtu)); err != nil {
		return created, fmt.Errorf("set bridge %s mtu: %w", s.Name, err)
	}
	if s.HWAddr != "" {
		if _, err := runIP(ctx, "link", "set", "dev", s.Name, "address", s.HWAddr); err != nil {
			return created, fmt.Errorf("set bridge %s hwaddr: %w", s.Name, err)
		}
	}
	// Without IPv6 the bridge gets no link-local address either, so no
	// router solicitations go out; with it, duplicate address detection is
	// pointless (the subnet is ours) and would delay dnsmasq's binding.
	if err := setSysctl("net/ipv6/conf/"+s.Name+"/disable_ipv6", map[bool]string{true: "0", false: "1"}[s.IPv6.IsValid()]); err != nil {
		return created, err
	}
	if s.IPv6.IsValid() {
		if err := setSysctl("net/ipv6/conf/"+s.Name+"/accept_dad", "0"); err != nil {
			return created, err
		}
	}
	var want []netip.Prefix
	for _, p := range []netip.Prefix{s.IPv4, s.IPv6} {
		if p.IsValid() {
			want = append(want, p)
		}
	}
	if err := syncAddresses(ctx, s.Name, want); err != nil {
		return created, err
	}
	if _, err := runIP(ctx, "link", "set", "dev", s.Name, "up"); err != nil {
		return created, fmt.Errorf("bring bridge %s up: %w", s.Name, err)
	}
	return created, nil
}

func setSysctl(key, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

// ipAddr is the part of `ip -j addr` we read.
type ipAddr struct {
	IfName   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

// globalAddresses lists the global-scope addresses of every interface
// (dev "" ) or of one.
func globalAddresses(ctx context.Context, dev string) (map[string][]netip.Prefix, error) {
	args := []string{"-j", "addr", "show"}
	if dev != "" {
		args = append(args, "dev", dev)
	}
	out, err := runIP(ctx, args...)
	if err != nil {
		return nil, err
	}
	var links []ipAddr
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("parse ip -j addr: %w", err)
	}
	res := map[string][]netip.Prefix{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Scope != "global" {
				continue
			}
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				continue
			}
			res[l.IfName] = append(res[l.IfName], netip.PrefixFrom(ip, a.PrefixLen))
		}
	}
	return res, nil
}

// syncAddresses leaves exactly want as the global addresses of dev.
func syncAddresses(ctx context.Context, dev string, want []netip.Prefix) error {
	have, err := globalAddresses(ctx, dev)
	if err != nil {
		return fmt.Errorf("read addresses of %s: %w", dev, err)
	}
	for _, p := range have[dev] {
		if !containsPrefix(want, p) {
			if _, err := runIP(ctx, "addr", "del", p.String(), "dev", dev); err != nil {
				return fmt.Errorf("remove old address from %s: %w", dev, err)
			}
		}
	}
	for _, p := range want {
		if containsPrefix(have[dev], p) {
			continue
		}
		args := []string{"addr", "add", p.String(), "dev", dev}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		if _, err := runIP(ctx, args...); err != nil {
			return fmt.Errorf("add address to %s: %w", dev, err)
		}
	}
	return nil
}

func containsPrefix(list []netip.Prefix, p netip.Prefix) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// deleteBridge removes the bridge; a bridge already gone is fine.
func deleteBridge(ctx context.Context, name string) error {
	if !InterfaceExists(name) {
		return nil
	}
	if !IsBridge(name) {
		return fmt.Errorf("host interface %s is not a bridge: not deleting it", name)
	}
	if _, err := runIP(ctx, "link", "del", "dev", name); err != nil {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// renameBridge renames a bridge, which Linux allows only while it is down.
func renameBridge(ctx context.Context, oldName, newName string) error {
	if !InterfaceExists(oldName) {
		return nil
	}
	if InterfaceExists(newName) {
		return fmt.Errorf("host interface %s already exists", newName)
	}
	if _, err := runIP(ctx, "link", "set", "dev", oldName, "down"); err != nil {
		return err
	}
	if _, err := runIP(ctx, "link", "set", "dev", oldName, "name", newName); err != nil {
		return fmt.Errorf("rename bridge %s to %s: %w", oldName, newName, err)
	}
	return nil
}

// ErrNoInterface is returned for a host interface that does not exist.
var ErrNoInterface = errors.New("no such network interface")

// InterfaceType classifies a host interface the way LXD lists unmanaged
// networks: loopback, bridge, bond, vlan, physical or unknown.
func InterfaceType(name string) (string, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, ErrNoInterface)
	}
	sys := filepath.Join("/sys/class/net", name)
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(sys, p)); return err == nil }
	switch {
	case iface.Flags&net.FlagLoopback != 0:
		return "loopback", nil
	case exists("bridge"):
		return "bridge", nil
	case exists("bonding"):
		return "bond", nil
	case exists("device"):
		return "physical", nil
	}
	if _, err := os.Stat(filepath.Join("/proc/net/vlan", name)); err == nil {
		return "vlan", nil
	}
	return "unknown", nil
}
