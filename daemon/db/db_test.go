package db

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cell.db")
	d, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestInstanceRowsStayHiddenUntilReady(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	id, err := d.CreateInstance(ctx, Instance{Name: "c1", Pool: "default", Profiles: []string{"default"},
		Config: map[string]string{"user.a": "1"}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Instance(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("instance being created is visible: %v", err)
	}
	if _, err := d.CreateInstance(ctx, Instance{Name: "c1", Pool: "default", CreatedAt: time.Now()}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name accepted: %v", err)
	}
	if err := d.SetInstanceReady(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	got, err := d.Instance(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Config["user.a"] != "1" || len(got.Profiles) != 1 || got.Profiles[0] != "default" {
		t.Fatalf("instance read back wrong: %+v", got)
	}
	unfinished, _ := d.UnfinishedInstances(ctx)
	if len(unfinished) != 0 {
		t.Fatalf("ready instance listed as unfinished: %+v", unfinished)
	}
}

func TestSetInstanceConfigMergesAndRemoves(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	id, err := d.CreateInstance(ctx, Instance{Name: "c1", Pool: "default", Config: map[string]string{"a": "1", "b": "2"}, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	_ = d.SetInstanceReady(ctx, id, true)
	if err := d.SetInstanceConfig(ctx, id, map[string]string{"a": "", "c": "3"}); err != nil {
		t.Fatal(err)
	}
	got, _ := d.Instance(ctx, "c1")
	if _, ok := got.Config["a"]; ok || got.Config["b"] != "2" || got.Config["c"] != "3" {
		t.Fatalf("config = %v, want a removed, b kept, c added", got.Config)
	}
}

func TestProfileInUseCannotBeDeleted(t *testing.T) {
	ctx := context.Background()
	d, _ := open(t)
	if err := d.CreateProfile(ctx, Profile{Name: "web", Config: map[string]string{}, Devices: map[string]map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	id, _ := d.CreateInstance(ctx, Instance{Name: "c1", Pool: "default", Profiles: []string{"default", "web"}, CreatedAt: time.Now()})
	_ = d.SetInstanceReady(ctx, id, true)
	if err := d.DeleteProfile(ctx, "web"); err == nil {
		t.Fatal("deleting a profile in use succeeded: the foreign key should refuse it")
	}
	users, _ := d.InstancesUsingProfile(ctx, "web")
	if len(users) != 1 || users[0] != "c1" {
		t.Fatalf("users of web = %v", users)
	}
	if err := d.DeleteInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteProfile(ctx, "web"); err != nil {
		t.Fatalf("delete unused profile: %v", err)
	}
}

func TestSchemaSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	d, path := open(t)
	if err := d.CreateImage(ctx, Image{Fingerprint: "abc", Size: 1, Architecture: "x86_64", Properties: map[string]string{}, UploadedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer d2.Close()
	if _, err := d2.Image(ctx, "ab"); err != nil {
		t.Fatalf("image lost across reopen: %v", err)
	}
	profiles, _ := d2.Profiles(ctx)
	if len(profiles) != 1 {
		t.Fatalf("migrations ran twice or not at all: %d profiles", len(profiles))
	}
}

func TestStoragePools(t *testing.T) {
	ctx := context.Background()
	d, err := Open(ctx, filepath.Join(t.TempDir(), "cell.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := StoragePool{Name: "fast", Driver: "btrfs", Config: map[string]string{"btrfs.mount_options": "noatime"},
		Local: map[string]string{"source": "/x/fast.img", "size": "1GiB"}}
	if err := d.CreateStoragePool(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := d.CreateStoragePool(ctx, p); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate pool: %v", err)
	}
	got, err := d.StoragePool(ctx, "fast")
	if err != nil || got.Local["source"] != "/x/fast.img" || got.Config["btrfs.mount_options"] != "noatime" || len(got.Config) != 1 {
		t.Fatalf("pool = %+v, %v", got, err)
	}
	prof, _ := d.Profile(ctx, "default")
	prof.Devices["root"] = map[string]string{"type": "disk", "path": "/", "pool": "fast"}
	if err := d.UpdateProfile(ctx, prof); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateInstance(ctx, Instance{Name: "c1", Pool: "fast", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	instances, profiles, err := d.PoolUsers(ctx, "fast")
	if err != nil || len(instances) != 1 || instances[0] != "c1" || len(profiles) != 1 || profiles[0] != "default" {
		t.Fatalf("users = %v %v, %v", instances, profiles, err)
	}
	if err := d.DeleteStoragePool(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.StoragePool(ctx, "fast"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted pool: %v", err)
	}
}

// A pool made before the host-local table existed keeps its source.
func TestMigratePoolSource(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cell.db")
	old, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{migrations[0], `INSERT INTO storage_pools (name, driver, config) VALUES ('default', 'dir', '{"source":"/p"}')`, "PRAGMA user_version = 1"} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	d, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p, err := d.StoragePool(ctx, "default")
	if err != nil || p.Local["source"] != "/p" || len(p.Config) != 0 {
		t.Fatalf("migrated pool = %+v, %v", p, err)
	}
}
