package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/client"
	"cell/shared/api"
)

// configTarget is what a config command works on: an instance, or the
// server itself when instance is empty.
type configTarget struct {
	c        *client.Client
	instance string
}

// parseTarget resolves "[remote:][instance]"; "remote:" alone means that
// server.
func (a *app) parseTarget(arg string) (configTarget, error) {
	c, name, err := a.parseOne(arg)
	if err != nil {
		return configTarget{}, err
	}
	return configTarget{c: c, instance: name}, nil
}

// defaultTarget is the default remote's server.
func (a *app) defaultTarget() (configTarget, error) {
	c, err := a.client(a.conf.DefaultRemote)
	if err != nil {
		return configTarget{}, err
	}
	return configTarget{c: c}, nil
}

// splitSetArgs decides what `config set` args mean. Allowed forms, as in
// lxc:
//
//	set [<remote>:]<instance> k=v [k=v...]
//	set [<remote>:]<instance> k v
//	set k=v [k=v...]           (server)
//	set k v                    (server; a key always holds a ".")
//
// It returns the target argument ("" for the default server) and the keys.
func splitSetArgs(args []string) (targetArg string, keys map[string]string, err error) {
	if len(args) == 0 {
		return "", nil, errInvalidArgs
	}
	rest := args
	switch {
	case strings.Contains(args[0], "="):
		// Server config, all pairs.
	case len(args) == 2 && strings.Contains(args[0], ".") && !strings.Contains(args[1], "="):
		return "", map[string]string{args[0]: args[1]}, nil
	default:
		targetArg, rest = args[0], args[1:]
	}
	keys, err = parseSetKeys(rest)
	return targetArg, keys, err
}

// parseSetKeys reads "k=v [k=v...]" or "k v".
func parseSetKeys(args []string) (map[string]string, error) {
	if len(args) == 0 {
		return nil, errInvalidArgs
	}
	if len(args) == 2 && !strings.Contains(args[0], "=") {
		return map[string]string{args[0]: args[1]}, nil
	}
	keys := map[string]string{}
	for _, kv := range args {
		k, v, err := parseKeyValue(kv)
		if err != nil {
			return nil, err
		}
		keys[k] = v
	}
	return keys, nil
}

func (a *app) cmdConfig() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage instance and server configuration options",
	}
	cmd.AddCommand(a.cmdConfigGet(), a.cmdConfigSet(), a.cmdConfigUnset(), a.cmdConfigShow(), a.cmdConfigEdit(), a.cmdConfigDevice(),
		a.cmdConfigTrust())
	return cmd
}

// targetFromArgs handles the "[<remote>:][<instance>] <key>" commands:
// with one argument the key is the server's.
func (a *app) targetFromArgs(args []string) (configTarget, string, error) {
	if len(args) == 1 {
		t, err := a.defaultTarget()
		return t, args[0], err
	}
	t, err := a.parseTarget(args[0])
	return t, args[1], err
}

func (a *app) cmdConfigGet() *cobra.Command {
	var expanded bool
	cmd := &cobra.Command{
		Use:   "get [<remote>:][<instance>] <key>",
		Short: "Get values for instance or server configuration keys",
		Args:  checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, key, err := a.targetFromArgs(args)
			if err != nil {
				return err
			}
			if t.instance == "" {
				srv, _, err := t.c.GetServer(ctx)
				if err != nil {
					return err
				}
				v, ok := srv.Config[key]
				if !ok || v == nil {
					v = ""
				}
				fmt.Fprintln(a.stdout, v)
				return nil
			}
			inst, _, err := t.c.GetInstance(ctx, t.instance)
			if err != nil {
				return err
			}
			config := inst.Config
			if expanded {
				config = inst.ExpandedConfig
			}
			fmt.Fprintln(a.stdout, config[key])
			return nil
		},
	}
	cmd.Flags().BoolVarP(&expanded, "expanded", "e", false, "Access the expanded configuration")
	return cmd
}

func (a *app) cmdConfigSet() *cobra.Command {
	return &cobra.Command{
		Use:   "set [<remote>:][<instance>] <key>=<value>...",
		Short: "Set instance or server configuration keys",
		Example: `  c config set c1 limits.cpu=2
      Will set a CPU limit of "2" for the instance.

  c config set c1 limits.memory 256MiB
      The key and the value may also be two arguments.

  c config set core.https_address=[::]:8443
      Will have the server listen on IPv4 and IPv6 port 8443.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				_ = cmd.Help()
				return &exitError{code: 0}
			}
			targetArg, keys, err := splitSetArgs(args)
			if err != nil {
				return err
			}
			t, err := a.defaultTarget()
			if targetArg != "" {
				t, err = a.parseTarget(targetArg)
			}
			if err != nil {
				return err
			}
			return a.updateConfig(cmd.Context(), t, func(config map[string]string) error {
				for k, v := range keys {
					config[k] = v
				}
				return nil
			})
		},
	}
}

func (a *app) cmdConfigUnset() *cobra.Command {
	return &cobra.Command{
		Use:   "unset [<remote>:][<instance>] <key>",
		Short: "Unset instance or server configuration keys",
		Args:  checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, key, err := a.targetFromArgs(args)
			if err != nil {
				return err
			}
			return a.updateConfig(cmd.Context(), t, func(config map[string]string) error {
				if _, ok := config[key]; !ok {
					return fmt.Errorf("Can't unset key '%s', it's not currently set", key)
				}
				delete(config, key)
				return nil
			})
		},
	}
}

// updateConfig changes the config of an instance or of the server with
// edit, and saves it with the ETag read, so that a concurrent change fails
// instead of being overwritten.
func (a *app) updateConfig(ctx context.Context, t configTarget, edit func(map[string]string) error) error {
	if t.instance == "" {
		srv, etag, err := t.c.GetServer(ctx)
		if err != nil {
			return err
		}
		config := map[string]string{}
		for k, v := range srv.Config {
			config[k] = fmt.Sprint(v)
		}
		if err := edit(config); err != nil {
			return err
		}
		put := api.ServerPut{Config: map[string]any{}}
		for k, v := range config {
			put.Config[k] = v
		}
		return t.c.UpdateServer(ctx, put, etag)
	}

	inst, etag, err := t.c.GetInstance(ctx, t.instance)
	if err != nil {
		return err
	}
	if inst.Config == nil {
		inst.Config = map[string]string{}
	}
	if err := edit(inst.Config); err != nil {
		return err
	}
	return a.putInstance(ctx, t.c, t.instance, inst.InstancePut, etag)
}

// putInstance saves an instance's writable fields and waits.
func (a *app) putInstance(ctx context.Context, c *client.Client, name string, put api.InstancePut, etag string) error {
	op, err := c.UpdateInstance(ctx, name, put, etag)
	if err != nil {
		return err
	}
	return op.Wait(ctx)
}

// showTarget handles "[<remote>:][<instance>]" with no argument meaning the
// default server.
func (a *app) showTarget(args []string) (configTarget, error) {
	if len(args) == 0 {
		return a.defaultTarget()
	}
	t, err := a.parseTarget(args[0])
	if err == nil && strings.Contains(t.instance, "/") {
		err = errors.New("Snapshots are not supported yet")
	}
	return t, err
}

func (a *app) cmdConfigShow() *cobra.Command {
	var expanded bool
	cmd := &cobra.Command{
		Use:   "show [<remote>:][<instance>]",
		Short: "Show instance or server configurations",
		Args:  checkArgs(0, 1),
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
				return a.printYAML(srv.ServerPut)
			}
			inst, _, err := t.c.GetInstance(ctx, t.instance)
			if err != nil {
				return err
			}
			put := inst.InstancePut
			if expanded {
				put.Config, put.Devices = inst.ExpandedConfig, inst.ExpandedDevices
			}
			return a.printYAML(put)
		},
	}
	cmd.Flags().BoolVarP(&expanded, "expanded", "e", false, "Show the expanded configuration")
	return cmd
}

func (a *app) cmdConfigEdit() *cobra.Command {
	return &cobra.Command{
		Use:   "edit [<remote>:][<instance>]",
		Short: "Edit instance or server configurations as YAML",
		Example: `  c config edit <instance> < instance.yaml
      Update the instance configuration from instance.yaml.`,
		Args: checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := a.showTarget(args)
			if err != nil {
				return err
			}
			if t.instance == "" {
				srv, etag, err := t.c.GetServer(ctx)
				if err != nil {
					return err
				}
				return a.editYAML(srv.ServerPut, func(data []byte) error {
					var put api.ServerPut
					if err := yaml.Unmarshal(data, &put); err != nil {
						return err
					}
					return t.c.UpdateServer(ctx, put, etag)
				})
			}
			inst, etag, err := t.c.GetInstance(ctx, t.instance)
			if err != nil {
				return err
			}
			return a.editYAML(inst.InstancePut, func(data []byte) error {
				var put api.InstancePut
				if err := yaml.Unmarshal(data, &put); err != nil {
					return err
				}
				return a.putInstance(ctx, t.c, t.instance, put, etag)
			})
		},
	}
}

// cmdConfigDevice is `c config device ...` on an instance's devices.
func (a *app) cmdConfigDevice() *cobra.Command {
	return a.deviceCommands("instance", func(ctx context.Context, arg string) (*deviceHolder, error) {
		c, name, err := a.parseOne(arg)
		if err != nil {
			return nil, err
		}
		inst, etag, err := c.GetInstance(ctx, name)
		if err != nil {
			return nil, err
		}
		h := &deviceHolder{devices: inst.Devices, inherited: inst.ExpandedDevices}
		h.save = func(ctx context.Context) error {
			inst.Devices = h.devices
			return a.putInstance(ctx, c, name, inst.InstancePut, etag)
		}
		return h, nil
	})
}

// instanceArgName strips the remote from an instance argument, for
// messages.
func instanceArgName(arg string) string {
	if _, name, ok := strings.Cut(arg, ":"); ok {
		return name
	}
	return arg
}
