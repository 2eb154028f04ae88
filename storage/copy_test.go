package storage

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestDirCopy copies a dir pool's instance, snapshot and refreshes a copy.
func TestDirCopy(t *testing.T) {
	ctx := context.Background()
	d, err := NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			return "<missing>"
		}
		return string(data)
	}
	if err := d.CreateInstanceEmpty(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(d.InstancePath("a"), "rootfs", "f"), "one")
	if err := d.CreateSnapshot(ctx, "a", "s0"); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(d.InstancePath("a"), "rootfs", "f"), "two")
	write(filepath.Join(d.InstancePath("a"), "rootfs", "gone"), "x")

	if err := d.CopyInstance(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := d.CopyInstance(ctx, "a", "b"); err == nil {
		t.Error("copy onto an existing volume accepted")
	}
	if err := d.CopySnapshot(ctx, "a", "s0", "b"); err != nil {
		t.Fatal(err)
	}
	if err := d.CopySnapshotToInstance(ctx, "a", "s0", "c"); err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(d.InstancePath("b"), "rootfs", "f")); got != "two" {
		t.Errorf("copy: %q", got)
	}
	if got := read(filepath.Join(d.SnapshotPath("b", "s0"), "rootfs", "f")); got != "one" {
		t.Errorf("copied snapshot: %q", got)
	}
	if got := read(filepath.Join(d.InstancePath("c"), "rootfs", "f")); got != "one" {
		t.Errorf("copy of snapshot: %q", got)
	}

	write(filepath.Join(d.InstancePath("a"), "rootfs", "f"), "three")
	if err := os.Remove(filepath.Join(d.InstancePath("a"), "rootfs", "gone")); err != nil {
		t.Fatal(err)
	}
	if err := d.RefreshInstance(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if got, gone := read(filepath.Join(d.InstancePath("b"), "rootfs", "f")), read(filepath.Join(d.InstancePath("b"), "rootfs", "gone")); got != "three" || gone != "<missing>" {
		t.Errorf("refresh: f = %q, gone = %q", got, gone)
	}
	if got := read(filepath.Join(d.SnapshotPath("b", "s0"), "rootfs", "f")); got != "one" {
		t.Errorf("refresh touched the snapshot: %q", got)
	}
	list, err := d.Instances()
	if err != nil || len(list) != 3 {
		t.Errorf("instances after copies: %v %v", list, err)
	}
}
