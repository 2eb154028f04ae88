package liblxc

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits are the cgroup limits of a container. A zero value means "no
// limit" (for the priorities: -1).
type Limits struct {
	// CPUSet pins the container to these CPUs ("0-1", "0,2"); empty = all.
	CPUSet string
	// CPUQuota of every CPUPeriod the container may run; 0 = no cap.
	CPUQuota, CPUPeriod time.Duration
	// CPUPriority and DiskPriority are 0 (lowest) to 10; -1 = default.
	CPUPriority, DiskPriority int
	// Memory in bytes; 0 = none. MemorySoft makes it a reclaim target
	// rather than a hard cap.
	Memory     int64
	MemorySoft bool
	// NoSwap keeps the container's memory out of swap.
	NoSwap bool
	// Processes is the most tasks the container may have; 0 = no limit.
	Processes int64
}

// NoLimits is the Limits of a container that has none.
var NoLimits = Limits{CPUPriority: -1, DiskPriority: -1}

// cgroupHost is what the host's cgroups offer, read once.
type cgroupHost struct {
	// v2 is true on a host with only the unified hierarchy; a hybrid host
	// (v1 controllers plus a v2 mount) takes v1 keys, as liblxc does.
	v2 bool
	// cpus is every online CPU, the cpuset of a container without pinning.
	cpus string
	// diskWeight is the cgroup file of the I/O weight, "" when the host
	// has none (v1 without BFQ, or v2 without the io controller).
	diskWeight string
}

var hostCgroups = sync.OnceValue(func() cgroupHost {
	h := cgroupHost{cpus: "0"}
	if data, err := os.ReadFile("/sys/devices/system/cpu/online"); err == nil {
		h.cpus = strings.TrimSpace(string(data))
	}
	controllers, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	h.v2 = err == nil
	if h.v2 {
		if slices.Contains(strings.Fields(string(controllers)), "io") {
			h.diskWeight = "io.weight"
		}
		return h
	}
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if _, err := os.Stat("/sys/fs/cgroup/blkio/" + f); err == nil {
			h.diskWeight = f
			break
		}
	}
	return h
})

// OnlineCPUs is the host's online CPU list, like "0-1".
func OnlineCPUs() string { return hostCgroups().cpus }

// CgroupItem is one cgroup file of a container and its value.
type CgroupItem struct{ Key, Value string }

// items returns every cgroup file the limits govern, with the value that
// means "no limit" where one is not set: set reports which ones are.
// The order is the order to write them in.
func (l Limits) items() (all []CgroupItem, set []bool) {
	h := hostCgroups()
	add := func(key, value, unset string, isSet bool) {
		if !isSet {
			value = unset
		}
		all = append(all, CgroupItem{key, value})
		set = append(set, isSet)
	}
	us := func(d time.Duration) string { return fmt.Sprint(d.Microseconds()) }
	add("cpuset.cpus", l.CPUSet, h.cpus, l.CPUSet != "")
	hard, soft := l.Memory > 0 && !l.MemorySoft, l.Memory > 0 && l.MemorySoft
	mem := fmt.Sprint(l.Memory)
	if h.v2 {
		add("cpu.max", us(l.CPUQuota)+" "+us(l.CPUPeriod), "max 100000", l.CPUQuota > 0)
		add("cpu.weight", fmt.Sprint(max(1, l.CPUPriority*20)), "100", l.CPUPriority >= 0)
		add("memory.max", mem, "max", hard)
		add("memory.high", mem, "max", soft)
		add("memory.swap.max", "0", "max", l.NoSwap)
		add("pids.max", fmt.Sprint(l.Processes), "max", l.Processes > 0)
	} else {
		// The period first: the kernel checks the quota against it.
		add("cpu.cfs_period_us", us(l.CPUPeriod), "100000", l.CPUQuota > 0)
		add("cpu.cfs_quota_us", us(l.CPUQuota), "-1", l.CPUQuota > 0)
		add("cpu.shares", fmt.Sprint(max(2, l.CPUPriority*1024/5)), "1024", l.CPUPriority >= 0)
		add("memory.limit_in_bytes", mem, "-1", hard)
		add("memory.soft_limit_in_bytes", mem, "-1", soft)
		add("memory.swappiness", "0", "60", l.NoSwap)
		add("pids.max", fmt.Sprint(l.Processes), "max", l.Processes > 0)
	}
	if h.diskWeight != "" {
		add(h.diskWeight, fmt.Sprint(max(10, l.DiskPriority*100)), "100", l.DiskPriority >= 0)
	}
	return all, set
}

// lxcKeys renders the limits that are set as lxc.cgroup(2).* lines.
func (l Limits) lxcKeys() []CgroupItem {
	prefix := "lxc.cgroup."
	if hostCgroups().v2 {
		prefix = "lxc.cgroup2."
	}
	all, set := l.items()
	var out []CgroupItem
	for i, it := range all {
		if set[i] {
			out = append(out, CgroupItem{prefix + it.Key, it.Value})
		}
	}
	return out
}

// ErrLimitRefused is wrapped by ApplyLimits when the kernel refused a
// value (for example a memory limit below what the container uses now).
var ErrLimitRefused = errors.New("the kernel refused the limit")

// ApplyLimits changes the limits of a running container from old to new,
// writing only the cgroup files whose value changes. If one write fails,
// the files already written get their old values back. undo puts every
// changed file back.
func (r *Runtime) ApplyLimits(name string, old, new Limits) (undo func(), err error) {
	before, _ := old.items()
	after, _ := new.items()
	var done []CgroupItem
	restore := func() {
		// Best effort, newest first: the old values were all accepted once.
		_ = r.setCgroupItems(name, slices.Backward(done))
	}
	for i, it := range after {
		if it == before[i] {
			continue
		}
		if err := r.setCgroupItems(name, slices.All([]CgroupItem{it})); err != nil {
			restore()
			return nil, err
		}
		done = append(done, before[i])
	}
	return restore, nil
}

// setCgroupItems writes cgroup files of a running container through
// liblxc, which knows where its cgroups are on a v1, hybrid or v2 host.
func (r *Runtime) setCgroupItems(name string, items iter.Seq2[int, CgroupItem]) error {
	c, err := r.container(name)
	if err != nil {
		return err
	}
	defer c.Release()
	var errs []error
	for _, it := range items {
		if err := c.SetCgroupItem(it.Key, it.Value); err != nil {
			errs = append(errs, fmt.Errorf("set %s to %s in container %s: %w: %w", it.Key, it.Value, name, ErrLimitRefused, err))
		}
	}
	return errors.Join(errs...)
}

// CgroupItem reads a cgroup file of a running container (its lines
// joined by newlines); "" when it cannot.
func (r *Runtime) CgroupItem(name, key string) string {
	c, err := r.container(name)
	if err != nil {
		return ""
	}
	defer c.Release()
	return strings.Join(c.CgroupItem(key), "\n")
}

// CgroupV2 reports whether the host has only the unified hierarchy, whose
// file names (cpu.stat, memory.events, io.stat) differ from v1's.
func CgroupV2() bool { return hostCgroups().v2 }

// Device is a device node made on the host and bind-mounted into the
// container, with the device cgroup opened for it.
type Device struct {
	// Node is the host path of the node.
	Node string
	// Target is its path inside the container, relative to its root.
	Target string
	// Kind is 'c' or 'b'.
	Kind         rune
	Major, Minor uint32
}

// rule is the device cgroup rule that lets the container use it.
func (dev Device) rule() string { return fmt.Sprintf("%c %d:%d rwm", dev.Kind, dev.Major, dev.Minor) }

// DevicesDir is where the nodes of a container's unix devices are made.
func (r *Runtime) DevicesDir(name string) string { return filepath.Join(r.Path, name, "devices") }

// AllowDevice opens the device cgroup of a running container for dev.
func (r *Runtime) AllowDevice(name string, dev Device) error {
	return r.setCgroupItems(name, slices.All([]CgroupItem{{"devices.allow", dev.rule()}}))
}

// DiskWeightSupported reports whether the host's cgroups have an I/O
// weight for limits.disk.priority.
func DiskWeightSupported() bool { return hostCgroups().diskWeight != "" }
