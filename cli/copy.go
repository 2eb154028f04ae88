package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdCopy() *cobra.Command {
	var (
		config       []string
		profiles     []string
		noProfiles   bool
		ephemeral    bool
		storage      string
		instanceOnly bool
		refresh      bool
		stateless    bool
		mode         string
	)
	cmd := &cobra.Command{
		Use:     "copy [<remote>:]<source>[/<snapshot>] [[<remote>:]<destination>]",
		Aliases: []string{"cp"},
		Short:   "Copy instances within or in between LXD servers",
		Long: `Copy instances within or in between LXD servers

The copy takes the source's config, devices and profiles; -c, -p and -s
change them. Snapshots are copied too, unless --instance-only is given.
With --refresh an existing copy is brought up to date: its files, and its
snapshots (missing ones added, ones gone from the source removed).

-s copies to another storage pool of the same server (of any driver), with
the snapshots unless --instance-only.

Between two servers (both HTTPS remotes), the target fetches the instance
from the source (--mode pull, the default) or the source sends it
(--mode push); a running instance is copied as its files are (stateless).`,
		Example: `  c copy C01 C02
  c copy C01/snap0 C03
  c copy C01 C02 --refresh
  c copy C01 C04 -s fast
  c copy host1:C01 host2:C01 --instance-only`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			srcRemote, srcName, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return err
			}
			dstRemote, dstName := srcRemote, ""
			if len(args) == 2 {
				if dstRemote, dstName, err = a.conf.ParseRemote(args[1]); err != nil {
					return err
				}
				if !strings.Contains(args[1], ":") {
					dstRemote = srcRemote
				}
			}
			if srcName == "" {
				return fmt.Errorf("Invalid source %q", args[0])
			}
			if strings.Contains(dstName, "/") {
				return errors.New("Destination name cannot contain a snapshot")
			}
			if refresh && dstName == "" {
				return errors.New("--refresh needs a destination instance name")
			}
			req := api.InstancesPost{
				Name: dstName, Type: "container",
				Source: api.InstanceSource{Type: "copy", Source: srcName, InstanceOnly: instanceOnly, Refresh: refresh},
			}
			req.Config = map[string]string{}
			for _, kv := range config {
				k, v, err := parseKeyValue(kv)
				if err != nil {
					return err
				}
				req.Config[k] = v
			}
			switch {
			case noProfiles:
				req.Profiles = []string{}
			case len(profiles) > 0:
				req.Profiles = profiles
			}
			req.Ephemeral = ephemeral
			req.Devices = api.Devices{}
			if storage != "" {
				req.Devices["root"] = map[string]string{"type": "disk", "path": "/", "pool": storage}
			}
			if srcRemote != dstRemote {
				if strings.Contains(srcName, "/") {
					return errors.New("Copying a snapshot to another server is not supported yet")
				}
				if refresh {
					return errors.New("--refresh between servers is not supported yet")
				}
				if dstName == "" {
					dstName = srcName
				}
				return a.copyAcross(ctx, srcRemote, srcName, dstRemote, dstName, req, client.CopyOptions{InstanceOnly: instanceOnly, Mode: mode})
			}
			c, err := a.client(srcRemote)
			if err != nil {
				return err
			}
			op, err := c.CreateInstance(ctx, req)
			if err != nil {
				return err
			}
			if err := op.Wait(ctx); err != nil {
				return err
			}
			if dstName == "" && !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Instance name is: %s\n", client.InstanceNameFromOperation(&op.Operation))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&config, "config", "c", nil, "Config key/value to apply to the new instance")
	fl.StringArrayVarP(&profiles, "profile", "p", nil, "Profile to apply to the new instance")
	fl.BoolVar(&noProfiles, "no-profiles", false, "Create the instance with no profiles applied")
	fl.BoolVarP(&ephemeral, "ephemeral", "e", false, "Ephemeral instance")
	fl.StringVarP(&storage, "storage", "s", "", "Storage pool name")
	fl.BoolVar(&instanceOnly, "instance-only", false, "Copy the instance without its snapshots")
	fl.BoolVar(&refresh, "refresh", false, "Perform an incremental copy")
	fl.BoolVar(&stateless, "stateless", false, "Copy a stateful instance stateless")
	fl.StringVar(&mode, "mode", "pull", "Transfer mode between servers: pull (the target connects to the source) or push")
	return cmd
}
