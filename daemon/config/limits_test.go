package config

import (
	"testing"
	"time"
)

func TestCPUAllowance(t *testing.T) {
	for in, want := range map[string][2]time.Duration{
		"25%":        {25 * time.Millisecond, 100 * time.Millisecond},
		"100%":       {100 * time.Millisecond, 100 * time.Millisecond},
		"25ms/100ms": {25 * time.Millisecond, 100 * time.Millisecond},
		"50ms/200ms": {50 * time.Millisecond, 200 * time.Millisecond},
		"":           {0, 0},
	} {
		q, p, err := CPUAllowance(in)
		if err != nil || q != want[0] || p != want[1] {
			t.Errorf("CPUAllowance(%q) = %v, %v, %v; want %v", in, q, p, err, want)
		}
	}
	for _, bad := range []string{"0%", "150%", "50", "25ms", "25ms/2s", "0ms/100ms", "x/100ms", "50 percent"} {
		if _, _, err := CPUAllowance(bad); err == nil {
			t.Errorf("CPUAllowance(%q) accepted", bad)
		}
	}
}

func TestLimitKeys(t *testing.T) {
	good := map[string]string{
		"limits.cpu.priority": "10", "limits.disk.priority": "0", "limits.memory.enforce": "soft",
		"limits.memory.swap": "false", "limits.processes": "500", "security.idmap.size": "65536",
		"security.syscalls.deny": "mount, kexec_load\numount2",
	}
	for k, v := range good {
		if err := ValidateInstanceKey(k, v); err != nil {
			t.Errorf("%s=%q refused: %v", k, v, err)
		}
	}
	bad := map[string]string{
		"limits.cpu.priority": "11", "limits.disk.priority": "-1", "limits.memory.enforce": "maybe",
		"limits.processes": "0", "limits.memory": "12furlongs", "security.idmap.size": "0",
		"security.syscalls.allow": "mount;reboot",
	}
	for k, v := range bad {
		if err := ValidateInstanceKey(k, v); err == nil {
			t.Errorf("%s=%q accepted", k, v)
		}
	}
}
