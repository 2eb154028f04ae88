package images

import (
	"encoding/binary"
	"fmt"

	"cell/shared/idmap"
)

// Two xattrs hold user ids and must be shifted with the files' owners,
// or they would mean something else (or nothing) inside the container.
const (
	xattrCapability = "security.capability"
	xattrACLAccess  = "system.posix_acl_access"
	xattrACLDefault = "system.posix_acl_default"
)

// File capabilities (linux/capability.h). A revision 2 value is only
// honoured for a file whose namespace root is host uid 0; revision 3 names
// the root uid it is valid for, which is how a shifted container's root
// gets to use e.g. ping's cap_net_raw.
const (
	vfsCapRevisionMask = 0xff000000
	vfsCapRevision2    = 0x02000000
	vfsCapRevision3    = 0x03000000
	vfsCapSize2        = 20
	vfsCapSize3        = 24
)

// POSIX ACL xattr layout (linux/posix_acl_xattr.h): a 4-byte version,
// then 8-byte entries {tag u16, perm u16, id u32}; only named user and
// group entries carry an id.
const (
	aclHeaderSize = 4
	aclEntrySize  = 8
	aclUser       = 0x02
	aclGroup      = 0x08
)

// shiftXattr returns the value to store for xattr name on a file of a
// container with idmap m.
func shiftXattr(name string, v []byte, m idmap.Map) ([]byte, error) {
	if m.IsPrivileged() {
		return v, nil
	}
	switch name {
	case xattrCapability:
		return shiftCapability(v, m)
	case xattrACLAccess, xattrACLDefault:
		return shiftACL(v, m)
	}
	return v, nil
}

func shiftCapability(v []byte, m idmap.Map) ([]byte, error) {
	if len(v) < 4 {
		return nil, fmt.Errorf("short %s value", xattrCapability)
	}
	magic := binary.LittleEndian.Uint32(v)
	var rootID int64
	switch {
	case magic&vfsCapRevisionMask == vfsCapRevision2 && len(v) == vfsCapSize2:
		rootID = 0
	case magic&vfsCapRevisionMask == vfsCapRevision3 && len(v) == vfsCapSize3:
		rootID = int64(binary.LittleEndian.Uint32(v[vfsCapSize2:]))
	default:
		return nil, fmt.Errorf("unknown %s revision %#x", xattrCapability, magic&vfsCapRevisionMask)
	}
	out := make([]byte, vfsCapSize3)
	copy(out, v[:vfsCapSize2])
	binary.LittleEndian.PutUint32(out, magic&^vfsCapRevisionMask|vfsCapRevision3)
	binary.LittleEndian.PutUint32(out[vfsCapSize2:], uint32(m.ShiftUID(rootID)))
	return out, nil
}

func shiftACL(v []byte, m idmap.Map) ([]byte, error) {
	if len(v) < aclHeaderSize || (len(v)-aclHeaderSize)%aclEntrySize != 0 {
		return nil, fmt.Errorf("malformed POSIX ACL xattr of %d bytes", len(v))
	}
	out := append([]byte(nil), v...)
	for off := aclHeaderSize; off < len(out); off += aclEntrySize {
		tag := binary.LittleEndian.Uint16(out[off:])
		id := int64(binary.LittleEndian.Uint32(out[off+4:]))
		switch tag {
		case aclUser:
			id = m.ShiftUID(id)
		case aclGroup:
			id = m.ShiftGID(id)
		default:
			continue
		}
		binary.LittleEndian.PutUint32(out[off+4:], uint32(id))
	}
	return out, nil
}

// unshiftXattr is the inverse of shiftXattr, for packing a container's
// files into an image: ids go back to the container's view, and a file
// capability becomes a revision 2 value (valid for the namespace root, as
// images carry them) when its root is the container's root. Ids the map
// does not cover become 0, as the files' owners do.
func unshiftXattr(name string, v []byte, m idmap.Map) ([]byte, error) {
	if m.IsPrivileged() {
		return v, nil
	}
	unshift := func(id int64, f func(int64) int64) uint32 {
		if c := f(id); c >= 0 {
			return uint32(c)
		}
		return 0
	}
	switch name {
	case xattrCapability:
		if len(v) < 4 {
			return nil, fmt.Errorf("short %s value", xattrCapability)
		}
		magic := binary.LittleEndian.Uint32(v)
		if magic&vfsCapRevisionMask != vfsCapRevision3 || len(v) != vfsCapSize3 {
			return v, nil
		}
		rootID := unshift(int64(binary.LittleEndian.Uint32(v[vfsCapSize2:])), m.UnshiftUID)
		if rootID != 0 {
			return v[:vfsCapSize3:vfsCapSize3], nil
		}
		out := make([]byte, vfsCapSize2)
		copy(out, v[:vfsCapSize2])
		binary.LittleEndian.PutUint32(out, magic&^vfsCapRevisionMask|vfsCapRevision2)
		return out, nil
	case xattrACLAccess, xattrACLDefault:
		if len(v) < aclHeaderSize || (len(v)-aclHeaderSize)%aclEntrySize != 0 {
			return nil, fmt.Errorf("malformed POSIX ACL xattr of %d bytes", len(v))
		}
		out := append([]byte(nil), v...)
		for off := aclHeaderSize; off < len(out); off += aclEntrySize {
			id := int64(binary.LittleEndian.Uint32(out[off+4:]))
			switch binary.LittleEndian.Uint16(out[off:]) {
			case aclUser:
				binary.LittleEndian.PutUint32(out[off+4:], unshift(id, m.UnshiftUID))
			case aclGroup:
				binary.LittleEndian.PutUint32(out[off+4:], unshift(id, m.UnshiftGID))
			}
		}
		return out, nil
	}
	return v, nil
}
