package daemon

import (
	"strings"
	"testing"
)

func TestNextSnapshotName(t *testing.T) {
	for _, c := range []struct {
		taken []string
		want  string
	}{
		{nil, "snap0"},
		{[]string{"snap0", "snap1"}, "snap2"},
		{[]string{"snap1", "other"}, "snap0"},
		{[]string{"snap0", "snap2"}, "snap1"},
	} {
		if got := nextSnapshotName(c.taken); got != c.want {
			t.Errorf("nextSnapshotName(%v) = %s, want %s", c.taken, got, c.want)
		}
	}
}

func TestValidateSnapshotName(t *testing.T) {
	for _, ok := range []string{"snap0", "before-upgrade", "a.b_c", strings.Repeat("x", 63)} {
		if err := validateSnapshotName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", ".tmp-x", "..", "a b", "tab\there", strings.Repeat("x", 64)} {
		if err := validateSnapshotName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
