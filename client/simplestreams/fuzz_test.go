package simplestreams

import (
	"strings"
	"testing"
)

// The index and products files come from any server a user adds: the
// parsers must turn whatever they get into an error or into images that
// are safe to use, never panic. The seeds are the real-layout fixtures of
// both servers; `go test` runs them as plain tests, `make fuzz` explores.

func seedFixtures(f *testing.F, suffix string) {
	for path, data := range renderFixture(f).files {
		if strings.HasSuffix(path, suffix) {
			f.Add(data)
		}
	}
}

func FuzzProductsPaths(f *testing.F) {
	seedFixtures(f, "/index.json")
	f.Add([]byte(`{"format": "index:1.0", "index": `))
	f.Fuzz(func(t *testing.T, data []byte) {
		paths, err := productsPaths(data)
		if err != nil {
			return
		}
		for _, p := range paths {
			if p == "" {
				t.Errorf("empty products path from %q", data)
			}
		}
	})
}

func FuzzParseProducts(f *testing.F) {
	seedFixtures(f, ".json")
	f.Fuzz(func(t *testing.T, data []byte) {
		imgs, err := parseProducts(data)
		if err != nil {
			return
		}
		for _, img := range imgs {
			if img.Fingerprint == "" || img.Fingerprint != strings.ToLower(img.Fingerprint) {
				t.Errorf("image %+v: fingerprint must be set and lower case", img)
			}
			if img.Meta.Path == "" || img.Rootfs.Path == "" {
				t.Errorf("image %s has no metadata or rootfs file", img.Fingerprint)
			}
			if img.Size != img.Meta.Size+img.Rootfs.Size {
				t.Errorf("image %s: size %d is not the sum of its files", img.Fingerprint, img.Size)
			}
		}
	})
}
