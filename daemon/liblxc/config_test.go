package liblxc

import (
	"strings"
	"testing"

	"cell/shared/idmap"
)

func TestRenderUnprivileged(t *testing.T) {
	m := idmap.Map{UID: idmap.Range{HostBase: 1000000, Size: 65536}, GID: idmap.Range{HostBase: 1000000, Size: 65536}}
	text, err := Config{Name: "c1", Rootfs: "/pool/c1/rootfs", Idmap: m, HaltSignal: "SIGRTMIN+3",
		Environment: map[string]string{"FOO": "bar"}, Limits: Limits{Memory: 512 << 20, CPUSet: "0-1", CPUPriority: -1, DiskPriority: -1}}.Render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"lxc.include = /usr/share/lxc/config/userns.conf",
		"lxc.idmap = u 0 1000000 65536",
		"lxc.rootfs.path = dir:/pool/c1/rootfs",
		"lxc.signal.halt = SIGRTMIN+3",
		"lxc.environment = FOO=bar",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
}

func TestRenderRefusesNewlineInjection(t *testing.T) {
	for _, c := range []Config{
		{Name: "c1", Rootfs: "/r", Environment: map[string]string{"A": "x\nlxc.rootfs.path = dir:/"}},
		{Name: "c1\nlxc.mount.entry = / host none bind 0 0", Rootfs: "/r"},
	} {
		if _, err := c.Render(); err == nil {
			t.Errorf("config with an injected line rendered: %+v", c)
		}
	}
}

func TestPrivilegedHasNoIdmap(t *testing.T) {
	text, err := Config{Name: "c1", Rootfs: "/r"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "lxc.idmap") || strings.Contains(text, "userns.conf") {
		t.Fatalf("privileged config has a user namespace:\n%s", text)
	}
}
