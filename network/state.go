package network

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"cell/shared/api"
)

// State reads a host interface's live state from the kernel: addresses,
// counters, MTU and, for a bridge, its bridge settings and ports.
func State(name string) (api.NetworkState, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return api.NetworkState{}, fmt.Errorf("%s: %w", name, ErrNoInterface)
	}
	typ, _ := InterfaceType(name)
	st := api.NetworkState{Addresses: []api.NetworkStateAddress{}, Hwaddr: iface.HardwareAddr.String(),
		Mtu: iface.MTU, State: "down", Type: "broadcast"}
	if iface.Flags&net.FlagUp != 0 {
		st.State = "up"
	}
	if iface.Flags&net.FlagLoopback != 0 {
		st.Type = "loopback"
	} else if iface.Flags&net.FlagPointToPoint != 0 {
		st.Type = "point-to-point"
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return st, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		fam, scope := "inet6", "global"
		if ipn.IP.To4() != nil {
			fam = "inet"
		}
		switch {
		case ipn.IP.IsLoopback():
			scope = "local"
		case ipn.IP.IsLinkLocalUnicast():
			scope = "link"
		}
		st.Addresses = append(st.Addresses, api.NetworkStateAddress{Family: fam, Address: ipn.IP.String(),
			Netmask: strconv.Itoa(ones), Scope: scope})
	}
	sys := filepath.Join("/sys/class/net", name)
	st.Counters = api.NetworkStateCounters{
		BytesReceived: readInt(filepath.Join(sys, "statistics/rx_bytes")), BytesSent: readInt(filepath.Join(sys, "statistics/tx_bytes")),
		PacketsReceived: readInt(filepath.Join(sys, "statistics/rx_packets")), PacketsSent: readInt(filepath.Join(sys, "statistics/tx_packets")),
	}
	if typ == "bridge" {
		b := &api.NetworkStateBridge{UpperDevices: []string{}}
		id, _ := os.ReadFile(filepath.Join(sys, "bridge/bridge_id"))
		b.ID = strings.TrimSpace(string(id))
		b.STP = readInt(filepath.Join(sys, "bridge/stp_state")) != 0
		// The kernel counts the forward delay in hundredths of a second.
		b.ForwardDelay = uint64(readInt(filepath.Join(sys, "bridge/forward_delay")))
		b.VlanDefault = uint64(readInt(filepath.Join(sys, "bridge/default_pvid")))
		b.VlanFiltering = readInt(filepath.Join(sys, "bridge/vlan_filtering")) != 0
		ports, _ := os.ReadDir(filepath.Join(sys, "brif"))
		for _, p := range ports {
			b.UpperDevices = append(b.UpperDevices, p.Name())
		}
		st.Bridge = b
	}
	return st, nil
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}
