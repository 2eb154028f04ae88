package liblxc

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"cell/shared/idmap"
)

// Config is what celld decides about a container; Render turns it into
// lxc config.
type Config struct {
	Name    string
	LogFile string
	// Rootfs is the host path of the container's root filesystem.
	Rootfs string
	// Idmap is the container's id map; a zero map runs it privileged.
	Idmap idmap.Map
	// HaltSignal is what the container's init halts on (lxc.signal.halt).
	HaltSignal string
	Nesting    bool
	// Environment is set for init and for every exec.
	Environment map[string]string
	// CPUSet pins the container to these CPUs ("0-1", "0,2"); empty = all.
	CPUSet string
	// MemoryLimit in bytes; 0 = none.
	MemoryLimit int64
	// Raw is raw.lxc, appended last so that it wins.
	Raw string
	// Mounts are bind mounts of host directories (disk devices).
	Mounts []Mount
}

// Mount is a bind mount of a host directory into the container.
type Mount struct {
	// Source is the host path.
	Source string
	// Target is the path inside the container, relative to its root.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// Entry is the mount's lxc.mount.entry value.
func (m Mount) Entry() (string, error) {
	if m.Source == "" || m.Target == "" || strings.ContainsAny(m.Source+m.Target, " \t\n\r\\") {
		return "", fmt.Errorf("bind mount %q -> %q: paths must not be empty or hold spaces or control characters", m.Source, m.Target)
	}
	opts := "bind,create=dir"
	if m.ReadOnly {
		opts += ",ro"
	}
	return fmt.Sprintf("%s %s none %s 0 0", m.Source, m.Target, opts), nil
}

// cgroupV2Only reports whether the host has only the unified hierarchy; a
// hybrid host (v1 controllers plus a v2 mount) takes v1 keys.
func cgroupV2Only() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// Render returns the lxc config text.
func (c Config) Render() (string, error) {
	var b strings.Builder
	line := func(key, value string) {
		fmt.Fprintf(&b, "%s = %s\n", key, value)
	}
	// The distribution's defaults: capabilities, seccomp, device cgroup,
	// /proc and /sys mounts. userns.conf relaxes what a user namespace
	// already confines.
	line("lxc.include", "/usr/share/lxc/config/common.conf")
	if !c.Idmap.IsPrivileged() {
		line("lxc.include", "/usr/share/lxc/config/userns.conf")
	}
	line("lxc.arch", "linux64")
	line("lxc.uts.name", c.Name)
	line("lxc.rootfs.path", "dir:"+c.Rootfs)
	for _, l := range c.Idmap.LXCConfig() {
		b.WriteString(l + "\n")
	}
	line("lxc.log.file", c.LogFile)
	line("lxc.log.level", "info")
	line("lxc.autodev", "1")
	// No console device or gettys: nothing reads them yet, and CRIU cannot
	// checkpoint a container that has them.
	line("lxc.console.path", "none")
	line("lxc.tty.max", "0")
	line("lxc.net.0.type", "empty")
	if c.HaltSignal != "" {
		line("lxc.signal.halt", c.HaltSignal)
	}
	if c.Nesting {
		line("lxc.mount.auto", "proc:rw sys:rw cgroup:rw")
	}
	env := make([]string, 0, len(c.Environment))
	for k := range c.Environment {
		env = append(env, k)
	}
	sort.Strings(env)
	for _, k := range env {
		line("lxc.environment", k+"="+c.Environment[k])
	}
	prefix := "lxc.cgroup."
	memKey, cpuKey := "memory.limit_in_bytes", "cpuset.cpus"
	if cgroupV2Only() {
		prefix, memKey = "lxc.cgroup2.", "memory.max"
	}
	if c.MemoryLimit > 0 {
		line(prefix+memKey, fmt.Sprint(c.MemoryLimit))
	}
	if c.CPUSet != "" {
		line(prefix+cpuKey, c.CPUSet)
	}
	for _, m := range c.Mounts {
		entry, err := m.Entry()
		if err != nil {
			return "", err
		}
		line("lxc.mount.entry", entry)
	}
	if c.Raw != "" {
		b.WriteString(strings.TrimRight(c.Raw, "\n") + "\n")
	}
	text := b.String()
	// Every value above is a single line; a newline smuggled into one would
	// add lxc config the user was not allowed to write.
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if l != "" && !strings.Contains(l, "=") && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			return "", fmt.Errorf("generated lxc config has an invalid line %q", l)
		}
	}
	for _, v := range []string{c.Name, c.Rootfs, c.HaltSignal, c.CPUSet, c.LogFile} {
		if strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("lxc config value %q contains a newline", v)
		}
	}
	for k, v := range c.Environment {
		if strings.ContainsAny(k+v, "\n\r") {
			return "", fmt.Errorf("environment variable %q contains a newline", k)
		}
	}
	return text, nil
}
