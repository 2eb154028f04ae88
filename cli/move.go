package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
	"cell/shared/api"
)

// copyAcross copies instance srcName of srcRemote to dstRemote as
// dstName, in pull mode (the target fetches it from the source). req
// holds what the user set (-c, -p, -s, --instance-only); the rest comes
// from the source instance, as LXD's client does it.
func (a *app) copyAcross(ctx context.Context, srcRemote, srcName, dstRemote, dstName string, req api.InstancesPost, opts client.CopyOptions) error {
	src, err := a.client(srcRemote)
	if err != nil {
		return err
	}
	dst, err := a.client(dstRemote)
	if err != nil {
		return err
	}
	inst, _, err := src.GetInstance(ctx, srcName)
	if err != nil {
		return err
	}
	out := req
	out.Name = dstName
	out.Architecture = inst.Architecture
	out.Description = inst.Description
	out.Ephemeral = req.Ephemeral || inst.Ephemeral
	out.Config = maps.Clone(inst.Config)
	if out.Config == nil {
		out.Config = map[string]string{}
	}
	maps.Copy(out.Config, req.Config)
	out.Devices = api.Devices{}
	for k, v := range inst.Devices {
		out.Devices[k] = maps.Clone(v)
	}
	for k, v := range req.Devices {
		// -s: the root disk on that pool, with the source's other settings.
		merged := maps.Clone(out.Devices[k])
		if merged == nil {
			merged = map[string]string{}
		}
		maps.Copy(merged, v)
		out.Devices[k] = merged
	}
	if req.Profiles == nil {
		out.Profiles = inst.Profiles
	}
	bar := a.newProgress("Transferring instance", 0)
	defer bar.done()
	opts.Progress = bar.update
	return src.CopyInstanceTo(ctx, srcName, dst, out, opts)
}

func (a *app) cmdMove() *cobra.Command {
	var stateful, stateless, instanceOnly bool
	var mode string
	cmd := &cobra.Command{
		Use:     "move [<remote>:]<instance> [<remote>:][<instance>]",
		Aliases: []string{"mv"},
		Short:   "Move instances within or in between servers",
		Long: `Move instances within or in between servers

On one server, a move renames:
  c move <old name> <new name>

To another server, the instance is copied there (with its snapshots,
unless --instance-only) and then deleted here. A running instance is
stopped, moved and started there (--stateless, the default), or with
--stateful moved live: its processes keep running on the target, their
memory intact (CRIU).`,
		Example: `  c move C01 C02
  c move host1:C01 host2:C01
  c move C01 host2: --stateful`,
		Args: checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if stateful && stateless {
				return errors.New("--stateful and --stateless cannot be used together")
			}
			srcRemote, srcName, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return err
			}
			dstRemote, dstName, err := a.conf.ParseRemote(args[1])
			if err != nil {
				return err
			}
			if !strings.Contains(args[1], ":") || srcRemote == dstRemote {
				if stateful || instanceOnly {
					return errors.New("--stateful and --instance-only are for moves to another server")
				}
				return a.rename(cmd.Context(), args[0], args[1])
			}
			if strings.Contains(srcName, "/") || strings.Contains(dstName, "/") {
				return errors.New("Moving snapshots to another server is not supported")
			}
			return a.moveAcross(cmd.Context(), srcRemote, srcName, dstRemote, dstName, mode, stateful, instanceOnly)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&stateful, "stateful", false, "Move a running instance live, with its running state")
	fl.BoolVar(&stateless, "stateless", false, "Move a running instance by stopping it first (the default)")
	fl.BoolVar(&instanceOnly, "instance-only", false, "Move the instance without its snapshots")
	fl.StringVar(&mode, "mode", "pull", "Transfer mode between servers: pull (the target connects to the source) or push")
	return cmd
}

// moveAcross moves an instance to another server: a copy, then the
// source is deleted. A running instance is moved live with stateful;
// otherwise it is stopped first and started on the target, and if the
// copy fails it is started again where it was.
func (a *app) moveAcross(ctx context.Context, srcRemote, srcName, dstRemote, dstName, mode string, stateful, instanceOnly bool) error {
	if dstName == "" {
		dstName = srcName
	}
	src, err := a.client(srcRemote)
	if err != nil {
		return err
	}
	dst, err := a.client(dstRemote)
	if err != nil {
		return err
	}
	state, err := src.GetInstanceState(ctx, srcName)
	if err != nil {
		return err
	}
	running := state.Status == "Running"
	if stateful && !running {
		return fmt.Errorf("instance %q is not running: move it without --stateful", srcName)
	}
	live := stateful
	if running && !live {
		op, err := src.UpdateInstanceState(ctx, srcName, api.InstanceStatePut{Action: "stop", Timeout: 30}, "")
		if err == nil {
			err = op.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("stop %s before moving it: %w", srcName, err)
		}
	}
	req := api.InstancesPost{}
	opts := client.CopyOptions{InstanceOnly: instanceOnly, Live: live, Mode: mode}
	if err := a.copyAcross(ctx, srcRemote, srcName, dstRemote, dstName, req, opts); err != nil {
		// A failed live move restarts the instance on the source itself.
		if running && !live {
			if op, startErr := src.UpdateInstanceState(ctx, srcName, api.InstanceStatePut{Action: "start"}, ""); startErr == nil {
				_ = op.Wait(ctx)
			}
		}
		return err
	}
	op, err := src.DeleteInstance(ctx, srcName)
	if err == nil {
		err = op.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("the copy on %s is made, but deleting the source failed: %w", dstRemote, err)
	}
	if running && !live {
		op, err := dst.UpdateInstanceState(ctx, dstName, api.InstanceStatePut{Action: "start"}, "")
		if err == nil {
			err = op.Wait(ctx)
		}
		if err != nil {
			return fmt.Errorf("start %s on %s: %w", dstName, dstRemote, err)
		}
	}
	return nil
}
