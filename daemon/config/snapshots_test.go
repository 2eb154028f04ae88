package config

import (
	"strings"
	"testing"
)

func TestSnapshotKeys(t *testing.T) {
	for _, kv := range [][2]string{
		{"snapshots.schedule", "0 */6 * * *"}, {"snapshots.schedule", "@hourly, @startup"},
		{"snapshots.schedule.stopped", "true"}, {"snapshots.expiry", "1M 2H 3d 4w 5m 6y"},
		{"snapshots.pattern", "auto-{{ creation_date|date:'2006-01-02' }}-%d"}, {"snapshots.schedule", ""},
	} {
		if err := ValidateInstanceKey(kv[0], kv[1]); err != nil {
			t.Errorf("%s=%q refused: %v", kv[0], kv[1], err)
		}
	}
	for _, kv := range [][2]string{
		{"snapshots.schedule", "* * *"}, {"snapshots.schedule", "@sometimes"},
		{"snapshots.schedule.stopped", "perhaps"}, {"snapshots.expiry", "2 weeks"},
		{"snapshots.pattern", "snap%d%d"}, {"snapshots.pattern", "{{ broken"},
	} {
		err := ValidateInstanceKey(kv[0], kv[1])
		if err == nil || !strings.Contains(err.Error(), kv[0]+":") {
			t.Errorf("%s=%q: %v, want an error naming the key", kv[0], kv[1], err)
		}
	}
}
