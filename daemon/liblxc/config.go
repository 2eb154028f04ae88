package liblxc

import (
	"fmt"
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
	// Limits are its cgroup limits.
	Limits Limits
	// Seccomp is the text of its own seccomp profile (liblxc's format);
	// empty keeps the distribution's default from common.conf.
	Seccomp string
	// seccompPath is where WriteConfig put Seccomp.
	seccompPath string
	// Raw is raw.lxc, appended last so that it wins.
	Raw string
	// Mounts are bind mounts of host directories (disk devices).
	Mounts []Mount
	// Devices are unix devices (unix-char, unix-block).
	Devices []Device
	// NICs are the container's network interfaces (net.go).
	NICs []NIC
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
	if err := renderNICs(c.NICs, line); err != nil {
		return "", err
	}
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
	if c.seccompPath != "" {
		line("lxc.seccomp.profile", c.seccompPath)
	}
	for _, it := range c.Limits.lxcKeys() {
		line(it.Key, it.Value)
	}
	for _, m := range c.Mounts {
		entry, err := m.Entry()
		if err != nil {
			return "", err
		}
		line("lxc.mount.entry", entry)
	}
	for _, dev := range c.Devices {
		if dev.Node == "" || dev.Target == "" || strings.ContainsAny(dev.Node+dev.Target, " \t\n\r\\") {
			return "", fmt.Errorf("device %q -> %q: paths must not be empty or hold spaces or control characters", dev.Node, dev.Target)
		}
		if hostCgroups().v2 {
			line("lxc.cgroup2.devices.allow", dev.rule())
		} else {
			line("lxc.cgroup.devices.allow", dev.rule())
		}
		line("lxc.mount.entry", dev.Node+" "+dev.Target+" none bind,create=file 0 0")
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
	for _, v := range []string{c.Name, c.Rootfs, c.HaltSignal, c.Limits.CPUSet, c.LogFile} {
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
