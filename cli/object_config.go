package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/client"
)

// configObject describes a kind of server object with a config map and a
// description (a network, a storage pool, a profile) for the show, edit,
// get, set and unset commands they share. T is the object as the server
// shows it, P its writable part (the *Put type).
type configObject[T, P any] struct {
	noun string // "network", "storage pool", "profile": for help texts
	arg  string // the argument's name in usage lines: "<network>"
	get  func(c *client.Client, ctx context.Context, name string) (T, string, error)
	// writable returns the writable part of an object.
	writable func(T) P
	// fields points into the writable part's config and description.
	fields func(*P) (config *map[string]string, description *string)
	update func(c *client.Client, ctx context.Context, name string, put P, etag string) error
	remove func(c *client.Client, ctx context.Context, name string) error
	// rename is nil for objects that cannot be renamed (storage pools).
	rename func(c *client.Client, ctx context.Context, name, newName string) error
}

func (o configObject[T, P]) deleteCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "delete [<remote>:]" + o.arg,
		Aliases: []string{"rm"},
		Short:   "Delete " + o.noun + "s",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := o.remove(c, cmd.Context(), name); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "%s %s deleted\n", o.title(), name)
			}
			return nil
		},
	}
}

func (o configObject[T, P]) renameCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "rename [<remote>:]" + o.arg + " <new-name>",
		Aliases: []string{"mv"},
		Short:   "Rename " + o.noun + "s",
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := o.rename(c, cmd.Context(), name, args[1]); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "%s %s renamed to %s\n", o.title(), name, args[1])
			}
			return nil
		},
	}
}

// title is the noun at the start of a message: "Storage pool".
func (o configObject[T, P]) title() string {
	return strings.ToUpper(o.noun[:1]) + o.noun[1:]
}

func (o configObject[T, P]) showCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "show [<remote>:]" + o.arg,
		Short: "Show " + o.noun + " configurations",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			obj, _, err := o.get(c, cmd.Context(), name)
			if err != nil {
				return err
			}
			return a.printYAML(obj)
		},
	}
}

func (o configObject[T, P]) editCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "edit [<remote>:]" + o.arg,
		Short: "Edit " + o.noun + " configurations as YAML",
		Example: fmt.Sprintf(`  c %s edit %s < %s.yaml
      Update the %s from a YAML file`, o.command(), o.arg, o.command(), o.noun),
		Args: checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			obj, etag, err := o.get(c, ctx, name)
			if err != nil {
				return err
			}
			return a.editYAML(o.writable(obj), func(data []byte) error {
				var put P
				if err := yaml.Unmarshal(data, &put); err != nil {
					return err
				}
				return o.update(c, ctx, name, put, etag)
			})
		},
	}
}

func (o configObject[T, P]) getCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "get [<remote>:]" + o.arg + " <key>",
		Short: "Get values for " + o.noun + " configuration keys",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			obj, _, err := o.get(c, cmd.Context(), name)
			if err != nil {
				return err
			}
			put := o.writable(obj)
			config, description := o.fields(&put)
			if args[1] == "description" {
				fmt.Fprintln(a.stdout, *description)
				return nil
			}
			fmt.Fprintln(a.stdout, (*config)[args[1]])
			return nil
		},
	}
}

func (o configObject[T, P]) setCmd(a *app, example string) *cobra.Command {
	return &cobra.Command{
		Use:     "set [<remote>:]" + o.arg + " <key>=<value>...",
		Short:   "Set " + o.noun + " configuration keys",
		Example: example,
		Args:    checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseSetKeys(args[1:])
			if err != nil {
				return err
			}
			return o.change(a, cmd.Context(), args[0], func(config map[string]string, description *string) error {
				for k, v := range keys {
					if k == "description" {
						*description = v
						continue
					}
					config[k] = v
				}
				return nil
			})
		},
	}
}

func (o configObject[T, P]) unsetCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "unset [<remote>:]" + o.arg + " <key>",
		Short: "Unset " + o.noun + " configuration keys",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.change(a, cmd.Context(), args[0], func(config map[string]string, description *string) error {
				if args[1] == "description" {
					*description = ""
					return nil
				}
				if _, ok := config[args[1]]; !ok {
					return errors.New("Can't unset key '" + args[1] + "', it's not currently set")
				}
				delete(config, args[1])
				return nil
			})
		},
	}
}

// change reads the object, lets fn change its config and description, and
// writes it back with the ETag it was read with, so that a concurrent
// change is refused rather than lost.
func (o configObject[T, P]) change(a *app, ctx context.Context, arg string, fn func(config map[string]string, description *string) error) error {
	c, name, err := a.parseOne(arg)
	if err != nil {
		return err
	}
	obj, etag, err := o.get(c, ctx, name)
	if err != nil {
		return err
	}
	put := o.writable(obj)
	config, description := o.fields(&put)
	if *config == nil {
		*config = map[string]string{}
	}
	if err := fn(*config, description); err != nil {
		return err
	}
	return o.update(c, ctx, name, put, etag)
}

// command is the `c` command of the object kind, for examples.
func (o configObject[T, P]) command() string {
	switch o.noun {
	case "storage pool":
		return "storage"
	default:
		return o.noun
	}
}
