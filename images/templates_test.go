package images

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// templateVolume writes an unpacked instance volume (the layout Unpack
// makes) with the given metadata.yaml templates section and template files.
func templateVolume(t *testing.T, templatesYAML string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vol")
	for _, d := range []string{"templates", "rootfs/etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.yaml"), []byte(testMetadata+"templates:\n"+templatesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, "templates", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var testContext = TemplateContext{
	Container: map[string]string{"name": "c01", "architecture": "x86_64", "privileged": "false", "ephemeral": "false"},
	Config:    map[string]string{"user.greeting": "hello & <welcome>"},
	Devices:   map[string]map[string]string{"eth0": {"type": "nic", "hwaddr": "00:16:3e:00:00:01"}},
}

func TestRenderTemplatesCreate(t *testing.T) {
	dir := templateVolume(t, `  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create]
    template: hosts.tpl
    properties:
      domain: example.test
  /etc/motd:
    when: [create]
    create_only: true
    template: motd.tpl
  /etc/start-only:
    when: [start]
    template: hostname.tpl
  /etc/new/dir/greeting:
    when: [create]
    template: greeting.tpl
`, map[string]string{
		"hostname.tpl": "{{ container.name }}\n",
		"hosts.tpl":    "127.0.1.1 {{ instance.name }}.{{ properties.domain }} # {{ trigger }} {{ path }} {{ devices.eth0.hwaddr }}\n",
		"motd.tpl":     "generated motd\n",
		"greeting.tpl": "{{ config_get(\"user.greeting\", \"none\") }} {{ config_get(\"user.missing\", \"fallback\") }}\n",
	})
	r := filepath.Join(dir, "rootfs")
	if err := os.WriteFile(filepath.Join(r, "etc/motd"), []byte("the image's own motd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An existing file owned by someone else is rewritten and re-owned.
	if err := os.WriteFile(filepath.Join(r, "etc/hostname"), []byte("old-name-that-is-longer\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := RenderTemplates(context.Background(), dir, TriggerCreate, testContext, shiftMap); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etc/hostname": "c01\n",
		"etc/hosts":    "127.0.1.1 c01.example.test # create /etc/hosts 00:16:3e:00:00:01\n",
		"etc/motd":     "the image's own motd\n", // create_only: left alone
		// Config files, not HTML: no escaping of & and <>.
		"etc/new/dir/greeting": "hello & <welcome> fallback\n",
	}
	for p, body := range want {
		if got := readFile(t, filepath.Join(r, p)); got != body {
			t.Errorf("%s = %q, want %q", p, got, body)
		}
	}
	assertAbsent(t, filepath.Join(r, "etc/start-only"))
	for _, p := range []string{"etc/hostname", "etc/hosts", "etc/new/dir/greeting", "etc/new"} {
		assertOwner(t, filepath.Join(r, p), 1000000, 1000000)
	}
	if got := lstat(t, filepath.Join(r, "etc/hostname")).Mode; got != unix.S_IFREG|0o644 {
		t.Errorf("etc/hostname mode %o, want 644", got)
	}

	// The start trigger renders only its own template.
	if err := RenderTemplates(context.Background(), dir, TriggerStart, testContext, shiftMap); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(r, "etc/start-only")); got != "c01\n" {
		t.Errorf("start template = %q", got)
	}
}

// TestRenderTemplatesCannotReadHostFiles: pongo2's file tags must not
// reach the host, and a template file name must not leave templates/.
func TestRenderTemplatesCannotReadHostFiles(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("TOPSECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	attacks := map[string]string{
		"include":        `{% include "` + secret + `" %}`,
		"include rel":    `{% include "../../../../../../../../` + secret + `" %}`,
		"ssi":            `{% ssi "` + secret + `" %}`,
		"ssi parsed":     `{% ssi "` + secret + `" parsed %}`,
		"import":         `{% import "` + secret + `" x %}`,
		"extends":        `{% extends "` + secret + `" %}`,
		"include exists": `{% include "` + secret + `" if_exists %}`,
	}
	for name, body := range attacks {
		t.Run(name, func(t *testing.T) {
			dir := templateVolume(t, "  /etc/out:\n    when: [create]\n    template: evil.tpl\n", map[string]string{"evil.tpl": body})
			err := RenderTemplates(context.Background(), dir, TriggerCreate, testContext, shiftMap)
			if err == nil {
				t.Errorf("template %s rendered without error", body)
			}
			if hits := findString(t, dir, "TOPSECRET"); len(hits) > 0 {
				t.Errorf("host file content leaked into %v", hits)
			}
		})
	}

	t.Run("template name leaves templates dir", func(t *testing.T) {
		dir := templateVolume(t, "  /etc/out:\n    when: [create]\n    template: ../../../../../../../.."+secret+"\n", nil)
		if err := RenderTemplates(context.Background(), dir, TriggerCreate, testContext, shiftMap); err == nil {
			t.Error("template outside templates/ was used")
		}
		if hits := findString(t, dir, "TOPSECRET"); len(hits) > 0 {
			t.Errorf("host file content leaked into %v", hits)
		}
	})
}

// TestRenderTemplatesTargetSymlinkStaysInside: the container (or image)
// made /etc/hostname a symlink to a host path; the write lands in the
// rootfs at that path, and the host file is untouched.
func TestRenderTemplatesTargetSymlinkStaysInside(t *testing.T) {
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "passwd")
	if err := os.WriteFile(hostFile, []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := templateVolume(t, `  /etc/hostname:
    when: [create]
    template: hostname.tpl
  /etc/up/hosts:
    when: [create]
    template: hostname.tpl
`, map[string]string{"hostname.tpl": "pwned\n"})
	r := filepath.Join(dir, "rootfs")
	// The same directories exist inside the rootfs, so the in-root
	// resolution of the absolute symlink has somewhere to land.
	if err := os.MkdirAll(filepath.Join(r, hostDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hostFile, filepath.Join(r, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
	// A relative symlink climbing out of the rootfs, for a parent dir.
	if err := os.Symlink("../../../../../../../.."+hostDir, filepath.Join(r, "etc/up")); err != nil {
		t.Fatal(err)
	}

	if err := RenderTemplates(context.Background(), dir, TriggerCreate, testContext, shiftMap); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, hostFile); got != "root:x:0:0::/root:/bin/sh\n" {
		t.Fatalf("host file changed to %q", got)
	}
	assertAbsent(t, filepath.Join(hostDir, "hosts"))
	if got := readFile(t, filepath.Join(r, hostFile)); got != "pwned\n" {
		t.Errorf("in-rootfs target = %q, want the rendered template", got)
	}
	if got := readFile(t, filepath.Join(r, hostDir, "hosts")); got != "pwned\n" {
		t.Errorf("in-rootfs target through parent symlink = %q", got)
	}
}

// TestRenderTemplatesRefusesFifo: a fifo at a target path (which a
// container can make before a restart) must not hang the daemon.
func TestRenderTemplatesRefusesFifo(t *testing.T) {
	dir := templateVolume(t, "  /etc/hostname:\n    when: [start]\n    template: h.tpl\n", map[string]string{"h.tpl": "x"})
	if err := unix.Mkfifo(filepath.Join(dir, "rootfs/etc/hostname"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- RenderTemplates(context.Background(), dir, TriggerStart, testContext, shiftMap) }()
	select {
	case err := <-done:
		// Refused at open (no reader: ENXIO) or after it (not a regular file).
		if err == nil {
			t.Error("RenderTemplates wrote to a fifo")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RenderTemplates blocked on a fifo")
	}
}

// TestUnpackThenRender is the path the daemon takes for "c launch": unpack
// an image with templates, then apply the create trigger.
func TestUnpackThenRender(t *testing.T) {
	s := newStore(t)
	md := testMetadata + "templates:\n  /etc/hostname:\n    when: [create]\n    template: hostname.tpl\n"
	info := addUnified(t, s, compress(t, formatXz, tarball(t,
		file("metadata.yaml", md),
		dir("templates/"),
		file("templates/hostname.tpl", "{{ instance.name }}\n"),
		dir("rootfs/"),
		dir("rootfs/etc/"),
		file("rootfs/etc/hostname", "image\n"),
	)))
	dest := filepath.Join(t.TempDir(), "vol")
	if err := s.Unpack(context.Background(), info.Fingerprint, dest, shiftMap); err != nil {
		t.Fatal(err)
	}
	assertOwner(t, filepath.Join(dest, "templates/hostname.tpl"), 0, 0)
	if err := RenderTemplates(context.Background(), dest, TriggerCreate, testContext, shiftMap); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dest, "rootfs/etc/hostname")
	if got := readFile(t, p); got != "c01\n" {
		t.Errorf("rendered hostname = %q", got)
	}
	assertOwner(t, p, 1000000, 1000000)
}
