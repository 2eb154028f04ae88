package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdNetwork() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage and attach instances to networks",
	}
	cmd.AddCommand(
		a.cmdNetworkCreate(), a.cmdNetworkList(), networkObject.showCmd(a), networkObject.editCmd(a),
		networkObject.getCmd(a), networkObject.setCmd(a, `  c network set cellbr1 ipv4.dhcp.ranges=10.50.0.100-10.50.0.200
  c network set cellbr1 dns.domain lab`), networkObject.unsetCmd(a), networkObject.deleteCmd(a),
		networkObject.renameCmd(a), a.cmdNetworkInfo(), a.cmdNetworkListLeases(),
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

// networkObject gives networks the show, edit, get, set and unset commands.
var networkObject = configObject[*api.Network, api.NetworkPut]{
	noun: "network", arg: "<network>",
	get:      (*client.Client).GetNetwork,
	writable: func(n *api.Network) api.NetworkPut { return n.NetworkPut },
	fields:   func(p *api.NetworkPut) (*map[string]string, *string) { return &p.Config, &p.Description },
	update:   (*client.Client).UpdateNetwork,
	remove:   (*client.Client).DeleteNetwork,
	rename:   (*client.Client).RenameNetwork,
}
