package liblxc

import (
	"fmt"
	"strconv"
	"strings"
)

// NIC is one network interface of a container.
type NIC struct {
	// Type is veth (bridged and p2p nics) or macvlan.
	Type string
	// Link is the host bridge a veth joins, or the macvlan's parent; empty
	// for a p2p veth.
	Link string
	// Name is the interface's name inside the container.
	Name string
	// Hwaddr is the container side's MAC address.
	Hwaddr string
	// HostName is the host side of a veth pair.
	HostName string
	// MTU is 0 for the kernel's default.
	MTU int
}

// renderNICs writes the lxc.net.N entries; a container without nics gets
// an empty network namespace (loopback only).
func renderNICs(nics []NIC, line func(key, value string)) error {
	if len(nics) == 0 {
		line("lxc.net.0.type", "empty")
		return nil
	}
	for i, n := range nics {
		for _, v := range []string{n.Type, n.Link, n.Name, n.Hwaddr, n.HostName} {
			if strings.ContainsAny(v, " \t\n\r=") {
				return fmt.Errorf("nic %s: value %q holds spaces or control characters", n.Name, v)
			}
		}
		p := "lxc.net." + strconv.Itoa(i) + "."
		switch n.Type {
		case "veth":
			line(p+"type", "veth")
			if n.Link != "" {
				line(p+"link", n.Link)
			}
			if n.HostName != "" {
				line(p+"veth.pair", n.HostName)
			}
		case "macvlan":
			if n.Link == "" {
				return fmt.Errorf("nic %s: macvlan needs a parent interface", n.Name)
			}
			line(p+"type", "macvlan")
			line(p+"macvlan.mode", "bridge")
			line(p+"link", n.Link)
		default:
			return fmt.Errorf("nic %s: unknown type %q", n.Name, n.Type)
		}
		line(p+"flags", "up")
		line(p+"name", n.Name)
		if n.Hwaddr != "" {
			line(p+"hwaddr", n.Hwaddr)
		}
		if n.MTU > 0 {
			line(p+"mtu", strconv.Itoa(n.MTU))
		}
	}
	return nil
}
