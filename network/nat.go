package network

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Each NAT network gets its own nftables table, named after it, so that
// celld never edits rules it did not write and removing a network is one
// "delete table". iptables is not assumed: nft is the kernel's native
// interface and is what Debian installs.

// NATTable is the nftables table (family inet) of network name.
func NATTable(name string) string { return "cell-" + name }

// RenderNAT returns the nft script that replaces the network's table with
// one masquerading the subnets whose NAT is on, or "" when neither is.
// Traffic between addresses of the subnet itself is left alone.
func RenderNAT(s Spec) string {
	var rules []string
	if s.NAT4 && s.IPv4.IsValid() {
		n := s.IPv4.Masked()
		rules = append(rules, fmt.Sprintf("\t\tip saddr %s ip daddr != %s masquerade\n", n, n))
	}
	if s.NAT6 && s.IPv6.IsValid() {
		n := s.IPv6.Masked()
		rules = append(rules, fmt.Sprintf("\t\tip6 saddr %s ip6 daddr != %s masquerade\n", n, n))
	}
	if len(rules) == 0 {
		return ""
	}
	t := NATTable(s.Name)
	var b strings.Builder
	// Declaring then deleting the table makes the load replace it
	// atomically whether it existed or not.
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\n", t, t)
	fmt.Fprintf(&b, "table inet %s {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n", t)
	for _, r := range rules {
		b.WriteString(r)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func runNft(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, "nft", args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// applyNAT loads the network's table, or removes it when NAT is off.
func applyNAT(ctx context.Context, s Spec) error {
	script := RenderNAT(s)
	if script == "" {
		return deleteNAT(ctx, s.Name)
	}
	if err := runNft(ctx, script, "-f", "-"); err != nil {
		return fmt.Errorf("load nat rules of %s: %w", s.Name, err)
	}
	return nil
}

// deleteNAT removes the network's table if it exists.
func deleteNAT(ctx context.Context, name string) error {
	t := NATTable(name)
	// Same idiom: declaring first makes the delete succeed when absent.
	if err := runNft(ctx, fmt.Sprintf("table inet %s {}\ndelete table inet %s\n", t, t), "-f", "-"); err != nil {
		return fmt.Errorf("remove nat rules of %s: %w", name, err)
	}
	return nil
}

// enableForwarding turns on the host's packet forwarding for the families
// a NAT network masquerades: without it nothing reaches past the bridge.
func enableForwarding(s Spec) error {
	if s.NAT4 {
		if err := setSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	if s.NAT6 {
		if err := setSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return err
		}
	}
	return nil
}
