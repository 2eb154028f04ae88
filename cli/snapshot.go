package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"cell/shared/api"
)

func (a *app) cmdSnapshot() *cobra.Command {
	var stateful bool
	cmd := &cobra.Command{
		Use:   "snapshot [<remote>:]<instance> [<snapshot name>]",
		Short: "Create instance snapshots",
		Long: `Create instance snapshots

Without a name, the snapshot is named snap0, snap1, ... (the first free one).`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("Invalid instance name %q", args[0])
			}
			req := api.InstanceSnapshotsPost{Stateful: stateful}
			if len(args) == 2 {
				req.Name = args[1]
			}
			op, err := c.CreateInstanceSnapshot(cmd.Context(), name, req)
			if err != nil {
				return err
			}
			return op.Wait(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&stateful, "stateful", false, "Whether or not to snapshot the instance's running state")
	return cmd
}

func (a *app) cmdRestore() *cobra.Command {
	var stateful bool
	cmd := &cobra.Command{
		Use:   "restore [<remote>:]<instance> <snapshot>",
		Short: "Restore instances from snapshots",
		Long: `Restore instances from snapshots

A running instance is stopped, restored and started again.`,
		Args: checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if name == "" || strings.Contains(name, "/") {
				return fmt.Errorf("Invalid instance name %q", args[0])
			}
			snap := args[1]
			if inst, s, ok := strings.Cut(snap, "/"); ok {
				if inst != name {
					return fmt.Errorf("Snapshot %q is not a snapshot of %q", snap, name)
				}
				snap = s
			}
			op, err := c.UpdateInstance(cmd.Context(), name, api.InstancePut{Restore: snap, Stateful: stateful}, "")
			if err != nil {
				return err
			}
			return op.Wait(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&stateful, "stateful", false, "Whether or not to restore the instance's running state from snapshot")
	return cmd
}
