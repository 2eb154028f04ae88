package config

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// nicKeys are the keys of a nic device, LXD's names.
var nicKeys = map[string]bool{
	"type": true, "nictype": true, "network": true, "parent": true, "name": true,
	"hwaddr": true, "host_name": true, "mtu": true, "ipv4.address": true,
}

// NICTypes are the nictype values celld runs.
var NICTypes = []string{"bridged", "macvlan", "p2p"}

// ValidateNIC checks a nic device's keys and values on their own; what
// depends on the host (the parent exists, the address lies in the managed
// network's subnet) is checked by the daemon.
func ValidateNIC(name string, dev map[string]string) error {
	for k := range dev {
		if !nicKeys[k] {
			return fmt.Errorf("device %q: unknown nic key %q (allowed: %s)", name, k, strings.Join(sortedKeys(nicKeys), ", "))
		}
	}
	nictype, network, parent := dev["nictype"], dev["network"], dev["parent"]
	switch {
	case network != "":
		if nictype != "" && nictype != "bridged" {
			return fmt.Errorf("device %q: network=%s puts the nic on a managed bridge: nictype must be bridged or unset, not %q", name, network, nictype)
		}
		if parent != "" {
			return fmt.Errorf("device %q: set either network (a managed network) or parent (a host interface), not both", name)
		}
		if err := ValidateEntityName("network", network); err != nil {
			return fmt.Errorf("device %q: %w", name, err)
		}
	case nictype == "":
		return fmt.Errorf("device %q: a nic needs network=<managed network> or nictype (one of %s)", name, strings.Join(NICTypes, ", "))
	case nictype == "bridged" || nictype == "macvlan":
		if parent == "" {
			return fmt.Errorf("device %q: nictype %s needs parent (the host %s to attach to)", name, nictype, map[string]string{"bridged": "bridge", "macvlan": "interface"}[nictype])
		}
		if err := ValidateInterfaceName(parent); err != nil {
			return fmt.Errorf("device %q: parent: %w", name, err)
		}
	case nictype == "p2p":
		if parent != "" {
			return fmt.Errorf("device %q: nictype p2p makes a veth pair with no parent: remove parent", name)
		}
	default:
		return fmt.Errorf("device %q: unknown nictype %q (supported: %s)", name, nictype, strings.Join(NICTypes, ", "))
	}
	if v := dev["name"]; v != "" {
		if err := ValidateInterfaceName(v); err != nil {
			return fmt.Errorf("device %q: name: %w", name, err)
		}
	}
	if v := dev["host_name"]; v != "" {
		if nictype == "macvlan" {
			return fmt.Errorf("device %q: host_name applies to veth nics (bridged, p2p), not macvlan", name)
		}
		if err := ValidateInterfaceName(v); err != nil {
			return fmt.Errorf("device %q: host_name: %w", name, err)
		}
	}
	if v := dev["hwaddr"]; v != "" {
		if err := ValidateMAC(v); err != nil {
			return fmt.Errorf("device %q: hwaddr: %w", name, err)
		}
	}
	if v := dev["mtu"]; v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 68 || n > 65535 {
			return fmt.Errorf("device %q: mtu %q must be a number between 68 and 65535", name, v)
		}
	}
	if v := dev["ipv4.address"]; v != "" {
		if network == "" {
			return fmt.Errorf("device %q: ipv4.address needs a managed network (network=<name>): on an unmanaged bridge nothing would hand the address out", name)
		}
		if a, err := netip.ParseAddr(v); err != nil || !a.Is4() {
			return fmt.Errorf("device %q: ipv4.address %q is not an IPv4 address", name, v)
		}
	}
	return nil
}

// ValidateInterfaceName checks a Linux network interface name: 1 to 15
// characters, none of them a slash, colon, space or control character.
func ValidateInterfaceName(v string) error {
	if v == "" || len(v) > 15 || v == "." || v == ".." {
		return fmt.Errorf("%q is not an interface name (1 to 15 characters)", v)
	}
	for _, r := range v {
		if r <= ' ' || r == '/' || r == ':' || r >= 0x7f {
			return fmt.Errorf("interface name %q must not contain %q", v, r)
		}
	}
	return nil
}

// ValidateMAC checks a unicast Ethernet address written as six
// colon-separated hex pairs.
func ValidateMAC(v string) error {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 || len(v) != 17 {
		return fmt.Errorf("%q is not a MAC address like 00:16:3e:12:34:56", v)
	}
	if hw[0]&1 != 0 {
		return fmt.Errorf("%q is a multicast address: a nic needs a unicast one", v)
	}
	return nil
}

// proxyKeys are the keys of a proxy device celld implements.
var proxyKeys = map[string]bool{"type": true, "listen": true, "connect": true, "bind": true}

// ProxyAddress is one end of a proxy device: "tcp:127.0.0.1:80",
// "udp:[::1]:53" or "unix:/run/app.sock".
type ProxyAddress struct {
	// Network is tcp, udp or unix.
	Network string
	// Address is host:port, or a socket path.
	Address string
}

func (a ProxyAddress) String() string { return a.Network + ":" + a.Address }

// ParseProxyAddress reads one end of a proxy device.
func ParseProxyAddress(v string) (ProxyAddress, error) {
	network, addr, ok := strings.Cut(v, ":")
	if !ok {
		return ProxyAddress{}, fmt.Errorf("%q is not of the form tcp:HOST:PORT, udp:HOST:PORT or unix:/PATH", v)
	}
	switch network {
	case "tcp", "udp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return ProxyAddress{}, fmt.Errorf("%q: %q is not HOST:PORT (an IPv6 host goes in brackets)", v, addr)
		}
		if host == "" {
			return ProxyAddress{}, fmt.Errorf("%q: the host is missing (use 0.0.0.0 for every address)", v)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return ProxyAddress{}, fmt.Errorf("%q: %q is not an IP address", v, host)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return ProxyAddress{}, fmt.Errorf("%q: port %q must be one number between 1 and 65535 (port ranges are not supported)", v, port)
		}
	case "unix":
		if !strings.HasPrefix(addr, "/") || strings.ContainsAny(addr, "\n\r\x00") || len(addr) > 100 {
			return ProxyAddress{}, fmt.Errorf("%q: a unix socket must be an absolute path of at most 100 characters (abstract sockets are not supported)", v)
		}
	default:
		return ProxyAddress{}, fmt.Errorf("%q: unsupported protocol %q (use tcp, udp or unix)", v, network)
	}
	return ProxyAddress{Network: network, Address: addr}, nil
}

// ValidateProxy checks a proxy device: listen and connect addresses, and
// bind (host: listen on the host and connect inside the instance, or
// instance: the reverse).
func ValidateProxy(name string, dev map[string]string) (listen, connect ProxyAddress, err error) {
	for k := range dev {
		if !proxyKeys[k] {
			return listen, connect, fmt.Errorf("device %q: unsupported proxy key %q (supported: %s)", name, k, strings.Join(sortedKeys(proxyKeys), ", "))
		}
	}
	if b := dev["bind"]; b != "" && b != "host" && b != "instance" {
		return listen, connect, fmt.Errorf("device %q: bind %q must be host or instance", name, b)
	}
	for _, k := range []string{"listen", "connect"} {
		if dev[k] == "" {
			return listen, connect, fmt.Errorf("device %q: a proxy needs listen and connect (for example listen=tcp:127.0.0.1:8080 connect=tcp:127.0.0.1:80)", name)
		}
	}
	if listen, err = ParseProxyAddress(dev["listen"]); err != nil {
		return listen, connect, fmt.Errorf("device %q: listen: %w", name, err)
	}
	if connect, err = ParseProxyAddress(dev["connect"]); err != nil {
		return listen, connect, fmt.Errorf("device %q: connect: %w", name, err)
	}
	if (listen.Network == "udp") != (connect.Network == "udp") {
		return listen, connect, fmt.Errorf("device %q: udp can only be proxied to udp (listen %s, connect %s)", name, listen.Network, connect.Network)
	}
	return listen, connect, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "type" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
