package cli

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The expected outputs below were printed by LXD 5.0.2's lxc for the same
// rows.

func TestDrawTableMatchesLXC(t *testing.T) {
	header := []string{"NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"}
	rows := [][]string{
		{"r1", "RUNNING", "10.99.1.3 (eth0)\n10.99.1.2 (eth0)", "fd42::5 (eth0)", "CONTAINER", "1"},
		{"s1", "STOPPED", "", "", "CONTAINER", "0"},
	}
	want := `+------+---------+------------------+----------------+-----------+-----------+
| NAME |  STATE  |       IPV4       |      IPV6      |   TYPE    | SNAPSHOTS |
+------+---------+------------------+----------------+-----------+-----------+
| r1   | RUNNING | 10.99.1.3 (eth0) | fd42::5 (eth0) | CONTAINER | 1         |
|      |         | 10.99.1.2 (eth0) |                |           |           |
+------+---------+------------------+----------------+-----------+-----------+
| s1   | STOPPED |                  |                | CONTAINER | 0         |
+------+---------+------------------+----------------+-----------+-----------+
`
	var b bytes.Buffer
	if err := renderTable(&b, "table", header, rows, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestDrawTableEmpty(t *testing.T) {
	var b bytes.Buffer
	drawTable(&b, []string{"NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"}, nil)
	want := `+------+-------+------+------+------+-----------+
| NAME | STATE | IPV4 | IPV6 | TYPE | SNAPSHOTS |
+------+-------+------+------+------+-----------+
`
	if b.String() != want {
		t.Fatalf("empty table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestDrawCompactMatchesLXC(t *testing.T) {
	header := []string{"NAME", "DESCRIPTION", "USED BY"}
	rows := [][]string{{"default", "Default LXD profile", "2"}, {"p1", "", "0"}}
	want := "   NAME        DESCRIPTION      USED BY  \n" +
		"  default  Default LXD profile  2        \n" +
		"  p1                            0        \n"
	var b bytes.Buffer
	if err := renderTable(&b, "compact", header, rows, nil); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("compact:\n%q\nwant:\n%q", b.String(), want)
	}
}

func TestRenderCSV(t *testing.T) {
	var b bytes.Buffer
	rows := [][]string{{"r1", "RUNNING", "10.0.0.2 (eth0)\n10.0.0.1 (eth0)"}, {"s1", "STOPPED", ""}}
	if err := renderTable(&b, "csv", []string{"NAME", "STATE", "IPV4"}, rows, nil); err != nil {
		t.Fatal(err)
	}
	want := "r1,RUNNING,\"10.0.0.2 (eth0)\n10.0.0.1 (eth0)\"\ns1,STOPPED,\n"
	if b.String() != want {
		t.Fatalf("csv = %q, want %q", b.String(), want)
	}
}

func TestRenderJSONAndYAMLUseData(t *testing.T) {
	data := []map[string]string{{"name": "c1"}}
	var b bytes.Buffer
	if err := renderTable(&b, "json", nil, nil, data); err != nil {
		t.Fatal(err)
	}
	if b.String() != "[{\"name\":\"c1\"}]\n" {
		t.Fatalf("json = %q", b.String())
	}
	b.Reset()
	if err := renderTable(&b, "yaml", nil, nil, data); err != nil {
		t.Fatal(err)
	}
	if b.String() != "- name: c1\n" {
		t.Fatalf("yaml = %q", b.String())
	}
	if err := renderTable(&b, "xml", nil, nil, data); err == nil {
		t.Fatal("unknown format accepted")
	}
}

func TestHeaderTitle(t *testing.T) {
	if got := headerTitle("user.comment_x"); got != "USER COMMENT X" {
		t.Fatalf("headerTitle = %q", got)
	}
}

func TestNaturalSort(t *testing.T) {
	rows := [][]string{{"c10"}, {"c2"}, {"b"}, {"c1"}, {"c02"}}
	sortRows(rows)
	var got []string
	for _, r := range rows {
		got = append(got, r[0])
	}
	want := []string{"b", "c1", "c2", "c02", "c10"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sorted = %v, want %v", got, want)
	}
}

func TestSizes(t *testing.T) {
	cases := map[int64][2]string{
		0:       {"0B", "0B"},
		999:     {"999B", "999B"},
		1006:    {"1.01kB", "1006B"},
		647168:  {"647.17kB", "632.00KiB"},
		1090519: {"1.09MB", "1.04MiB"},
	}
	for n, want := range cases {
		if got := sizeSI(n); got != want[0] {
			t.Errorf("sizeSI(%d) = %q, want %q", n, got, want[0])
		}
		if got := sizeIEC(n); got != want[1] {
			t.Errorf("sizeIEC(%d) = %q, want %q", n, got, want[1])
		}
	}
}

func TestProgressLine(t *testing.T) {
	if got := progressLine("Transferring image", 50, 200, time.Second); got != "Transferring image: 25% (50B/s)" {
		t.Fatalf("progressLine = %q", got)
	}
	if got := progressLine("Exporting", 2_000_000, 0, 2*time.Second); got != "Exporting: 2.00MB (1.00MB/s)" {
		t.Fatalf("progressLine = %q", got)
	}
}

func TestCompactSequences(t *testing.T) {
	type doc struct {
		Config   map[string]string `yaml:"config"`
		Profiles []string          `yaml:"profiles"`
		Devices  map[string]any    `yaml:"devices"`
		Items    []map[string]any  `yaml:"items"`
	}
	in := doc{
		Config: map[string]string{
			// YAML inside a block scalar must come through untouched.
			"user.user-data": "#cloud-config\npackages:\n  - vim\n  - git\n",
			"user.one":       "x",
		},
		Profiles: []string{"default", "extra"},
		Devices:  map[string]any{"eth0": map[string]any{"hosts": []string{"a", "b"}}},
		Items:    []map[string]any{{"name": "a", "list": []string{"x"}, "text": "l1\nl2\n"}},
	}
	out, err := marshalYAML(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `config:
  user.one: x
  user.user-data: |
    #cloud-config
    packages:
      - vim
      - git
profiles:
- default
- extra
devices:
  eth0:
    hosts:
    - a
    - b
items:
- list:
  - x
  name: a
  text: |
    l1
    l2
`
	if string(out) != want {
		t.Fatalf("yaml:\n%s\nwant:\n%s", out, want)
	}
	var back doc
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Config, in.Config) || !reflect.DeepEqual(back.Profiles, in.Profiles) {
		t.Fatalf("round trip changed the data: %+v", back)
	}
	if !strings.Contains(string(out), "text: |\n    l1\n") {
		t.Fatal("block scalar in a sequence item was moved")
	}
}

func TestIsBlockScalarHeader(t *testing.T) {
	for s, want := range map[string]bool{
		"key: |": true, "key: |-": true, "key: >+": true, "|2": true,
		"key: value": false, "key: '|'": false, "key:": false, "key: |x": false,
	} {
		if got := isBlockScalarHeader(s); got != want {
			t.Errorf("isBlockScalarHeader(%q) = %v, want %v", s, got, want)
		}
	}
}
