package network

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests change the host (a bridge, an nft table, a dnsmasq) and
// need root; each removes what it made.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// testSpec returns a network with a random bridge name and a free subnet
// in 10.213.0.0/16, and removes its pieces after the test.
func testSpec(t *testing.T, m *Manager) Spec {
	t.Helper()
	used, err := HostPrefixes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var p netip.Prefix
	for range 100 {
		p = netip.MustParsePrefix(fmt.Sprintf("10.213.%d.1/24", rand.IntN(256)))
		if _, hit := Overlap(p, used, ""); !hit {
			break
		}
	}
	name := fmt.Sprintf("ctu%06x", rand.IntN(1<<24))
	s, err := Parse(name, map[string]string{"ipv4.address": p.String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(context.Background(), name); err != nil {
			t.Errorf("remove: %v", err)
		}
		if InterfaceExists(name) {
			t.Errorf("bridge %s left behind", name)
		}
		if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), NATTable(name)) {
			t.Errorf("nft table %s left behind", NATTable(name))
		}
	})
	return s
}

func TestNATRulesApplied(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	m := NewManager(t.TempDir())
	s := testSpec(t, m)
	if _, err := ensureBridge(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Only the rules are loaded; no packet is sent.
	s.NAT4 = true
	if err := applyNAT(ctx, s); err != nil {
		t.Fatal(err)
	}
	// Applying twice replaces the table rather than doubling the rule.
	if err := applyNAT(ctx, s); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nft", "list", "table", "inet", NATTable(s.Name)).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v: %s", err, out)
	}
	rule := fmt.Sprintf("ip saddr %s ip daddr != %s masquerade", s.IPv4.Masked(), s.IPv4.Masked())
	if strings.Count(string(out), rule) != 1 {
		t.Fatalf("table lacks exactly one %q:\n%s", rule, out)
	}
	s.NAT4 = false
	if err := applyNAT(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("nft", "list", "table", "inet", NATTable(s.Name)).Run(); err == nil {
		t.Fatal("the table is still there after NAT was turned off")
	}
}

func TestUpSupervisesAndAdopts(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	m := NewManager(t.TempDir())
	s := testSpec(t, m)
	bg, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := m.Up(ctx, bg, s); err != nil {
		t.Fatal(err)
	}
	pid := m.DnsmasqPID(s.Name)
	if pid == 0 {
		t.Fatal("no dnsmasq after Up")
	}
	// A second Up with the same configuration (a daemon restart) adopts it.
	m.Detach()
	if err := m.Up(ctx, bg, s); err != nil {
		t.Fatal(err)
	}
	if got := m.DnsmasqPID(s.Name); got != pid {
		t.Fatalf("dnsmasq pid %d after a second Up, want the adopted %d", got, pid)
	}
	// SIGHUP (hosts reload) leaves it running.
	if err := m.ReloadHosts(s.Name); err != nil {
		t.Fatal(err)
	}
	if got := m.DnsmasqPID(s.Name); got != pid {
		t.Fatalf("dnsmasq pid %d after a hosts reload, want %d", got, pid)
	}
	// Killed: the supervisor starts a new one.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := m.DnsmasqPID(s.Name); got != 0 && got != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dnsmasq was not restarted after it was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
