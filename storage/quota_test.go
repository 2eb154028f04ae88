package storage

import (
	"errors"
	"strings"
	"testing"
)

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 512: "512B", 1536: "1.5KiB", 64 << 20: "64MiB", 5 << 30: "5GiB", 1 << 40: "1TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestQuotaErrors(t *testing.T) {
	err := BelowUsed("c1", 16<<20, 100<<20)
	if !errors.Is(err, ErrQuotaBelowUsed) || !strings.Contains(err.Error(), "16MiB") || !strings.Contains(err.Error(), "100MiB") {
		t.Errorf("BelowUsed: %v", err)
	}
	if QuotaSupported("dir") || !QuotaSupported("btrfs") || !QuotaSupported("zfs") {
		t.Error("QuotaSupported: only dir cannot limit")
	}
	if err := (&Dir{}).SetQuota(t.Context(), "c1", 1<<20); !errors.Is(err, ErrQuotaUnsupported) || !strings.Contains(err.Error(), "use btrfs or zfs") {
		t.Errorf("dir SetQuota: %v", err)
	}
}
