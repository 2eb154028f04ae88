package daemon

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"cell/daemon/config"
	"cell/shared/idmap"
)

// isolatedIdmap is the map of an instance with security.idmap.isolated,
// as allocated in volatile.idmap.next; ok is false before allocation.
func isolatedIdmap(inst *instance) (m idmap.Map, ok bool) {
	if !config.IsTrue(inst.expandedConfig["security.idmap.isolated"]) {
		return idmap.Map{}, false
	}
	m, err := idmap.Parse(inst.Config[keyIdmapNext])
	return m, err == nil && !m.IsPrivileged()
}

// idmapRequest is the range size and (when security.idmap.base is set)
// the base an isolated instance asks for.
func idmapRequest(inst *instance) (size, base int64, fixed bool) {
	size = idmap.DefaultSize
	if v, err := strconv.ParseInt(inst.expandedConfig["security.idmap.size"], 10, 64); err == nil {
		size = v
	}
	if v, err := strconv.ParseInt(inst.expandedConfig["security.idmap.base"], 10, 64); err == nil {
		return size, v, true
	}
	return size, 0, false
}

// allocateIdmap gives an instance with security.idmap.isolated a uid/gid
// range of its own before it starts: security.idmap.size ids taken from
// root's subuid/subgid allowance where no other instance's range (nor the
// range shared by the instances that are not isolated) is, or at
// security.idmap.base. It is recorded in volatile.idmap.next, where it
// stays (across restarts of celld) as long as it still fits the request.
func (d *Daemon) allocateIdmap(ctx context.Context, inst *instance) error {
	if config.IsTrue(inst.expandedConfig["security.privileged"]) ||
		!config.IsTrue(inst.expandedConfig["security.idmap.isolated"]) {
		return nil
	}
	// One allocation at a time: two starts must not pick the same range.
	unlock := d.locks.Lock("idmap-allocation")
	defer unlock()
	size, base, fixed := idmapRequest(inst)
	allowUID, allowGID, err := idmap.HostAllowance()
	if err != nil {
		return err
	}
	used, err := d.usedIdRanges(ctx, inst.Name)
	if err != nil {
		return err
	}
	free := func(offset int64) bool {
		r := idmap.Range{HostBase: allowUID.HostBase + offset, Size: size}
		return !slices.ContainsFunc(used, func(u idmap.Range) bool { return overlaps(r, u) })
	}
	offset := int64(-1)
	if cur, ok := isolatedIdmap(inst); ok && cur.UID.Size == size && (!fixed || cur.UID.HostBase == base) &&
		free(cur.UID.HostBase-allowUID.HostBase) {
		return nil // the range it has still fits
	}
	limit := min(allowUID.Size, allowGID.Size)
	switch {
	case fixed:
		offset = base - allowUID.HostBase
		if offset < 0 || offset+size > limit {
			return badRequest("security.idmap.base %d: the range of %d ids must lie within root's allowance %d-%d (/etc/subuid, /etc/subgid)",
				base, size, allowUID.HostBase, allowUID.HostBase+limit-1)
		}
		if !free(offset) {
			return badRequest("security.idmap.base %d: ids %d-%d are already used by another instance", base, base, base+size-1)
		}
	default:
		// Ranges start on multiples of the default size, as LXD's do.
		for o := int64(0); o+size <= limit; o += idmap.DefaultSize {
			if free(o) {
				offset = o
				break
			}
		}
		if offset < 0 {
			return badRequest("no free range of %d ids is left in root's allowance (/etc/subuid, /etc/subgid) for an isolated idmap", size)
		}
	}
	m := idmap.Map{
		UID: idmap.Range{HostBase: allowUID.HostBase + offset, Size: size},
		GID: idmap.Range{HostBase: allowGID.HostBase + offset, Size: size},
	}
	if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyIdmapNext: m.String()}); err != nil {
		return fmt.Errorf("record the idmap of %q: %w", inst.Name, err)
	}
	inst.Config[keyIdmapNext] = m.String()
	return nil
}

// usedIdRanges are the host uid ranges in use, but for instance skip's:
// the shared default range, and every other instance's own range (the
// one it runs with and the one it will start with).
func (d *Daemon) usedIdRanges(ctx context.Context, skip string) ([]idmap.Range, error) {
	used := []idmap.Range{d.idmap.UID}
	rows, err := d.db.Instances(ctx)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		if row.Name == skip {
			continue
		}
		for _, k := range []string{keyIdmapNext, keyIdmapCurrent} {
			if m, err := idmap.Parse(row.Config[k]); err == nil && !m.IsPrivileged() && m != d.idmap {
				used = append(used, m.UID)
			}
		}
	}
	return used, nil
}

func overlaps(a, b idmap.Range) bool {
	return a.HostBase < b.HostBase+b.Size && b.HostBase < a.HostBase+a.Size
}

// defaultDeniedSyscalls are denied unless security.syscalls.deny_default
// is false, as LXD does: loading kernel code and opening files by handle.
var defaultDeniedSyscalls = []string{"kexec_load", "open_by_handle_at", "init_module", "finit_module", "delete_module"}

// seccompProfile writes the liblxc seccomp profile of the
// security.syscalls.* keys, "" when none is set (the distribution's
// default profile from common.conf applies then). allow makes an
// allowlist; otherwise the denied calls fail with EPERM (ENOSYS for the
// defaults, as liblxc's own profile answers).
func seccompProfile(cfg map[string]string) string {
	allow, deny := syscallList(cfg["security.syscalls.allow"]), syscallList(cfg["security.syscalls.deny"])
	denyDefault := cfg["security.syscalls.deny_default"]
	if len(allow) == 0 && len(deny) == 0 && denyDefault == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("2\n")
	if len(allow) > 0 {
		b.WriteString("allowlist\n[all]\n")
		for _, s := range allow {
			b.WriteString(s + "\n")
		}
		return b.String()
	}
	b.WriteString("denylist\n[all]\n")
	if denyDefault == "" || config.IsTrue(denyDefault) {
		for _, s := range defaultDeniedSyscalls {
			b.WriteString(s + " errno 38\n")
		}
	}
	for _, s := range deny {
		b.WriteString(s + " errno 1\n")
	}
	return b.String()
}

// syscallList splits a list of syscall names (spaces, commas or newlines).
func syscallList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
}
