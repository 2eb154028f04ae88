package storage

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "20GB": 20e9, "4096": 4096, "2G": 2 << 30, "10B": 10}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "GiB", "-1GiB", "0", "1.5GiB", "1 2GiB", "99999999999TiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestValidateConfig(t *testing.T) {
	if err := ValidateConfig("btrfs", map[string]string{"size": "1GiB", "btrfs.mount_options": "compress=zstd"}); err != nil {
		t.Fatal(err)
	}
	if err := ValidateConfig("zfs2", nil); !errors.Is(err, ErrUnknownDriver) {
		t.Fatalf("unknown driver: %v", err)
	}
	for _, c := range []map[string]string{{"colour": "red"}, {"size": "lots"}, {"btrfs.mount_options": "x;rm"}} {
		if err := ValidateConfig("btrfs", c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ValidateConfig(%v) = %v", c, err)
		}
	}
	if err := ValidateConfig("dir", map[string]string{"size": "1GiB"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("dir accepted size: %v", err)
	}
	old := map[string]string{"source": "/a", "size": "1GiB"}
	if err := ValidateUpdate("btrfs", old, map[string]string{"source": "/a", "size": "1GiB", "btrfs.mount_options": "noatime"}); err != nil {
		t.Errorf("changing mount options: %v", err)
	}
	if err := ValidateUpdate("btrfs", old, map[string]string{"source": "/b", "size": "1GiB"}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("changing source: %v", err)
	}
}
