package liblxc

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsRenderOnlySetKeys(t *testing.T) {
	text, err := Config{Name: "c1", Rootfs: "/r", Limits: NoLimits}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "lxc.cgroup") {
		t.Fatalf("no limits rendered cgroup keys:\n%s", text)
	}
	l := NoLimits
	l.Memory, l.CPUQuota, l.CPUPeriod, l.Processes = 64<<20, 25*time.Millisecond, 100*time.Millisecond, 50
	text, err = Config{Name: "c1", Rootfs: "/r", Limits: l}.Render()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"memory.limit_in_bytes = 67108864", "cpu.cfs_quota_us = 25000", "cpu.cfs_period_us = 100000", "pids.max = 50"}
	prefix := "lxc.cgroup."
	if hostCgroups().v2 {
		want = []string{"memory.max = 67108864", "cpu.max = 25000 100000", "pids.max = 50"}
		prefix = "lxc.cgroup2."
	}
	for _, w := range want {
		if !strings.Contains(text, prefix+w+"\n") {
			t.Errorf("config lacks %s%s:\n%s", prefix, w, text)
		}
	}
}

// TestLimitsItemsReset: every governed file has a "no limit" value, so
// that unsetting a key on a running container writes it back.
func TestLimitsItemsReset(t *testing.T) {
	set := NoLimits
	set.CPUSet, set.Memory, set.Processes, set.CPUPriority, set.NoSwap = "0", 1<<30, 10, 3, true
	a, _ := set.items()
	b, isSet := NoLimits.items()
	if len(a) != len(b) {
		t.Fatalf("items differ in length: %d and %d", len(a), len(b))
	}
	for i := range b {
		if isSet[i] {
			t.Errorf("%s is set without a limit", b[i].Key)
		}
		if a[i].Key != b[i].Key {
			t.Errorf("item %d: %s and %s", i, a[i].Key, b[i].Key)
		}
	}
}
