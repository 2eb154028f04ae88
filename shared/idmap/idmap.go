// Package idmap describes how user and group ids inside an unprivileged
// container map to ids on the host.
package idmap

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Range maps container ids [0, Size) to host ids [HostBase, HostBase+Size).
type Range struct {
	HostBase int64
	Size     int64
}

// Map is the id map of one container. A zero Map means no mapping: the
// container is privileged and its ids are the host's.
type Map struct {
	UID Range
	GID Range
}

// DefaultSize is the number of ids each container gets (like LXD).
const DefaultSize = 65536

// defaultRange is used when /etc/subuid has no entry for root, as LXD does.
var defaultRange = Range{HostBase: 1000000, Size: 1000000000}

// IsPrivileged reports whether the map is the identity (no user namespace).
func (m Map) IsPrivileged() bool { return m.UID.Size == 0 && m.GID.Size == 0 }

// ShiftUID turns a container uid into a host uid.
func (m Map) ShiftUID(uid int64) int64 { return shift(m.UID, uid) }

// ShiftGID turns a container gid into a host gid.
func (m Map) ShiftGID(gid int64) int64 { return shift(m.GID, gid) }

// UnshiftUID turns a host uid into a container uid (-1 if not mapped).
func (m Map) UnshiftUID(uid int64) int64 { return unshift(m.UID, uid) }

// UnshiftGID turns a host gid into a container gid (-1 if not mapped).
func (m Map) UnshiftGID(gid int64) int64 { return unshift(m.GID, gid) }

func shift(r Range, id int64) int64 {
	if r.Size == 0 {
		return id
	}
	return r.HostBase + id
}

func unshift(r Range, id int64) int64 {
	if r.Size == 0 {
		return id
	}
	if id < r.HostBase || id >= r.HostBase+r.Size {
		return -1
	}
	return id - r.HostBase
}

// LXCConfig returns the lxc.idmap lines of the map.
func (m Map) LXCConfig() []string {
	if m.IsPrivileged() {
		return nil
	}
	return []string{
		fmt.Sprintf("lxc.idmap = u 0 %d %d", m.UID.HostBase, m.UID.Size),
		fmt.Sprintf("lxc.idmap = g 0 %d %d", m.GID.HostBase, m.GID.Size),
	}
}

// String renders the map as stored in volatile.idmap.* ("u:0:1000000:65536,g:0:1000000:65536").
func (m Map) String() string {
	if m.IsPrivileged() {
		return ""
	}
	return fmt.Sprintf("u:0:%d:%d,g:0:%d:%d", m.UID.HostBase, m.UID.Size, m.GID.HostBase, m.GID.Size)
}

// Parse reads a map written by String. The empty string is the privileged map.
func Parse(s string) (Map, error) {
	var m Map
	if s == "" {
		return m, nil
	}
	for _, part := range strings.Split(s, ",") {
		f := strings.Split(part, ":")
		if len(f) != 4 || f[1] != "0" {
			return Map{}, fmt.Errorf("invalid idmap entry %q: want KIND:0:HOSTBASE:SIZE", part)
		}
		base, err1 := strconv.ParseInt(f[2], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err := errors.Join(err1, err2); err != nil || size <= 0 || base < 0 {
			return Map{}, fmt.Errorf("invalid idmap entry %q", part)
		}
		switch f[0] {
		case "u":
			m.UID = Range{HostBase: base, Size: size}
		case "g":
			m.GID = Range{HostBase: base, Size: size}
		default:
			return Map{}, fmt.Errorf("invalid idmap entry %q: kind must be u or g", part)
		}
	}
	return m, nil
}

// HostAllowance returns the ranges root may hand to containers, read from
// /etc/subuid and /etc/subgid, or LXD's default when root has no entry.
func HostAllowance() (uid, gid Range, err error) {
	uid, err = readSubID("/etc/subuid")
	if err != nil {
		return Range{}, Range{}, err
	}
	gid, err = readSubID("/etc/subgid")
	return uid, gid, err
}

func readSubID(path string) (Range, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return defaultRange, nil
	}
	if err != nil {
		return Range{}, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) != 3 || (f[0] != "root" && f[0] != "0") {
			continue
		}
		base, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 == nil && err2 == nil && size >= DefaultSize {
			return Range{HostBase: base, Size: size}, nil
		}
	}
	return defaultRange, sc.Err()
}

// Default returns the map shared by containers that are not isolated: the
// first DefaultSize ids of root's allowance.
func Default() (Map, error) {
	u, g, err := HostAllowance()
	if err != nil {
		return Map{}, err
	}
	return Map{UID: Range{HostBase: u.HostBase, Size: DefaultSize}, GID: Range{HostBase: g.HostBase, Size: DefaultSize}}, nil
}
