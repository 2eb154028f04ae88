package network

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Lease is one DHCP lease dnsmasq handed out.
type Lease struct {
	Hostname string
	// HWAddr is the client's MAC address (IPv4 leases); IPv6 leases carry
	// the client's DUID instead, in ClientID.
	HWAddr   string
	Address  string
	ClientID string
	Expiry   time.Time // zero for an infinite lease
	IPv6     bool
}

// ParseLeases reads a dnsmasq lease file: IPv4 lines are
// "EXPIRY MAC IP HOSTNAME CLIENTID", and after a "duid SERVERDUID" line
// IPv6 lines are "EXPIRY IAID IP HOSTNAME CLIENTDUID"; "*" means unknown
// and expiry 0 means infinite.
func ParseLeases(r io.Reader) ([]Lease, error) {
	var out []Lease
	v6 := false
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "duid" {
			v6 = true
			continue
		}
		if len(f) < 5 {
			return nil, fmt.Errorf("lease file line %d: %d fields, want 5", n, len(f))
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lease file line %d: bad expiry %q", n, f[0])
		}
		l := Lease{Address: f[2], IPv6: v6}
		if exp > 0 {
			l.Expiry = time.Unix(exp, 0).UTC()
		}
		if net.ParseIP(l.Address) == nil {
			return nil, fmt.Errorf("lease file line %d: bad address %q", n, f[2])
		}
		if !v6 {
			l.HWAddr = f[1]
		}
		if f[3] != "*" {
			l.Hostname = f[3]
		}
		if f[4] != "*" {
			l.ClientID = f[4]
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read lease file: %w", err)
	}
	return out, nil
}

// Leases returns the current leases of network name; none before dnsmasq
// has written its file.
func (m *Manager) Leases(name string) ([]Lease, error) {
	f, err := os.Open(m.LeasesPath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open leases: %w", err)
	}
	defer f.Close()
	return ParseLeases(f)
}

// HostEntry is one line of the network's dhcp-hostsdir, as the NIC
// devices write it: "HWADDR[,IPV4],NAME".
type HostEntry struct {
	File, HWAddr, IPv4, Name string
}

// HostEntries reads the network's dhcp-hostsdir; malformed lines are skipped.
func (m *Manager) HostEntries(name string) ([]HostEntry, error) {
	dir := m.HostsDir(name)
	files, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read dhcp hosts: %w", err)
	}
	var out []HostEntry
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.Split(strings.TrimSpace(line), ",")
			if len(parts) < 2 {
				continue
			}
			e := HostEntry{File: f.Name(), HWAddr: parts[0], Name: parts[len(parts)-1]}
			if len(parts) >= 3 {
				e.IPv4 = parts[1]
			}
			out = append(out, e)
		}
	}
	return out, nil
}
