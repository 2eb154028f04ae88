package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"cell/client"
	"cell/shared/api"
)

// createFlags are the flags shared by init and launch.
type createFlags struct {
	config     []string
	profiles   []string
	noProfiles bool
	ephemeral  bool
	storage    string
	network    string
	empty      bool
	vm         bool
}

func (f *createFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.config, "config", "c", nil, "Config key/value to apply to the new instance")
	fl.StringArrayVarP(&f.profiles, "profile", "p", nil, "Profile to apply to the new instance")
	fl.BoolVar(&f.noProfiles, "no-profiles", false, "Create the instance with no profiles applied")
	fl.BoolVarP(&f.ephemeral, "ephemeral", "e", false, "Ephemeral instance")
	fl.StringVarP(&f.storage, "storage", "s", "", "Storage pool name")
	fl.StringVarP(&f.network, "network", "n", "", "Network name")
	fl.BoolVar(&f.empty, "empty", false, "Create an empty instance")
	fl.BoolVar(&f.vm, "vm", false, "Create a virtual machine")
}

func (a *app) cmdInit() *cobra.Command {
	var flags createFlags
	cmd := &cobra.Command{
		Use:   "init [<remote>:]<image> [<remote>:][<name>]",
		Short: "Create instances from images",
		Example: `  c init images-alias c1
  c init local:bb c1 < config.yaml
      Create the instance with configuration from config.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, err := a.create(cmd, args, &flags)
			return err
		},
	}
	flags.register(cmd)
	return cmd
}

func (a *app) cmdLaunch() *cobra.Command {
	var flags createFlags
	cmd := &cobra.Command{
		Use:   "launch [<remote>:]<image> [<remote>:][<name>]",
		Short: "Create and start instances from images",
		Example: `  c launch bb c1
  c launch local:bb c1 -c limits.memory=256MiB -p default
  c launch bb c1 < config.yaml`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.create(cmd, args, &flags)
			if err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Starting %s\n", name)
			}
			op, err := c.UpdateInstanceState(cmd.Context(), name, api.InstanceStatePut{Action: "start", Timeout: -1}, "")
			if err == nil {
				err = op.Wait(cmd.Context())
			}
			if err != nil {
				return fmt.Errorf("%w\nTry `c info --show-log %s` for more info", err, name)
			}
			return nil
		},
	}
	flags.register(cmd)
	return cmd
}

// create implements init: it creates the instance and returns its name.
func (a *app) create(cmd *cobra.Command, args []string, flags *createFlags) (*client.Client, string, error) {
	ctx := cmd.Context()
	minArgs := 1
	if flags.empty {
		minArgs = 0
	}
	if len(args) < minArgs || len(args) > 2 || (flags.empty && len(args) > 1) {
		if len(args) == 0 {
			_ = cmd.Help()
			return nil, "", &exitError{code: 0}
		}
		return nil, "", errInvalidArgs
	}

	var image, target string
	if flags.empty {
		if len(args) == 1 {
			target = args[0]
		}
	} else {
		image = args[0]
		if len(args) == 2 {
			target = args[1]
		}
	}

	remote, name, err := a.conf.ParseRemote(target)
	if err != nil {
		return nil, "", err
	}
	c, err := a.client(remote)
	if err != nil {
		return nil, "", err
	}

	req := api.InstancesPost{Name: name, Type: "container"}
	if flags.vm {
		req.Type = "virtual-machine"
	}
	// Instance config piped on stdin, as `lxc init IMAGE NAME < config.yaml`.
	if f, ok := a.stdin.(*os.File); ok && !term.IsTerminal(int(f.Fd())) {
		data, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, "", fmt.Errorf("read instance config from stdin: %w", err)
		}
		if err := yaml.Unmarshal(data, &req.InstancePut); err != nil {
			return nil, "", fmt.Errorf("parse instance config from stdin: %w", err)
		}
	}

	if req.Config == nil {
		req.Config = map[string]string{}
	}
	for _, kv := range flags.config {
		k, v, err := parseKeyValue(kv)
		if err != nil {
			return nil, "", err
		}
		req.Config[k] = v
	}
	switch {
	case flags.noProfiles:
		req.Profiles = []string{}
	case len(flags.profiles) > 0:
		req.Profiles = flags.profiles
	}
	req.Ephemeral = req.Ephemeral || flags.ephemeral
	if req.Devices == nil {
		req.Devices = api.Devices{}
	}
	if flags.storage != "" {
		req.Devices["root"] = map[string]string{"type": "disk", "path": "/", "pool": flags.storage}
	}
	if flags.network != "" {
		req.Devices["eth0"] = map[string]string{"type": "nic", "network": flags.network, "name": "eth0"}
	}

	if flags.empty {
		req.Source = api.InstanceSource{Type: "none"}
	} else {
		imgRemote, imgName, err := a.conf.ParseRemote(image)
		if err != nil {
			return nil, "", err
		}
		switch {
		case a.conf.IsImageServer(imgRemote) || imgRemote != remote:
			if req.Source, err = a.remoteImageSource(ctx, imgRemote, imgName); err != nil {
				return nil, "", err
			}
		default:
			src, err := imageSource(ctx, c, imgName)
			if err != nil {
				return nil, "", err
			}
			req.Source = src
		}
	}

	if !a.flagQuiet {
		if name == "" {
			fmt.Fprintln(a.stdout, "Creating the instance")
		} else {
			fmt.Fprintf(a.stdout, "Creating %s\n", name)
		}
	}
	op, err := c.CreateInstance(ctx, req)
	if err != nil {
		return nil, "", err
	}
	if err := a.waitDownload(ctx, c, op); err != nil {
		return nil, "", err
	}
	if name == "" {
		name = client.InstanceNameFromOperation(&op.Operation)
		if name == "" {
			return nil, "", errors.New("the server did not say which name it gave the instance")
		}
		if !a.flagQuiet {
			fmt.Fprintf(a.stdout, "Instance name is: %s\n", name)
		}
	}
	return c, name, nil
}

// imageSource resolves an alias or fingerprint prefix to an instance source.
func imageSource(ctx context.Context, c *client.Client, image string) (api.InstanceSource, error) {
	if _, _, err := c.GetImageAlias(ctx, image); err == nil {
		return api.InstanceSource{Type: "image", Alias: image}, nil
	} else if !client.IsNotFound(err) {
		return api.InstanceSource{}, err
	}
	fp, err := resolveFingerprint(ctx, c, image)
	if err != nil {
		return api.InstanceSource{}, err
	}
	return api.InstanceSource{Type: "image", Fingerprint: fp}, nil
}

// parseKeyValue splits "key=value".
func parseKeyValue(kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("Bad key=value pair: %q", kv)
	}
	return k, v, nil
}

// stateFlags are the flags of start, stop, restart, pause and resume.
type stateFlags struct {
	all      bool
	force    bool
	timeout  int
	stateful bool
	// stateless starts a stateful-stopped instance afresh, discarding
	// its saved state.
	stateless bool
}

// stateCommand builds one of the commands that change an instance's state.
func (a *app) stateCommand(use, short, action, verb string) (*cobra.Command, *stateFlags) {
	var flags stateFlags
	cmd := &cobra.Command{
		Use:   use + " [<remote>:]<instance> [[<remote>:]<instance>...]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !flags.all {
				_ = cmd.Help()
				return &exitError{code: 0}
			}
			return a.changeState(cmd.Context(), args, action, verb, &flags)
		},
	}
	cmd.Flags().BoolVar(&flags.all, "all", false, "Run against all instances")
	return cmd, &flags
}

func (a *app) cmdStart() *cobra.Command {
	cmd, flags := a.stateCommand("start", "Start instances", "start", "start")
	cmd.Flags().BoolVar(&flags.stateful, "stateful", false, "Restore the instance state")
	cmd.Flags().BoolVar(&flags.stateless, "stateless", false, "Ignore the instance state")
	return cmd
}

func (a *app) cmdStop() *cobra.Command {
	cmd, flags := a.stateCommand("stop", "Stop instances", "stop", "stop")
	cmd.Flags().BoolVarP(&flags.force, "force", "f", false, "Force the instance to shutdown")
	cmd.Flags().IntVar(&flags.timeout, "timeout", -1, "Time to wait for the instance before killing it")
	cmd.Flags().BoolVar(&flags.stateful, "stateful", false, "Store the instance state")
	return cmd
}

func (a *app) cmdRestart() *cobra.Command {
	cmd, flags := a.stateCommand("restart", "Restart instances", "restart", "restart")
	cmd.Flags().BoolVarP(&flags.force, "force", "f", false, "Force the instance to shutdown")
	cmd.Flags().IntVar(&flags.timeout, "timeout", -1, "Time to wait for the instance before killing it")
	return cmd
}

func (a *app) cmdPause() *cobra.Command {
	cmd, _ := a.stateCommand("pause", "Pause instances", "freeze", "pause")
	cmd.Aliases = []string{"freeze"}
	return cmd
}

func (a *app) cmdResume() *cobra.Command {
	cmd, _ := a.stateCommand("resume", "Resume paused instances", "unfreeze", "resume")
	cmd.Aliases = []string{"unfreeze"}
	return cmd
}

// target is an instance on a remote.
type target struct {
	c    *client.Client
	name string
}

// targets resolves instance arguments, or every instance with all.
func (a *app) targets(ctx context.Context, args []string, all bool) ([]target, error) {
	if all {
		remote := a.conf.DefaultRemote
		if len(args) == 1 && strings.HasSuffix(args[0], ":") {
			r, _, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return nil, err
			}
			remote = r
		} else if len(args) > 0 {
			return nil, errors.New("--all takes no instance names")
		}
		c, err := a.client(remote)
		if err != nil {
			return nil, err
		}
		names, err := c.GetInstanceNames(ctx)
		if err != nil {
			return nil, err
		}
		var ts []target
		for _, n := range names {
			ts = append(ts, target{c, n})
		}
		return ts, nil
	}
	var ts []target
	for _, arg := range args {
		c, name, err := a.parseOne(arg)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, fmt.Errorf("Missing instance name in %q", arg)
		}
		ts = append(ts, target{c, name})
	}
	return ts, nil
}

func (a *app) changeState(ctx context.Context, args []string, action, verb string, flags *stateFlags) error {
	ts, err := a.targets(ctx, args, flags.all)
	if err != nil {
		return err
	}
	failed := false
	for _, t := range ts {
		err := a.changeOne(ctx, t, action, flags)
		if err == nil {
			continue
		}
		if len(ts) == 1 {
			return err
		}
		// Several instances: each failure on its own line, then a summary,
		// as lxc prints them.
		fmt.Fprintf(a.stderr, "%s: error: %v\n", t.name, err)
		failed = true
	}
	if failed {
		fmt.Fprintln(a.stderr)
		return fmt.Errorf("Some instances failed to %s", verb)
	}
	return nil
}

// alreadyThere reports whether an instance in status is already where
// action leads, so that --all can skip it.
func alreadyThere(action string, status api.StatusCode) bool {
	switch action {
	case "start", "unfreeze":
		return status == api.Running
	case "stop":
		return status == api.Stopped
	case "freeze":
		return status == api.Frozen
	}
	return false
}

func (a *app) changeOne(ctx context.Context, t target, action string, flags *stateFlags) error {
	stateful := flags.stateful
	if action == "start" || flags.all {
		// `start` on a paused instance resumes it, as lxc does; with --all
		// instances already in the wanted state are skipped.
		inst, _, err := t.c.GetInstance(ctx, t.name)
		if err != nil {
			return err
		}
		if action == "start" && inst.StatusCode == api.Frozen {
			action = "unfreeze"
		}
		if action == "start" && inst.Stateful && !flags.stateless {
			// As lxc does: a saved state is resumed unless --stateless.
			stateful = true
		}
		if flags.all && alreadyThere(action, inst.StatusCode) {
			return nil
		}
	}
	req := api.InstanceStatePut{Action: action, Timeout: flags.timeout, Force: flags.force, Stateful: stateful}
	if action == "start" || action == "freeze" || action == "unfreeze" {
		req.Timeout = -1
	}
	op, err := t.c.UpdateInstanceState(ctx, t.name, req, "")
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}

func (a *app) cmdDelete() *cobra.Command {
	var force, interactive bool
	cmd := &cobra.Command{
		Use:     "delete [<remote>:]<instance> [[<remote>:]<instance>...]",
		Aliases: []string{"rm"},
		Short:   "Delete instances",
		Args:    checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			ts, err := a.targets(ctx, args, false)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if interactive {
					ok, err := a.confirm(fmt.Sprintf("Remove %s (yes/no): ", t.name))
					if err != nil {
						return err
					}
					if !ok {
						return errors.New("User aborted delete operation")
					}
				}
				if err := a.deleteOne(ctx, t, force); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of running instances")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Require user confirmation")
	return cmd
}

func (a *app) deleteOne(ctx context.Context, t target, force bool) error {
	if inst, snap, ok := strings.Cut(t.name, "/"); ok {
		op, err := t.c.DeleteInstanceSnapshot(ctx, inst, snap)
		if err != nil {
			return err
		}
		return op.Wait(ctx)
	}
	if force {
		inst, _, err := t.c.GetInstance(ctx, t.name)
		if err != nil {
			return err
		}
		if inst.StatusCode != api.Stopped && inst.StatusCode != 0 {
			op, err := t.c.UpdateInstanceState(ctx, t.name, api.InstanceStatePut{Action: "stop", Timeout: -1, Force: true}, "")
			if err != nil {
				return fmt.Errorf("stop %s: %w", t.name, err)
			}
			if err := op.Wait(ctx); err != nil {
				return fmt.Errorf("stop %s: %w", t.name, err)
			}
		}
	}
	op, err := t.c.DeleteInstance(ctx, t.name)
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}

// confirm asks a yes/no question on the terminal.
func (a *app) confirm(question string) (bool, error) {
	fmt.Fprint(a.stdout, question)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("read answer: %w", err)
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

func (a *app) cmdRename() *cobra.Command {
	return &cobra.Command{
		Use:   "rename [<remote>:]<instance> <instance>",
		Short: "Rename instances",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.rename(cmd.Context(), args[0], args[1])
		},
	}
}

// rename renames an instance in place; both names must be on one remote.
func (a *app) rename(ctx context.Context, from, to string) error {
	srcRemote, srcName, err := a.conf.ParseRemote(from)
	if err != nil {
		return err
	}
	dstRemote, dstName, err := a.conf.ParseRemote(to)
	if err != nil {
		return err
	}
	// "NEW" without a remote prefix means the source's remote.
	if !strings.Contains(to, ":") {
		dstRemote = srcRemote
	}
	if srcRemote != dstRemote {
		return errors.New("Moving instances between servers is not supported yet")
	}
	if inst, snap, ok := strings.Cut(srcName, "/"); ok {
		// NAME/SNAP NAME/NEW, or NAME/SNAP NEW.
		newSnap := dstName
		if dstInst, s, ok := strings.Cut(dstName, "/"); ok {
			if dstInst != inst {
				return errors.New("Moving snapshots to another instance is not supported yet")
			}
			newSnap = s
		}
		if newSnap == "" || newSnap == snap {
			return errors.New("Missing new snapshot name")
		}
		c, err := a.client(srcRemote)
		if err != nil {
			return err
		}
		op, err := c.RenameInstanceSnapshot(ctx, inst, snap, newSnap)
		if err != nil {
			return err
		}
		return op.Wait(ctx)
	}
	if strings.Contains(dstName, "/") {
		return errors.New("An instance cannot be renamed into a snapshot")
	}
	if dstName == "" || dstName == srcName {
		return errors.New("Missing new instance name")
	}
	c, err := a.client(srcRemote)
	if err != nil {
		return err
	}
	op, err := c.RenameInstance(ctx, srcName, dstName)
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}
