package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"cell/shared/api"
)

func (a *app) cmdExport() *cobra.Command {
	var instanceOnly, optimized bool
	var compression string
	cmd := &cobra.Command{
		Use:   "export [<remote>:]<instance> [target] [--instance-only] [--optimized-storage]",
		Short: "Export instance backups",
		Long: `Export instances as backup tarballs (LXD's layout), with their snapshots
unless --instance-only is given.`,
		Example: `  c export u1 backup0.tar.gz
      Download a backup tarball of the u1 instance.`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			target := "backup.tar.gz"
			if len(args) == 2 {
				target = args[1]
			}
			// The server keeps it a day at most, should the download fail.
			op, err := c.CreateInstanceBackup(ctx, name, api.InstanceBackupsPost{
				ExpiresAt: time.Now().Add(24 * time.Hour), InstanceOnly: instanceOnly, ContainerOnly: instanceOnly,
				OptimizedStorage: optimized, CompressionAlgorithm: compression,
			})
			if err != nil {
				return err
			}
			if err := op.Wait(ctx); err != nil {
				return err
			}
			backup := ""
			if res := op.Resources["backups"]; len(res) > 0 {
				backup = filepath.Base(res[0])
			}
			if backup == "" {
				return errors.New("the server did not say which backup it made")
			}
			defer func() {
				if op, err := c.DeleteInstanceBackup(ctx, name, backup); err == nil {
					_ = op.Wait(ctx)
				}
			}()
			f, err := os.CreateTemp(filepath.Dir(target), ".export-")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			if err := c.GetInstanceBackupFile(ctx, name, backup, f); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if err := os.Rename(f.Name(), target); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Backup exported successfully!")
			return nil
		},
	}
	cmd.Flags().BoolVar(&instanceOnly, "instance-only", false, "Whether or not to only backup the instance (without snapshots)")
	cmd.Flags().BoolVar(&optimized, "optimized-storage", false, "Use storage driver optimized format (can only be restored on a similar pool)")
	cmd.Flags().StringVar(&compression, "compression", "", "Compression algorithm to use (gzip)")
	return cmd
}

func (a *app) cmdImport() *cobra.Command {
	var pool string
	cmd := &cobra.Command{
		Use:   "import [<remote>:] <backup file> [<instance name>]",
		Short: "Import instance backups",
		Example: `  c import backup0.tar.gz
      Create a new instance using backup0.tar.gz as the source.`,
		Args: checkArgs(1, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			remote := a.conf.DefaultRemote
			if _, err := os.Stat(args[0]); err != nil && len(args) > 1 {
				r, _, err := a.conf.ParseRemote(args[0])
				if err != nil {
					return err
				}
				remote, args = r, args[1:]
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			name := ""
			if len(args) > 1 {
				name = args[1]
			}
			op, err := c.CreateInstanceFromBackup(ctx, f, st.Size(), name, pool)
			if err != nil {
				return err
			}
			return op.Wait(ctx)
		},
	}
	cmd.Flags().StringVarP(&pool, "storage", "s", "", "Storage pool name")
	return cmd
}
