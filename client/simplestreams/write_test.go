package simplestreams

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestWriteTree(t *testing.T) {
	src := t.TempDir()
	files := func(name, content string) TreeImage {
		meta, rootfs := filepath.Join(src, name+".meta"), filepath.Join(src, name+".rootfs")
		for p, c := range map[string]string{meta: content + " metadata", rootfs: content + " rootfs"} {
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return TreeImage{MetaFile: meta, RootfsFile: rootfs, OS: "Busybox", Release: "1.35", Architecture: "x86_64",
			Aliases: []string{"bb"}, CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	}
	tree := t.TempDir()
	v1, err := WriteTree(tree, []TreeImage{files("v1", "one")})
	if err != nil {
		t.Fatal(err)
	}
	// Same minute: the second version takes the next serial and is newer.
	v2, err := WriteTree(tree, []TreeImage{files("v2", "two")})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := WriteTree(tree, []TreeImage{files("v2", "two")}); err != nil || again[0] != v2[0] {
		t.Fatalf("writing the same image again: %v %v", again, err)
	}

	srv := httptest.NewServer(http.FileServer(http.Dir(tree)))
	defer srv.Close()
	c, err := New(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := c.Images(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Fingerprint != v2[0] || imgs[1].Fingerprint != v1[0] {
		t.Fatalf("images = %+v, want v2 then v1", imgs)
	}
	for _, alias := range []string{"bb", "busybox/1.35", "busybox/1.35/default", "busybox/1.35/amd64"} {
		if !slices.Contains(imgs[0].Aliases, alias) {
			t.Errorf("newest version lacks alias %q: %v", alias, imgs[0].Aliases)
		}
	}
	img, err := c.Resolve(context.Background(), "bb", "x86_64")
	if err != nil || img.Fingerprint != v2[0] {
		t.Fatalf("Resolve(bb) = %s, %v; want %s", img.Fingerprint, err, v2[0])
	}
	var meta, rootfs bytes.Buffer
	if err := c.Download(context.Background(), img, &meta, &rootfs, nil); err != nil {
		t.Fatal(err)
	}
	if meta.String() != "two metadata" || rootfs.String() != "two rootfs" {
		t.Fatalf("downloaded %q and %q", meta.String(), rootfs.String())
	}
	if _, err := WriteTree(tree, []TreeImage{{MetaFile: "x", RootfsFile: "y", OS: "a/b", Release: "1", Architecture: "amd64"}}); err == nil {
		t.Error("an os with a slash was accepted into product paths")
	}
}
