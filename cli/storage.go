package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdStorage() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Manage storage pools",
	}
	cmd.AddCommand(
		a.cmdStorageCreate(), a.cmdStorageList(), storagePoolObject.showCmd(a), storagePoolObject.editCmd(a),
		storagePoolObject.getCmd(a), storagePoolObject.setCmd(a, `  c storage set fast btrfs.mount_options=compress=zstd
  c storage set fast description "Fast pool"`), storagePoolObject.unsetCmd(a), storagePoolObject.deleteCmd(a), a.cmdStorageInfo(),
		a.cmdStorageVolume(),
	)
	return cmd
}

func (a *app) cmdStorageCreate() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "create [<remote>:]<pool> <driver> [key=value...]",
		Short: "Create storage pools",
		Example: `  c storage create fast btrfs size=20GiB
      A btrfs pool on a 20GiB loop file
  c storage create fast btrfs source=/dev/sdb
  c storage create data dir source=/srv/cell`,
		Args: checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			req := api.StoragePoolsPost{Name: name, Driver: args[1],
				StoragePoolPut: api.StoragePoolPut{Config: map[string]string{}, Description: description}}
			for _, kv := range args[2:] {
				k, v, err := parseKeyValue(kv)
				if err != nil {
					return err
				}
				req.Config[k] = v
			}
			if err := c.CreateStoragePool(cmd.Context(), req); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Storage pool %s created\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "Storage pool description")
	return cmd
}

func (a *app) cmdStorageList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:]",
		Aliases: []string{"ls"},
		Short:   "List storage pools",
		Args:    checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			pools, err := c.GetStoragePools(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, p := range pools {
				rows = append(rows, []string{p.Name, p.Driver, p.Config["source"], p.Description,
					strconv.Itoa(len(p.UsedBy)), strings.ToUpper(p.Status)})
			}
			sortRows(rows)
			return renderTable(a.stdout, format, []string{"NAME", "DRIVER", "SOURCE", "DESCRIPTION", "USED BY", "STATE"}, rows, pools)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

// storageInfo is what `c storage info` prints, in lxc's layout.
type storageInfo struct {
	Info   map[string]string   `yaml:"info"`
	UsedBy map[string][]string `yaml:"used by"`
}

func (a *app) cmdStorageInfo() *cobra.Command {
	var bytes bool
	cmd := &cobra.Command{
		Use:   "info [<remote>:]<pool>",
		Short: "Show useful information about storage pools",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			p, _, err := c.GetStoragePool(ctx, name)
			if err != nil {
				return err
			}
			res, err := c.GetStoragePoolResources(ctx, name)
			if err != nil {
				return err
			}
			size := func(n uint64) string {
				if bytes {
					return strconv.FormatUint(n, 10)
				}
				return sizeIEC(int64(n))
			}
			info := storageInfo{
				Info: map[string]string{"name": p.Name, "driver": p.Driver, "description": p.Description,
					"space used": size(res.Space.Used), "total space": size(res.Space.Total)},
				UsedBy: map[string][]string{},
			}
			for _, u := range p.UsedBy {
				kind, name, ok := strings.Cut(strings.TrimPrefix(u, "/1.0/"), "/")
				if ok {
					info.UsedBy[kind] = append(info.UsedBy[kind], name)
				}
			}
			return a.printYAML(info)
		},
	}
	cmd.Flags().BoolVar(&bytes, "bytes", false, "Show the used and free space in bytes")
	return cmd
}

// storagePoolObject gives pools the show, edit, get, set and unset commands.
var storagePoolObject = configObject[*api.StoragePool, api.StoragePoolPut]{
	noun: "storage pool", arg: "<pool>",
	get:      (*client.Client).GetStoragePool,
	writable: func(p *api.StoragePool) api.StoragePoolPut { return p.StoragePoolPut },
	fields:   func(p *api.StoragePoolPut) (*map[string]string, *string) { return &p.Config, &p.Description },
	update:   (*client.Client).UpdateStoragePool,
	remove:   (*client.Client).DeleteStoragePool,
}
