package liblxc

import (
	"strings"
	"testing"
)

func TestRenderNICs(t *testing.T) {
	var b strings.Builder
	line := func(k, v string) { b.WriteString(k + " = " + v + "\n") }
	if err := renderNICs(nil, line); err != nil || b.String() != "lxc.net.0.type = empty\n" {
		t.Fatalf("no nics: %q, %v", b.String(), err)
	}
	b.Reset()
	err := renderNICs([]NIC{
		{Type: "veth", Link: "br0", Name: "eth0", Hwaddr: "00:16:3e:00:00:01", HostName: "veth1234", MTU: 1400},
		{Type: "macvlan", Link: "eth9", Name: "eth1"},
	}, line)
	want := `lxc.net.0.type = veth
lxc.net.0.link = br0
lxc.net.0.veth.pair = veth1234
lxc.net.0.flags = up
lxc.net.0.name = eth0
lxc.net.0.hwaddr = 00:16:3e:00:00:01
lxc.net.0.mtu = 1400
lxc.net.1.type = macvlan
lxc.net.1.macvlan.mode = bridge
lxc.net.1.link = eth9
lxc.net.1.flags = up
lxc.net.1.name = eth1
`
	if err != nil || b.String() != want {
		t.Fatalf("got %q, %v; want %q", b.String(), err, want)
	}
	if err := renderNICs([]NIC{{Type: "veth", Name: "eth0\nlxc.hook.pre-start = x"}}, line); err == nil {
		t.Fatal("a newline in a nic value was rendered")
	}
}
