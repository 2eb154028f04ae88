package cli

import (
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"cell/shared/api"
)

func testConfig(t *testing.T) *Config {
	t.Helper()
	t.Setenv("CELL_CONF", t.TempDir())
	conf, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	return conf
}

func TestParseRemote(t *testing.T) {
	conf := testConfig(t)
	cases := []struct{ in, remote, name string }{
		{"c1", "local", "c1"},
		{"local:c1", "local", "c1"},
		{"local:", "local", ""},
		{"", "local", ""},
		{"c1/etc/a:b", "local", "c1/etc/a:b"},
		{"local:c1/etc/a:b", "local", "c1/etc/a:b"},
	}
	for _, c := range cases {
		remote, name, err := conf.ParseRemote(c.in)
		if err != nil || remote != c.remote || name != c.name {
			t.Errorf("ParseRemote(%q) = %q, %q, %v; want %q, %q", c.in, remote, name, err, c.remote, c.name)
		}
	}
	if r, name, err := conf.ParseRemote("images:debian/12"); err != nil || r != "images" || name != "debian/12" {
		t.Errorf("ParseRemote(images:debian/12) = %q, %q, %v", r, name, err)
	}
	_, _, err := conf.ParseRemote("nope:debian/12")
	if err == nil || err.Error() != `The remote "nope" doesn't exist` {
		t.Fatalf("unknown remote: err = %v", err)
	}
}

func TestConnectUnknownRemote(t *testing.T) {
	conf := testConfig(t)
	if _, err := conf.Connect("nope"); err == nil {
		t.Fatal("Connect to an unknown remote succeeded")
	}
	conf.Remotes["web"] = Remote{Addr: "https://example.invalid:8443", Protocol: "lxd"}
	if _, err := conf.Connect("web"); err == nil {
		t.Fatal("Connect to an HTTPS remote succeeded before HTTPS exists")
	}
}

func TestConfigDir(t *testing.T) {
	t.Setenv("CELL_CONF", "/tmp/cellconf")
	if got := ConfigDir(); got != "/tmp/cellconf" {
		t.Fatalf("ConfigDir = %q", got)
	}
}

func TestSplitInstancePath(t *testing.T) {
	inst, p, err := splitInstancePath("c1/etc/hosts")
	if err != nil || inst != "c1" || p != "/etc/hosts" {
		t.Fatalf("= %q %q %v", inst, p, err)
	}
	inst, p, err = splitInstancePath("c1/tmp/")
	if err != nil || inst != "c1" || p != "/tmp/" {
		t.Fatalf("trailing slash: %q %q %v", inst, p, err)
	}
	for _, bad := range []string{"c1", "/etc/hosts", ""} {
		if _, _, err := splitInstancePath(bad); err == nil {
			t.Errorf("splitInstancePath(%q) accepted", bad)
		}
	}
}

func TestPushDestination(t *testing.T) {
	cases := []struct {
		target, src string
		intoDir     bool
		want        string
	}{
		{"/tmp/", "a/f1", false, "/tmp/f1"},
		{"/tmp/g", "f1", false, "/tmp/g"},
		{"/tmp", "dir", true, "/tmp/dir"},
		{"/tmp/x/", "/abs/dir/", true, "/tmp/x/dir"},
	}
	for _, c := range cases {
		if got := pushDestination(c.target, c.src, c.intoDir); got != c.want {
			t.Errorf("pushDestination(%q, %q, %v) = %q, want %q", c.target, c.src, c.intoDir, got, c.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	m, err := parseMode("0640")
	if err != nil || m != 0o640 {
		t.Fatalf("parseMode = %o, %v", m, err)
	}
	m, err = parseMode("4755")
	if err != nil || m != 0o755|os.ModeSetuid {
		t.Fatalf("parseMode setuid = %v, %v", m, err)
	}
	for _, bad := range []string{"rw", "0999", "77777"} {
		if _, err := parseMode(bad); err == nil {
			t.Errorf("parseMode(%q) accepted", bad)
		}
	}
}

func TestParseKeyValue(t *testing.T) {
	k, v, err := parseKeyValue("limits.cpu=2")
	if err != nil || k != "limits.cpu" || v != "2" {
		t.Fatalf("= %q %q %v", k, v, err)
	}
	k, v, err = parseKeyValue("user.x=a=b")
	if err != nil || k != "user.x" || v != "a=b" {
		t.Fatalf("value with '=': %q %q %v", k, v, err)
	}
	if _, _, err := parseKeyValue("user.x"); err == nil {
		t.Fatal("missing '=' accepted")
	}
	if _, _, err := parseKeyValue("=v"); err == nil {
		t.Fatal("empty key accepted")
	}
}

func TestSplitSetArgs(t *testing.T) {
	cases := []struct {
		args   []string
		target string
		keys   map[string]string
	}{
		{[]string{"c1", "limits.cpu=2", "user.a=b"}, "c1", map[string]string{"limits.cpu": "2", "user.a": "b"}},
		{[]string{"c1", "limits.cpu", "2"}, "c1", map[string]string{"limits.cpu": "2"}},
		{[]string{"local:c1", "user.a", "two words"}, "local:c1", map[string]string{"user.a": "two words"}},
		{[]string{"core.https_address=[::]:8443"}, "", map[string]string{"core.https_address": "[::]:8443"}},
		{[]string{"core.https_address", "[::]:8443"}, "", map[string]string{"core.https_address": "[::]:8443"}},
		{[]string{"local:", "core.x=1"}, "local:", map[string]string{"core.x": "1"}},
	}
	for _, c := range cases {
		target, keys, err := splitSetArgs(c.args)
		if err != nil || target != c.target || !reflect.DeepEqual(keys, c.keys) {
			t.Errorf("splitSetArgs(%q) = %q, %v, %v; want %q, %v", c.args, target, keys, err, c.target, c.keys)
		}
	}
	for _, bad := range [][]string{{}, {"c1"}, {"c1", "a", "b", "c"}} {
		if _, _, err := splitSetArgs(bad); err == nil {
			t.Errorf("splitSetArgs(%q) accepted", bad)
		}
	}
}

func TestExecInteractive(t *testing.T) {
	cases := []struct {
		mode                       string
		forceTTY, forceNoTTY       bool
		stdinTTY, stdoutTTY, wants bool
	}{
		{"auto", false, false, true, true, true},
		{"auto", false, false, true, false, false},
		{"auto", false, false, false, true, false},
		{"auto", true, false, false, false, true},
		{"auto", false, true, true, true, false},
		{"interactive", false, false, false, false, true},
		{"non-interactive", false, false, true, true, false},
	}
	for _, c := range cases {
		got, err := execInteractive(c.mode, c.forceTTY, c.forceNoTTY, c.stdinTTY, c.stdoutTTY)
		if err != nil || got != c.wants {
			t.Errorf("execInteractive(%+v) = %v, %v", c, got, err)
		}
	}
	if _, err := execInteractive("auto", true, true, false, false); err == nil {
		t.Error("-t with -T accepted")
	}
	if _, err := execInteractive("bogus", false, false, false, false); err == nil {
		t.Error("bad --mode accepted")
	}
}

func TestExecExitStatus(t *testing.T) {
	notFound := errors.New("Command not found")
	cases := []struct {
		code    int
		err     error
		status  int
		wantErr bool
	}{
		{0, nil, 0, false},
		{7, nil, 7, false},
		{130, nil, 130, false},
		{127, notFound, 127, true},
		{-1, notFound, 1, true},
		{300, nil, 255, false},
		{-1, nil, 0, false},
	}
	for _, c := range cases {
		status, err := execExitStatus(c.code, c.err)
		if status != c.status || (err != nil) != c.wantErr {
			t.Errorf("execExitStatus(%d, %v) = %d, %v; want %d", c.code, c.err, status, err, c.status)
		}
	}
}

// sampleInstances is a running instance with two addresses and a stopped
// one, as a server returns them with recursion=2.
func sampleInstances() []api.InstanceFull {
	created := time.Date(2026, 11, 23, 13, 38, 0, 0, time.UTC)
	running := api.InstanceFull{
		Instance: api.Instance{
			InstancePut: api.InstancePut{
				Architecture: "x86_64",
				Config:       map[string]string{"security.privileged": "true", "user.role": "web"},
				Profiles:     []string{"default", "extra"},
			},
			Name: "web1", Status: "Running", StatusCode: api.Running, Type: "container",
			CreatedAt:       created,
			ExpandedConfig:  map[string]string{"security.privileged": "true", "user.role": "web", "volatile.base_image": "c35817b6be65ae418a27"},
			ExpandedDevices: api.Devices{"root": {"type": "disk", "path": "/", "pool": "default"}},
		},
		State: &api.InstanceState{
			Status: "Running", Pid: 9635, Processes: 2,
			Memory: api.InstanceStateMemory{Usage: 647168},
			CPU:    api.InstanceStateCPU{Usage: 2_500_000_000},
			Network: map[string]api.InstanceStateNetwork{
				"eth0": {Addresses: []api.InstanceStateNetworkAddress{
					{Family: "inet", Address: "10.99.1.2", Netmask: "24", Scope: "global"},
					{Family: "inet", Address: "10.99.1.3", Netmask: "24", Scope: "global"},
					{Family: "inet6", Address: "fd42::5", Netmask: "64", Scope: "global"},
					{Family: "inet6", Address: "fe80::1", Netmask: "64", Scope: "link"},
				}},
				"lo": {Addresses: []api.InstanceStateNetworkAddress{{Family: "inet", Address: "127.0.0.1", Scope: "local"}}},
			},
		},
		Snapshots: []api.InstanceSnapshot{{Name: "snap0"}},
	}
	stopped := api.InstanceFull{
		Instance: api.Instance{
			InstancePut:    api.InstancePut{Ephemeral: true, Config: map[string]string{}},
			Name:           "db2",
			Status:         "Stopped",
			StatusCode:     api.Stopped,
			ExpandedConfig: map[string]string{},
		},
		State: &api.InstanceState{Status: "Stopped"},
	}
	return []api.InstanceFull{running, stopped}
}

func rowFor(t *testing.T, spec string, inst *api.InstanceFull) []string {
	t.Helper()
	cols, err := parseColumns(spec, false)
	if err != nil {
		t.Fatal(err)
	}
	var row []string
	for _, c := range cols {
		row = append(row, c.data(inst))
	}
	return row
}

func TestListColumns(t *testing.T) {
	insts := sampleInstances()
	got := rowFor(t, defaultListColumns, &insts[0])
	want := []string{"web1", "RUNNING", "10.99.1.3 (eth0)\n10.99.1.2 (eth0)", "fd42::5 (eth0)", "CONTAINER", "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("default columns = %q, want %q", got, want)
	}
	got = rowFor(t, "pbNmuPfaS", &insts[0])
	want = []string{"9635", "default", "2", "632.00KiB", "2s", "default\nextra", "c35817b6be65", "x86_64", "1"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("columns = %q, want %q", got, want)
	}
	got = rowFor(t, "n,s,t,p,4,m", &insts[1])
	want = []string{"db2", "STOPPED", "CONTAINER (EPHEMERAL)", "", "", ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stopped = %q, want %q", got, want)
	}
}

func TestCustomColumns(t *testing.T) {
	insts := sampleInstances()
	cols, err := parseColumns("n,user.role:ROLE,volatile.base_image::4,devices:root.pool", false)
	if err != nil {
		t.Fatal(err)
	}
	var headers, values []string
	for _, c := range cols {
		headers = append(headers, c.header)
		values = append(values, c.data(&insts[0]))
	}
	if !reflect.DeepEqual(headers, []string{"NAME", "ROLE", "VOLATILE.BASE_IMAGE", "ROOT.POOL"}) {
		t.Fatalf("headers = %q", headers)
	}
	if !reflect.DeepEqual(values, []string{"web1", "web", "c358", "default"}) {
		t.Fatalf("values = %q", values)
	}
}

func TestParseColumnsErrors(t *testing.T) {
	if cols, err := parseColumns(defaultListColumns, false); err != nil || len(cols) != 6 {
		t.Fatalf("default layout without cluster: %d columns, %v", len(cols), err)
	}
	if cols, err := parseColumns(defaultListColumns, true); err != nil || len(cols) != 7 {
		t.Fatalf("default layout on a cluster: %d columns, %v", len(cols), err)
	}
	for _, bad := range []string{"nX", "n,,s", "L", "user.x:a:b:c", "user.x:n:wide"} {
		if _, err := parseColumns(bad, false); err == nil {
			t.Errorf("parseColumns(%q) accepted", bad)
		}
	}
}

func TestListFilters(t *testing.T) {
	insts := sampleInstances()
	cases := []struct {
		filter string
		want   []bool // web1, db2
	}{
		{"web", []bool{true, false}},
		{"w.*1$", []bool{true, false}},
		{"^d", []bool{false, true}},
		{"status=running", []bool{true, false}},
		{"status=Stopped,running", []bool{true, true}},
		{"type=container", []bool{true, true}},
		{"user.role=web", []bool{true, false}},
		{"u.role=web", []bool{true, false}},
		{"s.privileged=true", []bool{true, false}},
		{"user.role=w.*", []bool{true, false}},
		{"user.role=", []bool{false, true}},
		{"ipv4=10.99.1.0/24", []bool{true, false}},
		{"ipv4=10.99.1.3", []bool{true, false}},
		{"ipv4=10.98.0.0/16", []bool{false, false}},
		{"ipv6=fd42::/16", []bool{true, false}},
	}
	for _, c := range cases {
		f, _ := parseFilter(c.filter)
		for i := range insts {
			if got := f(&insts[i]); got != c.want[i] {
				t.Errorf("filter %q on %s = %v, want %v", c.filter, insts[i].Name, got, c.want[i])
			}
		}
	}
	if _, needsState := parseFilter("ipv4=10.0.0.1"); !needsState {
		t.Error("ipv4 filter does not ask for the state")
	}
}

func TestShortestAlias(t *testing.T) {
	img := &api.Image{Aliases: []api.ImageAlias{{Name: "debian/12"}, {Name: "bb"}, {Name: "zz"}}}
	if got := shortestAlias(img); got != "bb (2 more)" {
		t.Fatalf("shortestAlias = %q", got)
	}
	if got := shortestAlias(&api.Image{}); got != "" {
		t.Fatalf("no alias = %q", got)
	}
}

func TestImageMatches(t *testing.T) {
	img := &api.Image{
		Fingerprint: "c35817b6be65ae41",
		Aliases:     []api.ImageAlias{{Name: "busybox/test"}},
		ImagePut:    api.ImagePut{Properties: map[string]string{"os": "busybox"}},
	}
	for filter, want := range map[string]bool{
		"os=busybox": true, "os=debian": false, "5817": true, "box/te": true, "ubuntu": false,
	} {
		if got := imageMatches(filter, img); got != want {
			t.Errorf("imageMatches(%q) = %v", filter, got)
		}
	}
}

func TestFileExtension(t *testing.T) {
	for name, want := range map[string]string{
		"abc.tar.xz": ".tar.xz", "abc.squashfs": ".squashfs", "meta-abc.tar.gz": ".tar.gz", "abc": "",
	} {
		if got := fileExtension(name); got != want {
			t.Errorf("fileExtension(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestAlreadyThere(t *testing.T) {
	if !alreadyThere("stop", api.Stopped) || alreadyThere("stop", api.Running) {
		t.Error("stop")
	}
	if !alreadyThere("start", api.Running) || alreadyThere("start", api.Stopped) {
		t.Error("start")
	}
	if !alreadyThere("freeze", api.Frozen) || alreadyThere("restart", api.Running) {
		t.Error("freeze/restart")
	}
}
