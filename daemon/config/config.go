// Package config knows the instance and server config keys: which exist,
// what values each accepts, and how to read them.
package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"cell/snapshots"
)

// checker validates one value; its error says what the key accepts.
type checker func(value string) error

var instanceKeys = map[string]checker{
	"boot.autostart":                 isBool,
	"boot.autostart.delay":           isNonNegativeInt,
	"boot.autostart.priority":        isInt,
	"boot.host_shutdown_timeout":     isNonNegativeInt,
	"boot.stop.priority":             isInt,
	"limits.cpu":                     isCPULimit,
	"limits.memory":                  isMemoryLimit,
	"limits.cpu.allowance":           isCPUAllowance,
	"limits.cpu.priority":            isPriority,
	"limits.memory.enforce":          isMemoryEnforce,
	"limits.memory.swap":             isBool,
	"limits.processes":               isProcesses,
	"limits.disk.priority":           isPriority,
	"security.privileged":            isBool,
	"security.nesting":               isBool,
	"security.idmap.isolated":        isBool,
	"security.idmap.size":            isIdmapSize,
	"security.idmap.base":            isNonNegativeInt,
	"security.syscalls.deny_default": isBool,
	"security.syscalls.deny":         isSyscallList,
	"security.syscalls.allow":        isSyscallList,
	"raw.lxc":                        isRawLXC,
	"snapshots.schedule":             isSchedule,
	"snapshots.schedule.stopped":     isBool,
	"snapshots.pattern":              snapshots.CheckPattern,
	"snapshots.expiry":               isExpiry,
}

// instancePrefixes are namespaces of free-form keys.
var instancePrefixes = map[string]checker{
	"environment.": isSingleLine,
	"user.":        isAny,
	"image.":       isAny,
	"volatile.":    isAny,
}

// ValidateInstanceKey checks one instance config key and its value.
func ValidateInstanceKey(key, value string) error {
	check, ok := instanceKeys[key]
	if !ok {
		for prefix, c := range instancePrefixes {
			if strings.HasPrefix(key, prefix) && len(key) > len(prefix) {
				check, ok = c, true
				break
			}
		}
	}
	if !ok {
		return fmt.Errorf("unknown config key %q (known: %s, and environment.*, user.*, image.*)", key, strings.Join(knownKeys(), ", "))
	}
	if name, isEnv := strings.CutPrefix(key, "environment."); isEnv && strings.ContainsFunc(name, notEnvNameRune) {
		// The name goes into an lxc.environment line, NAME=VALUE: an "="
		// would move the split, a newline would start another lxc key.
		return fmt.Errorf("invalid config key %q: an environment variable name must not contain \"=\", spaces or control characters", key)
	}
	if value == "" {
		return nil // an empty value unsets the key
	}
	if err := check(value); err != nil {
		return fmt.Errorf("invalid value for %s: %w", key, err)
	}
	return nil
}

// ValidateInstance checks every key of an instance (or profile) config.
func ValidateInstance(config map[string]string) error {
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := ValidateInstanceKey(k, config[k]); err != nil {
			return err
		}
	}
	return nil
}

func knownKeys() []string {
	out := make([]string, 0, len(instanceKeys))
	for k := range instanceKeys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ParseBool reads a boolean the way LXD does (true/false, 1/0, yes/no, on/off).
func ParseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use true or false)", v)
}

// IsTrue reports whether a config value is a true boolean.
func IsTrue(v string) bool {
	b, _ := ParseBool(v)
	return b
}

func isBool(v string) error { _, err := ParseBool(v); return err }

func isAny(string) error { return nil }

func isInt(v string) error {
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	return nil
}

func isNonNegativeInt(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a non-negative integer", v)
	}
	return nil
}

func notEnvNameRune(r rune) bool { return r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) }

func isSingleLine(v string) error {
	if strings.ContainsAny(v, "\n\r\x00") {
		return fmt.Errorf("value must be a single line")
	}
	return nil
}

// CPUSet turns limits.cpu into a cpuset list: a count N pins to the first N
// CPUs; a list ("0-1,3") is used as is.
func CPUSet(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 {
			return "", fmt.Errorf("%q: the CPU count must be at least 1", v)
		}
		if n == 1 {
			return "0", nil
		}
		return fmt.Sprintf("0-%d", n-1), nil
	}
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return "", fmt.Errorf("%q is neither a CPU count nor a CPU list like 0-1,3", v)
		}
	}
	return v, nil
}

func isCPULimit(v string) error { _, err := CPUSet(v); return err }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1000}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseSize reads a byte size such as 512MiB, 1GB or 1048576.
func ParseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (examples: 512MiB, 2GiB, 1GB, 1048576)", v)
	}
	return n * mult, nil
}

// MemoryLimit turns limits.memory into bytes, given the host's memory
// size for percentages.
func MemoryLimit(v string, hostBytes int64) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.ParseFloat(p, 64)
		if err != nil || n <= 0 || n > 100 {
			return 0, fmt.Errorf("%q is not a percentage between 0 and 100", v)
		}
		return int64(float64(hostBytes) * n / 100), nil
	}
	n, err := ParseSize(v)
	if err != nil {
		return 0, err
	}
	if n < 4<<20 {
		return 0, fmt.Errorf("%q is below the 4MiB minimum", v)
	}
	return n, nil
}

func isMemoryLimit(v string) error { _, err := MemoryLimit(v, 1<<30); return err }

// rawLXCForbidden are lxc keys celld must own: changing them would break
// its storage, logging or naming of the container.
var rawLXCForbidden = map[string]bool{
	"lxc.rootfs.path": true,
	"lxc.log.file":    true,
	"lxc.uts.name":    true,
}

func isRawLXC(v string) error {
	for i, line := range strings.Split(v, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, _, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !strings.HasPrefix(key, "lxc.") {
			return fmt.Errorf("line %d %q is not of the form lxc.KEY = VALUE", i+1, line)
		}
		if rawLXCForbidden[key] {
			return fmt.Errorf("line %d: %s is managed by celld and cannot be set in raw.lxc", i+1, key)
		}
	}
	return nil
}

func isSchedule(v string) error { _, err := snapshots.ParseSchedule(v); return err }

func isExpiry(v string) error { _, err := snapshots.ParseExpiry(v); return err }
