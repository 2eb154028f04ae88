package cli

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spf13/cobra"

	"cell/shared/api"
)

func (a *app) cmdStorageVolume() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage storage volumes",
	}
	cmd.AddCommand(a.cmdVolumeCreate(), a.cmdVolumeList(), a.cmdVolumeShow(), a.cmdVolumeDelete(),
		a.cmdVolumeRename(), a.cmdVolumeAttach(), a.cmdVolumeDetach(), a.cmdVolumeCopy(), a.cmdVolumeSnapshot(), a.cmdVolumeSnapshots(),
		a.cmdVolumeRestore())
	return cmd
}

// volumeName strips lxc's optional "custom/" prefix from a volume name.
func volumeName(s string) string { return strings.TrimPrefix(s, "custom/") }

func (a *app) cmdVolumeCreate() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "create [<remote>:]<pool> <volume> [key=value...]",
		Short: "Create new custom storage volumes",
		Args:  checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			req := api.StorageVolumesPost{Name: volumeName(args[1]), Type: "custom",
				StorageVolumePut: api.StorageVolumePut{Config: map[string]string{}, Description: description}}
			for _, kv := range args[2:] {
				k, v, err := parseKeyValue(kv)
				if err != nil {
					return err
				}
				req.Config[k] = v
			}
			if err := c.CreateStoragePoolVolume(cmd.Context(), pool, req); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Storage volume %s created\n", req.Name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "Volume description")
	return cmd
}

func (a *app) cmdVolumeList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:]<pool>",
		Aliases: []string{"ls"},
		Short:   "List storage volumes",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			vols, err := c.GetStoragePoolVolumes(cmd.Context(), pool)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, v := range vols {
				rows = append(rows, []string{v.Type, v.Name, v.Description, v.ContentType, fmt.Sprint(len(v.UsedBy))})
			}
			sortRows(rows)
			return renderTable(a.stdout, format, []string{"TYPE", "NAME", "DESCRIPTION", "CONTENT-TYPE", "USED BY"}, rows, vols)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdVolumeShow() *cobra.Command {
	return &cobra.Command{
		Use:   "show [<remote>:]<pool> <volume>",
		Short: "Show storage volume configurations",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if vol, snap, ok := strings.Cut(volumeName(args[1]), "/"); ok {
				s, err := c.GetStoragePoolVolumeSnapshot(cmd.Context(), pool, vol, snap)
				if err != nil {
					return err
				}
				return a.printYAML(s)
			}
			v, _, err := c.GetStoragePoolVolume(cmd.Context(), pool, volumeName(args[1]))
			if err != nil {
				return err
			}
			return a.printYAML(v)
		},
	}
}

func (a *app) cmdVolumeDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete [<remote>:]<pool> <volume>",
		Aliases: []string{"rm"},
		Short:   "Delete custom storage volumes",
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			name := volumeName(args[1])
			if vol, snap, ok := strings.Cut(name, "/"); ok {
				op, err := c.DeleteStoragePoolVolumeSnapshot(cmd.Context(), pool, vol, snap)
				if err == nil {
					err = op.Wait(cmd.Context())
				}
				if err != nil {
					return err
				}
			} else if err := c.DeleteStoragePoolVolume(cmd.Context(), pool, name); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Storage volume %s deleted\n", name)
			}
			return nil
		},
	}
}

func (a *app) cmdVolumeRename() *cobra.Command {
	return &cobra.Command{
		Use:   "rename [<remote>:]<pool> <old name> <new name>",
		Short: "Rename custom storage volumes",
		Args:  checkArgs(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := c.RenameStoragePoolVolume(cmd.Context(), pool, volumeName(args[1]), volumeName(args[2])); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Renamed storage volume from \"%s\" to \"%s\"\n", volumeName(args[1]), volumeName(args[2]))
			}
			return nil
		},
	}
}

func (a *app) cmdVolumeCopy() *cobra.Command {
	var volumeOnly bool
	cmd := &cobra.Command{
		Use:   "copy [<remote>:]<pool>/<volume> [<remote>:]<pool>/<volume>",
		Short: "Copy custom storage volumes",
		Long: `Copy a custom volume with its snapshots (without them: --volume-only),
within a pool or to another pool, of the same driver or not.`,
		Args: checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, src, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			_, dst, err := a.parseOne(args[1])
			if err != nil {
				return err
			}
			srcPool, srcName, ok1 := strings.Cut(src, "/")
			dstPool, dstName, ok2 := strings.Cut(dst, "/")
			if !ok1 || !ok2 {
				return errors.New("give the volumes as <pool>/<volume>")
			}
			if err := c.CopyStoragePoolVolume(cmd.Context(), srcPool, volumeName(srcName), dstPool, volumeName(dstName), volumeOnly); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintln(a.stdout, "Storage volume copied successfully!")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&volumeOnly, "volume-only", false, "Copy the volume without its snapshots")
	return cmd
}

func (a *app) cmdVolumeAttach() *cobra.Command {
	return &cobra.Command{
		Use:   "attach [<remote>:]<pool> <volume> <instance> [<device name>] <path>",
		Short: "Attach new custom storage volumes to instances",
		Long: `Attach a custom volume to an instance as a disk device.

A running instance gets it mounted at once.`,
		Args: checkArgs(4, 5),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			vol := volumeName(args[1])
			if _, _, err := c.GetStoragePoolVolume(ctx, pool, vol); err != nil {
				return err
			}
			devName, devPath := vol, args[3]
			if len(args) == 5 {
				devName, devPath = args[3], args[4]
			}
			inst, etag, err := c.GetInstance(ctx, args[2])
			if err != nil {
				return err
			}
			if inst.Devices == nil {
				inst.Devices = api.Devices{}
			}
			if _, ok := inst.Devices[devName]; ok {
				return fmt.Errorf("The device %q already exists", devName)
			}
			inst.Devices[devName] = map[string]string{"type": "disk", "pool": pool, "source": vol, "path": path.Clean(devPath)}
			if err := a.putInstance(ctx, c, args[2], inst.InstancePut, etag); err != nil {
				return err
			}
			return nil
		},
	}
}

func (a *app) cmdVolumeDetach() *cobra.Command {
	return &cobra.Command{
		Use:   "detach [<remote>:]<pool> <volume> <instance> [<device name>]",
		Short: "Detach custom storage volumes from instances",
		Args:  checkArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			vol := volumeName(args[1])
			inst, etag, err := c.GetInstance(ctx, args[2])
			if err != nil {
				return err
			}
			devName := ""
			if len(args) == 4 {
				devName = args[3]
			} else {
				for name, dev := range inst.Devices {
					if dev["type"] == "disk" && dev["pool"] == pool && dev["source"] == vol {
						if devName != "" {
							return errors.New("More than one device matches, specify the device name")
						}
						devName = name
					}
				}
			}
			dev, ok := inst.Devices[devName]
			if !ok || dev["pool"] != pool || dev["source"] != vol {
				if _, inherited := inst.ExpandedDevices[devName]; inherited && devName != "" {
					return errors.New("The volume is attached through a profile: detach it from the profile instead")
				}
				return errors.New("No storage volume with the given name is attached to the instance")
			}
			delete(inst.Devices, devName)
			if err := a.putInstance(ctx, c, args[2], inst.InstancePut, etag); err != nil {
				return err
			}
			return nil
		},
	}
}

func (a *app) cmdVolumeSnapshot() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "snapshot [<remote>:]<pool> <volume> [<snapshot>]",
		Short: "Snapshot custom storage volumes",
		Long: `Snapshot a custom volume. Delete a snapshot with
c storage volume delete POOL VOLUME/SNAPSHOT; list them with
c storage volume snapshots POOL VOLUME.`,
		Args: checkArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			req := api.StorageVolumeSnapshotsPost{Description: description}
			if len(args) == 3 {
				req.Name = args[2]
			}
			op, err := c.CreateStoragePoolVolumeSnapshot(cmd.Context(), pool, volumeName(args[1]), req)
			if err != nil {
				return err
			}
			return op.Wait(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "Snapshot description")
	return cmd
}

func (a *app) cmdVolumeRestore() *cobra.Command {
	return &cobra.Command{
		Use:   "restore [<remote>:]<pool> <volume> <snapshot>",
		Short: "Restore custom storage volume snapshots",
		Args:  checkArgs(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			return c.RestoreStoragePoolVolume(cmd.Context(), pool, volumeName(args[1]), args[2])
		},
	}
}

func (a *app) cmdVolumeSnapshots() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "snapshots [<remote>:]<pool> <volume>",
		Short: "List the snapshots of a custom storage volume",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, pool, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			snaps, err := c.GetStoragePoolVolumeSnapshots(cmd.Context(), pool, volumeName(args[1]))
			if err != nil {
				return err
			}
			var rows [][]string
			for _, s := range snaps {
				rows = append(rows, []string{s.Name, s.Description, s.CreatedAt.Local().Format("2006/01/02 15:04 MST")})
			}
			return renderTable(a.stdout, format, []string{"NAME", "DESCRIPTION", "TAKEN AT"}, rows, snaps)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}
