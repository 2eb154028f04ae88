package config

import (
	"strings"
	"testing"
)

func TestValidateNIC(t *testing.T) {
	ok := []map[string]string{
		{"type": "nic", "network": "cellbr0"},
		{"type": "nic", "network": "cellbr0", "nictype": "bridged", "ipv4.address": "10.0.3.7", "name": "eth1"},
		{"type": "nic", "nictype": "bridged", "parent": "br0", "hwaddr": "00:16:3e:aa:bb:cc", "mtu": "1400", "host_name": "vethx"},
		{"type": "nic", "nictype": "macvlan", "parent": "eth0"},
		{"type": "nic", "nictype": "p2p"},
	}
	for _, dev := range ok {
		if err := ValidateNIC("eth0", dev); err != nil {
			t.Errorf("%v: %v", dev, err)
		}
	}
	bad := []struct {
		dev  map[string]string
		want string
	}{
		{map[string]string{"type": "nic", "network": "n", "parent": "br0"}, "not both"},
		{map[string]string{"type": "nic", "network": "n", "nictype": "macvlan"}, "must be bridged"},
		{map[string]string{"type": "nic", "nictype": "p2p", "parent": "br0"}, "remove parent"},
		{map[string]string{"type": "nic", "nictype": "macvlan", "parent": "eth0", "host_name": "v"}, "not macvlan"},
		{map[string]string{"type": "nic", "network": "n", "name": "a-very-long-interface-name"}, "1 to 15"},
		{map[string]string{"type": "nic", "network": "n", "name": "eth 0"}, "must not contain"},
		{map[string]string{"type": "nic", "network": "n", "ipv4.address": "fd00::1"}, "not an IPv4"},
		{map[string]string{"type": "nic", "network": "n", "hwaddr": "00:16:3e:aa:bb"}, "not a MAC"},
	}
	for _, c := range bad {
		if err := ValidateNIC("eth0", c.dev); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want an error mentioning %q", c.dev, err, c.want)
		}
	}
}

func TestParseProxyAddress(t *testing.T) {
	for in, want := range map[string]ProxyAddress{
		"tcp:127.0.0.1:80":    {"tcp", "127.0.0.1:80"},
		"udp:[::1]:53":        {"udp", "[::1]:53"},
		"unix:/run/app.sock":  {"unix", "/run/app.sock"},
		"tcp:0.0.0.0:8080":    {"tcp", "0.0.0.0:8080"},
		"tcp:[fd00::1]:65535": {"tcp", "[fd00::1]:65535"},
	} {
		got, err := ParseProxyAddress(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"tcp:127.0.0.1", "tcp::80", "tcp:localhost:80", "tcp:127.0.0.1:0", "tcp:127.0.0.1:70000",
		"unix:relative.sock", "unix:@abstract", "vsock:1:2", "127.0.0.1:80"} {
		if _, err := ParseProxyAddress(in); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}
