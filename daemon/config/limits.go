package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultCPUPeriod is the CFS period a percentage allowance is taken of.
const DefaultCPUPeriod = 100 * time.Millisecond

// CPUAllowance reads limits.cpu.allowance into a CFS quota and period.
// "25ms/100ms" lets the container run 25ms in every 100ms; "N%" is N
// percent of one CPU over a 100ms period (a hard cap, as the seed's
// --cpu-quota was: LXD reads a percentage as a soft share instead).
func CPUAllowance(v string) (quota, period time.Duration, err error) {
	if v == "" {
		return 0, 0, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		n, err := strconv.ParseFloat(p, 64)
		if err != nil || n <= 0 || n > 100 {
			return 0, 0, fmt.Errorf("%q: a percentage must be between 0 and 100 (or give a time slice such as 25ms/100ms)", v)
		}
		return time.Duration(float64(DefaultCPUPeriod) * n / 100), DefaultCPUPeriod, nil
	}
	q, p, ok := strings.Cut(v, "/")
	if ok {
		quota, err1 := time.ParseDuration(q)
		period, err2 := time.ParseDuration(p)
		switch {
		case err1 != nil || err2 != nil:
		case period < time.Millisecond || period > time.Second:
			return 0, 0, fmt.Errorf("%q: the period must be between 1ms and 1s", v)
		case quota < time.Millisecond:
			return 0, 0, fmt.Errorf("%q: the quota must be at least 1ms", v)
		default:
			return quota, period, nil
		}
	}
	return 0, 0, fmt.Errorf("%q is neither a percentage (50%%) nor a time slice (25ms/100ms)", v)
}

func isCPUAllowance(v string) error { _, _, err := CPUAllowance(v); return err }

// Priority reads a limits.*.priority value: 0 (lowest) to 10 (highest);
// an empty value gives -1, meaning "not set".
func Priority(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 10 {
		return 0, fmt.Errorf("%q is not a priority between 0 and 10", v)
	}
	return n, nil
}

func isPriority(v string) error { _, err := Priority(v); return err }

// Processes reads limits.processes: the most processes (and threads) the
// container may have; 0 means no limit.
func Processes(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a process count of at least 1", v)
	}
	return n, nil
}

func isProcesses(v string) error { _, err := Processes(v); return err }

func isMemoryEnforce(v string) error {
	if v != "hard" && v != "soft" {
		return fmt.Errorf("%q is neither hard nor soft", v)
	}
	return nil
}
