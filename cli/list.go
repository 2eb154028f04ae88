package cli

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

// listColumn is one column of `c list`.
type listColumn struct {
	header string
	data   func(*api.InstanceFull) string
	// needsState says the column needs recursion=2 (runtime state or
	// snapshots).
	needsState bool
}

// defaultListColumns is lxc's default column layout; L (location) only
// shows on clusters.
const defaultListColumns = "ns46tSL"

// dateLayout is how lxc shows dates in lists and in info.
const dateLayout = "2006/01/02 15:04 MST"

func formatDate(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return ""
	}
	return t.Local().Format(dateLayout)
}

// isActive reports whether an instance has a runtime state worth showing.
func isActive(inst *api.InstanceFull) bool {
	switch strings.ToLower(inst.Status) {
	case "running", "frozen", "freezing", "stopping", "starting":
		return inst.State != nil
	}
	return false
}

// shorthandColumns are lxc's one-letter columns.
var shorthandColumns = map[rune]listColumn{
	'n': {header: "NAME", data: func(i *api.InstanceFull) string { return i.Name }},
	's': {header: "STATE", data: func(i *api.InstanceFull) string { return strings.ToUpper(i.Status) }},
	'4': {header: "IPV4", needsState: true, data: func(i *api.InstanceFull) string { return addresses(i, "inet") }},
	'6': {header: "IPV6", needsState: true, data: func(i *api.InstanceFull) string { return addresses(i, "inet6") }},
	'a': {header: "ARCHITECTURE", data: func(i *api.InstanceFull) string { return i.Architecture }},
	'b': {header: "STORAGE POOL", data: rootPool},
	'c': {header: "CREATED AT", data: func(i *api.InstanceFull) string { return formatDate(i.CreatedAt) }},
	'd': {header: "DESCRIPTION", data: func(i *api.InstanceFull) string { return i.Description }},
	'D': {header: "DISK USAGE", needsState: true, data: diskUsage},
	'e': {header: "PROJECT", data: func(i *api.InstanceFull) string {
		if i.Project == "" {
			return "default"
		}
		return i.Project
	}},
	'l': {header: "LAST USED AT", data: func(i *api.InstanceFull) string { return formatDate(i.LastUsedAt) }},
	'm': {header: "MEMORY USAGE", needsState: true, data: func(i *api.InstanceFull) string {
		if !isActive(i) || i.State.Memory.Usage <= 0 {
			return ""
		}
		return sizeIEC(i.State.Memory.Usage)
	}},
	'N': {header: "PROCESSES", needsState: true, data: func(i *api.InstanceFull) string {
		if !isActive(i) {
			return ""
		}
		return strconv.FormatInt(i.State.Processes, 10)
	}},
	'p': {header: "PID", needsState: true, data: func(i *api.InstanceFull) string {
		if !isActive(i) || i.State.Pid == 0 {
			return ""
		}
		return strconv.FormatInt(i.State.Pid, 10)
	}},
	'P': {header: "PROFILES", data: func(i *api.InstanceFull) string { return strings.Join(i.Profiles, "\n") }},
	'S': {header: "SNAPSHOTS", needsState: true, data: func(i *api.InstanceFull) string { return strconv.Itoa(len(i.Snapshots)) }},
	't': {header: "TYPE", data: instanceType},
	'u': {header: "CPU USAGE", needsState: true, data: func(i *api.InstanceFull) string {
		if !isActive(i) {
			return ""
		}
		return fmt.Sprintf("%ds", i.State.CPU.Usage/1e9)
	}},
	'L': {header: "LOCATION", data: func(i *api.InstanceFull) string { return i.Location }},
	'f': {header: "BASE IMAGE", data: func(i *api.InstanceFull) string {
		fp := i.ExpandedConfig["volatile.base_image"]
		return fp[:min(12, len(fp))]
	}},
	'F': {header: "BASE IMAGE", data: func(i *api.InstanceFull) string { return i.ExpandedConfig["volatile.base_image"] }},
}

func instanceType(i *api.InstanceFull) string {
	t := strings.ToUpper(i.Type)
	if t == "" {
		t = "CONTAINER"
	}
	if i.Ephemeral {
		t += " (EPHEMERAL)"
	}
	return t
}

// rootDisk returns the name and config of the instance's root disk.
func rootDisk(devices api.Devices) (string, map[string]string) {
	names := make([]string, 0, len(devices))
	for name := range devices {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		d := devices[name]
		if d["type"] == "disk" && d["path"] == "/" && d["source"] == "" {
			return name, d
		}
	}
	return "", nil
}

func rootPool(i *api.InstanceFull) string {
	_, d := rootDisk(i.ExpandedDevices)
	return d["pool"]
}

func diskUsage(i *api.InstanceFull) string {
	if i.State == nil {
		return ""
	}
	name, _ := rootDisk(i.ExpandedDevices)
	if name == "" {
		name = "root"
	}
	if d, ok := i.State.Disk[name]; ok && d.Usage > 0 {
		return sizeIEC(d.Usage)
	}
	return ""
}

// addresses lists the global addresses of one family, one "addr (iface)"
// per line, in reverse order as lxc shows them.
func addresses(i *api.InstanceFull, family string) string {
	if !isActive(i) {
		return ""
	}
	var out []string
	for iface, n := range i.State.Network {
		if iface == "lo" {
			continue
		}
		for _, a := range n.Addresses {
			if a.Family == family && a.Scope != "link" && a.Scope != "local" {
				out = append(out, fmt.Sprintf("%s (%s)", a.Address, iface))
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return strings.Join(out, "\n")
}

// parseColumns turns lxc's -c value into columns. Shorthand letters may run
// together ("ns46"); an entry with a "." is a custom column
// "[config:|devices:]key[:name][:maxWidth]".
func parseColumns(spec string, clustered bool) ([]listColumn, error) {
	var cols []listColumn
	for _, entry := range strings.Split(spec, ",") {
		if entry == "" {
			return nil, fmt.Errorf("Empty column entry (redundant, leading or trailing command) in '%s'", spec)
		}
		if strings.Contains(entry, ".") {
			col, err := customColumn(entry)
			if err != nil {
				return nil, err
			}
			cols = append(cols, col)
			continue
		}
		for _, r := range entry {
			col, ok := shorthandColumns[r]
			if !ok {
				return nil, fmt.Errorf("Unknown column shorthand char '%c' in '%s'", r, entry)
			}
			if r == 'L' && !clustered {
				// The default layout names L; it only shows on clusters.
				if spec == defaultListColumns {
					continue
				}
				return nil, errors.New("Can't specify column L when not clustered")
			}
			cols = append(cols, col)
		}
	}
	return cols, nil
}

// customColumn parses "[config:|devices:]key[:name][:maxWidth]".
func customColumn(entry string) (listColumn, error) {
	source := "config"
	for _, p := range []string{"config:", "devices:"} {
		if rest, ok := strings.CutPrefix(entry, p); ok {
			source, entry = strings.TrimSuffix(p, ":"), rest
		}
	}
	fields := strings.Split(entry, ":")
	if len(fields) > 3 {
		return listColumn{}, fmt.Errorf("Invalid config key column format (too many fields): %q", entry)
	}
	key := fields[0]
	if key == "" {
		return listColumn{}, fmt.Errorf("Invalid config key %q in %q", key, entry)
	}
	name := key
	if len(fields) > 1 && fields[1] != "" {
		name = fields[1]
	}
	maxWidth := -1
	if len(fields) > 2 {
		n, err := strconv.Atoi(fields[2])
		if err != nil || n < -1 {
			return listColumn{}, fmt.Errorf("Invalid max width (must be -1, 0 or a positive integer) '%s' in '%s'", fields[2], entry)
		}
		maxWidth = n
		if n == 0 {
			maxWidth = len(name)
		}
	}

	lookup := func(i *api.InstanceFull) string { return i.ExpandedConfig[key] }
	if source == "devices" {
		dev, devKey, ok := strings.Cut(key, ".")
		if !ok {
			return listColumn{}, fmt.Errorf("Invalid device key %q: want DEVICE.KEY", key)
		}
		lookup = func(i *api.InstanceFull) string { return i.ExpandedDevices[dev][devKey] }
	}
	return listColumn{
		header: strings.ToUpper(name),
		data: func(i *api.InstanceFull) string {
			v := lookup(i)
			if maxWidth > 0 && len(v) > maxWidth {
				v = v[:maxWidth]
			}
			return v
		},
	}, nil
}

// instanceFilter is one filter argument of `c list`.
type instanceFilter func(*api.InstanceFull) bool

// shorthandFilters are lxc's key=value filters on fields rather than config.
var shorthandFilters = map[string]bool{"type": true, "status": true, "architecture": true, "location": true, "ipv4": true, "ipv6": true}

// parseFilter turns a `c list` argument into a filter: a name prefix or
// regular expression, a shorthand key (type, status, ...) with
// comma-separated values, or a config key=value where the key's namespace
// may be abbreviated ("u.blah" for "user.blah") and the value may be a
// regular expression.
func parseFilter(arg string) (instanceFilter, bool) {
	key, value, isKV := strings.Cut(arg, "=")
	if !isKV {
		return func(i *api.InstanceFull) bool { return matchName(arg, i.Name) }, false
	}
	if shorthandFilters[key] {
		values := strings.Split(value, ",")
		needsState := key == "ipv4" || key == "ipv6"
		return func(i *api.InstanceFull) bool { return matchShorthand(key, values, i) }, needsState
	}
	return func(i *api.InstanceFull) bool { return matchConfig(key, value, i.ExpandedConfig) }, false
}

// anchored compiles a filter's regular expression. Without an explicit ^
// or $ it must match the whole string, as in lxc.
func anchored(expr string) *regexp.Regexp {
	if !strings.ContainsAny(expr, "^$") {
		expr = "^" + expr + "$"
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil
	}
	return re
}

func matchName(filter, name string) bool {
	if strings.HasPrefix(name, filter) {
		return true
	}
	re := anchored(filter)
	return re != nil && re.MatchString(name)
}

func matchValue(filter, value string) bool {
	if strings.EqualFold(filter, value) {
		return true
	}
	re := anchored(filter)
	return re != nil && re.MatchString(value)
}

func matchShorthand(key string, values []string, i *api.InstanceFull) bool {
	var field string
	switch key {
	case "type":
		field = i.Type
		if field == "" {
			field = "container"
		}
	case "status":
		field = i.Status
	case "architecture":
		field = i.Architecture
	case "location":
		field = i.Location
	case "ipv4", "ipv6":
		family := "inet"
		if key == "ipv6" {
			family = "inet6"
		}
		return matchAddresses(values, i, family)
	}
	for _, v := range values {
		if strings.EqualFold(v, field) {
			return true
		}
	}
	return false
}

// matchAddresses reports whether one of the instance's addresses equals or
// falls within one of the values (addresses or CIDRs).
func matchAddresses(values []string, i *api.InstanceFull, family string) bool {
	if i.State == nil {
		return false
	}
	for _, n := range i.State.Network {
		for _, a := range n.Addresses {
			if a.Family != family {
				continue
			}
			ip := net.ParseIP(a.Address)
			for _, v := range values {
				if _, cidr, err := net.ParseCIDR(v); err == nil {
					if ip != nil && cidr.Contains(ip) {
						return true
					}
				} else if want := net.ParseIP(v); want != nil && ip != nil && want.Equal(ip) {
					return true
				}
			}
		}
	}
	return false
}

// matchConfig matches key=value against an instance's config. The key's
// first part may abbreviate the namespace: "s.privileged" finds
// "security.privileged".
func matchConfig(key, value string, config map[string]string) bool {
	if v, ok := config[key]; ok {
		return matchValue(value, v)
	}
	ns, rest, dotted := strings.Cut(key, ".")
	found := false
	for k, v := range config {
		kns, krest, ok := strings.Cut(k, ".")
		if dotted && ok && krest == rest && strings.HasPrefix(kns, ns) {
			found = true
			if matchValue(value, v) {
				return true
			}
		}
	}
	// An unset key holds the empty value.
	return !found && value == ""
}

func (a *app) cmdList() *cobra.Command {
	var columns, format string
	var fast bool
	cmd := &cobra.Command{
		Use:     "list [<remote>:] [<filter>...]",
		Aliases: []string{"ls"},
		Short:   "List instances",
		Long: `List instances

Default column layout: ns46tS
Fast column layout: nsacPt

Filters: a name prefix ("web"), a regular expression on the name
(".*web.*01$"), a config key=value (the namespace may be abbreviated:
"u.blah=abc" for "user.blah=abc"; the value may be a regular expression),
or a shorthand type=, status=, architecture=, location=, ipv4=, ipv6= with
comma-separated values.

Columns (-c): 4 IPv4, 6 IPv6, a architecture, b storage pool, c created,
d description, D disk usage, e project, l last used, m memory usage,
N processes, p PID, P profiles, s state, S snapshots, t type,
u CPU usage, L location, f base image, F base image (long); or custom
"[config:|devices:]key[:name][:maxWidth]".`,
		RunE: func(cmd *cobra.Command, args []string) error {
			remote := a.conf.DefaultRemote
			if len(args) > 0 && strings.Contains(args[0], ":") && !strings.Contains(args[0], "=") {
				r, rest, err := a.conf.ParseRemote(args[0])
				if err != nil {
					return err
				}
				remote = r
				args = args[1:]
				if rest != "" {
					args = append([]string{rest}, args...)
				}
			}
			if fast {
				columns = "nsacPt"
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			return a.listInstances(cmd, c, args, columns, format)
		},
	}
	cmd.Flags().StringVarP(&columns, "columns", "c", defaultListColumns, "Columns")
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	cmd.Flags().BoolVar(&fast, "fast", false, "Fast mode (same as --columns=nsacPt)")
	return cmd
}

func (a *app) listInstances(cmd *cobra.Command, c *client.Client, args []string, columns, format string) error {
	ctx := cmd.Context()
	clustered := false
	if strings.Contains(columns, "L") {
		srv, _, err := c.GetServer(ctx)
		if err != nil {
			return err
		}
		clustered = srv.Environment.ServerClustered
	}
	cols, err := parseColumns(columns, clustered)
	if err != nil {
		return err
	}

	full := format == formatJSON || format == formatYAML
	for _, col := range cols {
		full = full || col.needsState
	}
	var filters []instanceFilter
	for _, arg := range args {
		f, needsState := parseFilter(arg)
		filters = append(filters, f)
		full = full || needsState
	}

	var instances []api.InstanceFull
	if full {
		if instances, err = c.GetInstancesFull(ctx); err != nil {
			return err
		}
	} else {
		list, err := c.GetInstances(ctx)
		if err != nil {
			return err
		}
		for _, i := range list {
			instances = append(instances, api.InstanceFull{Instance: i})
		}
	}

	shown := []api.InstanceFull{}
	for i := range instances {
		if matchAll(filters, &instances[i]) {
			shown = append(shown, instances[i])
		}
	}

	header := make([]string, len(cols))
	for i, col := range cols {
		header[i] = col.header
	}
	rows := make([][]string, 0, len(shown))
	for i := range shown {
		row := make([]string, len(cols))
		for j, col := range cols {
			row[j] = col.data(&shown[i])
		}
		rows = append(rows, row)
	}
	sortRows(rows)
	return renderTable(a.stdout, format, header, rows, shown)
}

func matchAll(filters []instanceFilter, i *api.InstanceFull) bool {
	for _, f := range filters {
		if !f(i) {
			return false
		}
	}
	return true
}
