package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"cell/daemon/config"
	"cell/daemon/liblxc"
)

// limitsOf reads the cgroup limits of an instance's expanded config. The
// keys were validated when they were set; what is checked here is what
// depends on the host (the CPUs it has, its memory).
func limitsOf(cfg map[string]string) (liblxc.Limits, error) {
	l := liblxc.NoLimits
	var err error
	if l.CPUSet, err = config.CPUSet(cfg["limits.cpu"]); err != nil {
		return l, badRequest("limits.cpu: %v", err)
	}
	if err := cpusExist(l.CPUSet); err != nil {
		return l, badRequest("limits.cpu: %v", err)
	}
	if l.CPUQuota, l.CPUPeriod, err = config.CPUAllowance(cfg["limits.cpu.allowance"]); err != nil {
		return l, badRequest("limits.cpu.allowance: %v", err)
	}
	if l.CPUPriority, err = config.Priority(cfg["limits.cpu.priority"]); err != nil {
		return l, badRequest("limits.cpu.priority: %v", err)
	}
	if l.DiskPriority, err = config.Priority(cfg["limits.disk.priority"]); err != nil {
		return l, badRequest("limits.disk.priority: %v", err)
	}
	if l.DiskPriority >= 0 && !liblxc.DiskWeightSupported() {
		// Not an error: the same profile must work on hosts with and
		// without an I/O scheduler that weighs cgroups.
		slog.Warn("limits.disk.priority has no effect: the host's cgroups have no I/O weight (blkio.weight, io.weight)")
	}
	if l.Memory, err = config.MemoryLimit(cfg["limits.memory"], hostMemory()); err != nil {
		return l, badRequest("limits.memory: %v", err)
	}
	l.MemorySoft = cfg["limits.memory.enforce"] == "soft"
	if v := cfg["limits.memory.swap"]; v != "" {
		l.NoSwap = !config.IsTrue(v)
	}
	if l.Processes, err = config.Processes(cfg["limits.processes"]); err != nil {
		return l, badRequest("limits.processes: %v", err)
	}
	return l, nil
}

// cpusExist checks that a cpuset names only CPUs the host has online: the
// kernel would refuse the others when the container starts.
func cpusExist(set string) error {
	if set == "" {
		return nil
	}
	online := cpuList(liblxc.OnlineCPUs())
	for cpu := range cpuList(set) {
		if !online[cpu] {
			return fmt.Errorf("CPU %d is not online on this host (online: %s)", cpu, liblxc.OnlineCPUs())
		}
	}
	return nil
}

// cpuList reads a list like "0-2,4" (already validated).
func cpuList(s string) map[int]bool {
	out := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, _ := strconv.Atoi(lo)
		b := a
		if isRange {
			b, _ = strconv.Atoi(hi)
		}
		for i := a; i <= b; i++ {
			out[i] = true
		}
	}
	return out
}

// applyLimits gives a running instance the limits of its new expanded
// config (a stopped one gets them at its next start). The new limits are
// all read before any is written; if the kernel refuses one, those
// already written are put back. undo reverts them all.
func (d *Daemon) applyLimits(before, after *instance) (undo func(), err error) {
	undo = func() {}
	newLimits, err := limitsOf(after.expandedConfig)
	if err != nil {
		return nil, err
	}
	if s := d.runtimeState(before.Name); s != liblxc.Running && s != liblxc.Frozen {
		return undo, nil
	}
	oldLimits, err := limitsOf(before.expandedConfig)
	if err != nil {
		// The old config no longer fits the host (say, fewer CPUs): write
		// every limit, starting from none.
		oldLimits = liblxc.NoLimits
	}
	undo, err = d.runtime.ApplyLimits(before.Name, oldLimits, newLimits)
	if errors.Is(err, liblxc.ErrLimitRefused) {
		return nil, badRequest("instance %q is running and %v (a memory limit must stay above what it uses now)", before.Name, err)
	}
	return undo, err
}
