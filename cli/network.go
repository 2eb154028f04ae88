package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/shared/api"
)

func (a *app) cmdNetwork() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage and attach instances to networks",
	}
	cmd.AddCommand(
		a.cmdNetworkCreate(), a.cmdNetworkList(), a.cmdNetworkShow(), a.cmdNetworkEdit(),
		a.cmdNetworkGet(), a.cmdNetworkSet(), a.cmdNetworkUnset(), a.cmdNetworkDelete(),
		a.cmdNetworkRename(), a.cmdNetworkInfo(), a.cmdNetworkListLeases(),
	)
	return cmd
}

func (a *app) cmdNetworkCreate() *cobra.Command {
	var description, typ string
	cmd := &cobra.Command{
		Use:   "create [<remote>:]<network> [key=value...]",
		Short: "Create new networks",
		Example: `  c network create cellbr1 ipv4.address=10.50.0.1/24 ipv4.nat=true ipv6.address=none
  c network create isolated ipv4.address=auto ipv4.nat=false`,
		Args: checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			req := api.NetworksPost{Name: name, Type: typ,
				NetworkPut: api.NetworkPut{Config: map[string]string{}, Description: description}}
			for _, kv := range args[1:] {
				k, v, err := parseKeyValue(kv)
				if err != nil {
					return err
				}
				req.Config[k] = v
			}
			if err := c.CreateNetwork(cmd.Context(), req); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Network %s created\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "Network description")
	cmd.Flags().StringVarP(&typ, "type", "t", "", "Network type (bridge)")
	return cmd
}

func (a *app) cmdNetworkList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:]",
		Aliases: []string{"ls"},
		Short:   "List available networks",
		Args:    checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			list, err := c.GetNetworks(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, n := range list {
				// As lxc: the API lists every host interface, the table
				// leaves out loopback and interfaces of unknown kind.
				if !n.Managed && (n.Type == "loopback" || n.Type == "unknown") {
					continue
				}
				managed := "NO"
				if n.Managed {
					managed = "YES"
				}
				rows = append(rows, []string{n.Name, n.Type, managed, n.Config["ipv4.address"], n.Config["ipv6.address"],
					n.Description, strconv.Itoa(len(n.UsedBy)), strings.ToUpper(n.Status)})
			}
			sortRows(rows)
			return renderTable(a.stdout, format,
				[]string{"NAME", "TYPE", "MANAGED", "IPV4", "IPV6", "DESCRIPTION", "USED BY", "STATE"}, rows, list)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdNetworkShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show [<remote>:]<network>",
		Short: "Show network configurations",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			n, _, err := c.GetNetwork(cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.printYAML(n)
		},
	}
}

func (a *app) cmdNetworkEdit() *cobra.Command {
	return &cobra.Command{
		Use:   "edit [<remote>:]<network>",
		Short: "Edit network configurations as YAML",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			n, etag, err := c.GetNetwork(ctx, name)
			if err != nil {
				return err
			}
			return a.editYAML(n.NetworkPut, func(data []byte) error {
				var put api.NetworkPut
				if err := yaml.Unmarshal(data, &put); err != nil {
					return err
				}
				return c.UpdateNetwork(ctx, name, put, etag)
			})
		},
	}
}

func (a *app) cmdNetworkGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get [<remote>:]<network> <key>",
		Short: "Get values for network configuration keys",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			n, _, err := c.GetNetwork(cmd.Context(), name)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, n.Config[args[1]])
			return nil
		},
	}
}

func (a *app) cmdNetworkSet() *cobra.Command {
	return &cobra.Command{
		Use:   "set [<remote>:]<network> <key>=<value>...",
		Short: "Set network configuration keys",
		Example: `  c network set cellbr1 ipv4.dhcp.ranges=10.50.0.100-10.50.0.200
  c network set cellbr1 dns.domain lab`,
		Args: checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseSetKeys(args[1:])
			if err != nil {
				return err
			}
			return a.patchNetwork(cmd, args[0], keys)
		},
	}
}

// patchNetwork sends only the keys that change: an empty value removes a
// key on the server.
func (a *app) patchNetwork(cmd *cobra.Command, arg string, keys map[string]string) error {
	ctx := cmd.Context()
	c, name, err := a.parseOne(arg)
	if err != nil {
		return err
	}
	n, etag, err := c.GetNetwork(ctx, name)
	if err != nil {
		return err
	}
	put := api.NetworkPut{Config: map[string]string{}, Description: n.Description}
	for k, v := range keys {
		if k == "description" {
			put.Description = v
			continue
		}
		put.Config[k] = v
	}
	return c.PatchNetwork(ctx, name, put, etag)
}

func (a *app) cmdNetworkUnset() *cobra.Command {
	return &cobra.Command{
		Use:   "unset [<remote>:]<network> <key>",
		Short: "Unset network configuration keys",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			n, _, err := c.GetNetwork(cmd.Context(), name)
			if err != nil {
				return err
			}
			if _, ok := n.Config[args[1]]; !ok {
				return errors.New("Can't unset key '" + args[1] + "', it's not currently set")
			}
			return a.patchNetwork(cmd, args[0], map[string]string{args[1]: ""})
		},
	}
}

func (a *app) cmdNetworkDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete [<remote>:]<network>",
		Aliases: []string{"rm"},
		Short:   "Delete networks",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteNetwork(cmd.Context(), name); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Network %s deleted\n", name)
			}
			return nil
		},
	}
}

func (a *app) cmdNetworkRename() *cobra.Command {
	return &cobra.Command{
		Use:     "rename [<remote>:]<network> <new-name>",
		Aliases: []string{"mv"},
		Short:   "Rename networks",
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := c.RenameNetwork(cmd.Context(), name, args[1]); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Network %s renamed to %s\n", name, args[1])
			}
			return nil
		},
	}
}

func (a *app) cmdNetworkInfo() *cobra.Command {
	return &cobra.Command{
		Use:   "info [<remote>:]<network>",
		Short: "Get runtime information on networks",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			st, err := c.GetNetworkState(cmd.Context(), name)
			if err != nil {
				return err
			}
			w := a.stdout
			fmt.Fprintf(w, "Name: %s\nMAC address: %s\nMTU: %d\nState: %s\nType: %s\n", name, st.Hwaddr, st.Mtu, st.State, st.Type)
			if len(st.Addresses) > 0 {
				fmt.Fprintf(w, "\nIP addresses:\n")
				for _, ad := range st.Addresses {
					fmt.Fprintf(w, "  %s\t%s/%s (%s)\n", ad.Family, ad.Address, ad.Netmask, ad.Scope)
				}
			}
			fmt.Fprintf(w, "\nNetwork usage:\n  Bytes received: %s\n  Bytes sent: %s\n  Packets received: %d\n  Packets sent: %d\n",
				sizeIEC(st.Counters.BytesReceived), sizeIEC(st.Counters.BytesSent), st.Counters.PacketsReceived, st.Counters.PacketsSent)
			if b := st.Bridge; b != nil {
				fmt.Fprintf(w, "\nBridge:\n  ID: %s\n  STP: %v\n  Forward delay: %d\n  Default VLAN ID: %d\n  VLAN filtering: %v\n  Upper devices: %s\n",
					b.ID, b.STP, b.ForwardDelay, b.VlanDefault, b.VlanFiltering, strings.Join(b.UpperDevices, ", "))
			}
			return nil
		},
	}
}

func (a *app) cmdNetworkListLeases() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list-leases [<remote>:]<network>",
		Short: "List DHCP leases",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			leases, err := c.GetNetworkLeases(cmd.Context(), name)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, l := range leases {
				rows = append(rows, []string{l.Hostname, l.Hwaddr, l.Address, strings.ToUpper(l.Type)})
			}
			sortRows(rows)
			return renderTable(a.stdout, format, []string{"HOSTNAME", "MAC ADDRESS", "IP ADDRESS", "TYPE"}, rows, leases)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}
