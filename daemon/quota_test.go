package daemon

import (
	"strings"
	"testing"
)

func TestRootSize(t *testing.T) {
	if n, err := rootSize(map[string]string{"size": "5GiB"}, "btrfs"); err != nil || n != 5<<30 {
		t.Errorf("5GiB on btrfs: %d %v", n, err)
	}
	if n, err := rootSize(map[string]string{}, "dir"); err != nil || n != 0 {
		t.Errorf("no size on dir: %d %v", n, err)
	}
	if _, err := rootSize(map[string]string{"size": "5GiB"}, "dir"); err == nil || !strings.Contains(err.Error(), "use btrfs or zfs") {
		t.Errorf("size on dir: %v", err)
	}
	if _, err := rootSize(map[string]string{"size": "lots"}, "zfs"); err == nil || !strings.Contains(err.Error(), "not a size") {
		t.Errorf("bad size: %v", err)
	}
}
