package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdInfo() *cobra.Command {
	var showLog bool
	cmd := &cobra.Command{
		Use:   "info [<remote>:][<instance>]",
		Short: "Show instance or server information",
		Example: `  c info [<remote>:]<instance> [--show-log]
      For instance information.

  c info [<remote>:]
      For server information.`,
		Args: checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := a.showTarget(args)
			if err != nil {
				return err
			}
			if t.instance == "" {
				srv, _, err := t.c.GetServer(ctx)
				if err != nil {
					return err
				}
				return a.printYAML(srv)
			}
			return a.instanceInfo(ctx, t.c, t.instance, showLog)
		},
	}
	cmd.Flags().BoolVar(&showLog, "show-log", false, "Show the instance's last 100 log lines?")
	return cmd
}

func (a *app) instanceInfo(ctx context.Context, c *client.Client, name string, showLog bool) error {
	inst, _, err := c.GetInstance(ctx, name)
	if err != nil {
		return err
	}
	full := &api.InstanceFull{Instance: *inst}
	if inst.StatusCode != api.Stopped {
		if full.State, err = c.GetInstanceState(ctx, name); err != nil {
			return err
		}
	}
	// A server without snapshots support answers 404: show none then.
	if full.Snapshots, err = c.GetInstanceSnapshots(ctx, name); err != nil && !client.IsNotFound(err) {
		return err
	}
	printInstanceInfo(a.stdout, full)

	if showLog {
		resp, err := c.RawQuery(ctx, http.MethodGet, "/1.0/instances/"+url.PathEscape(name)+"/logs/lxc.log", nil, "")
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "\nLog:\n\n%s\n", resp.Body)
	}
	return nil
}

// printInstanceInfo writes `c info NAME` in lxc's layout.
func printInstanceInfo(w io.Writer, inst *api.InstanceFull) {
	fmt.Fprintf(w, "Name: %s\n", inst.Name)
	if inst.Location != "" && inst.Location != "none" {
		fmt.Fprintf(w, "Location: %s\n", inst.Location)
	}
	fmt.Fprintf(w, "Status: %s\n", strings.ToUpper(inst.Status))
	typ := inst.Type
	if typ == "" {
		typ = "container"
	}
	if inst.Ephemeral {
		typ += " (ephemeral)"
	}
	fmt.Fprintf(w, "Type: %s\n", typ)
	fmt.Fprintf(w, "Architecture: %s\n", inst.Architecture)
	if inst.State != nil && inst.State.Pid != 0 {
		fmt.Fprintf(w, "PID: %d\n", inst.State.Pid)
	}
	if d := formatDate(inst.CreatedAt); d != "" {
		fmt.Fprintf(w, "Created: %s\n", d)
	}
	if d := formatDate(inst.LastUsedAt); d != "" {
		fmt.Fprintf(w, "Last Used: %s\n", d)
	}

	if st := inst.State; st != nil && isActive(inst) {
		fmt.Fprintln(w, "\nResources:")
		fmt.Fprintf(w, "  Processes: %d\n", st.Processes)
		if v := inst.ExpandedConfig["limits.processes"]; v != "" {
			fmt.Fprintf(w, "  Processes (limit): %s\n", v)
		}
		if len(st.Disk) > 0 {
			fmt.Fprintln(w, "  Disk usage:")
			for _, name := range sortedKeys(st.Disk) {
				fmt.Fprintf(w, "    %s: %s\n", name, sizeIEC(st.Disk[name].Usage))
			}
		}
		fmt.Fprintln(w, "  CPU usage:")
		fmt.Fprintf(w, "    CPU usage (in seconds): %d\n", st.CPU.Usage/1e9)
		// Limits as configured: a percentage stays a percentage.
		for _, k := range []string{"limits.cpu", "limits.cpu.allowance"} {
			if v := inst.ExpandedConfig[k]; v != "" {
				fmt.Fprintf(w, "    CPU limit (%s): %s\n", k, v)
			}
		}
		if st.Memory.Usage > 0 {
			fmt.Fprintln(w, "  Memory usage:")
			fmt.Fprintf(w, "    Memory (current): %s\n", sizeIEC(st.Memory.Usage))
			if v := inst.ExpandedConfig["limits.memory"]; v != "" {
				fmt.Fprintf(w, "    Memory (limit): %s\n", v)
			}
			if st.Memory.UsagePeak > 0 {
				fmt.Fprintf(w, "    Memory (peak): %s\n", sizeIEC(st.Memory.UsagePeak))
			}
			if st.Memory.SwapUsage > 0 {
				fmt.Fprintf(w, "    Swap (current): %s\n", sizeIEC(st.Memory.SwapUsage))
			}
			if st.Memory.SwapUsagePeak > 0 {
				fmt.Fprintf(w, "    Swap (peak): %s\n", sizeIEC(st.Memory.SwapUsagePeak))
			}
		}
		if len(st.Network) > 0 {
			fmt.Fprintln(w, "  Network usage:")
			for _, name := range sortedKeys(st.Network) {
				printNetwork(w, name, st.Network[name])
			}
		}
	}

	if len(inst.Snapshots) > 0 {
		fmt.Fprintln(w, "\nSnapshots:")
		var rows [][]string
		for _, s := range inst.Snapshots {
			stateful := "NO"
			if s.Stateful {
				stateful = "YES"
			}
			// Snapshot names may come as "instance/snap".
			name := s.Name[strings.LastIndexByte(s.Name, '/')+1:]
			rows = append(rows, []string{name, formatDate(s.CreatedAt), formatDate(s.ExpiresAt), stateful})
		}
		drawTable(w, []string{"NAME", "TAKEN AT", "EXPIRES AT", "STATEFUL"}, rows)
	}
}

func printNetwork(w io.Writer, name string, n api.InstanceStateNetwork) {
	fmt.Fprintf(w, "    %s:\n", name)
	fmt.Fprintf(w, "      Type: %s\n", n.Type)
	fmt.Fprintf(w, "      State: %s\n", strings.ToUpper(n.State))
	if n.HostName != "" {
		fmt.Fprintf(w, "      Host interface: %s\n", n.HostName)
	}
	if n.Hwaddr != "" {
		fmt.Fprintf(w, "      MAC address: %s\n", n.Hwaddr)
	}
	if n.Mtu != 0 {
		fmt.Fprintf(w, "      MTU: %d\n", n.Mtu)
	}
	fmt.Fprintf(w, "      Bytes received: %s\n", sizeSI(n.Counters.BytesReceived))
	fmt.Fprintf(w, "      Bytes sent: %s\n", sizeSI(n.Counters.BytesSent))
	fmt.Fprintf(w, "      Packets received: %d\n", n.Counters.PacketsReceived)
	fmt.Fprintf(w, "      Packets sent: %d\n", n.Counters.PacketsSent)
	fmt.Fprintln(w, "      IP addresses:")
	for _, addr := range n.Addresses {
		// "inet:  " is padded to line up with "inet6: ".
		fmt.Fprintf(w, "        %-6s %s/%s (%s)\n", addr.Family+":", addr.Address, addr.Netmask, addr.Scope)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
