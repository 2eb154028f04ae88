package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/spf13/cobra"

	"cell/shared/api"
)

// Device commands (`c config device ...` and `c profile device ...`) are
// one set of commands over whatever holds devices: an instance or a
// profile.

// deviceHolder is the devices of one instance or profile, loaded for a
// command to look at or change.
type deviceHolder struct {
	// devices are the holder's own devices; commands change them in
	// place and call save.
	devices api.Devices
	// inherited are the devices an instance gets from its profiles (its
	// expanded devices); nil for a profile.
	inherited api.Devices
	save      func(ctx context.Context) error
}

// loadDevices loads the holder named by a [<remote>:]<name> argument.
type loadDevices func(ctx context.Context, arg string) (*deviceHolder, error)

var errNoDevice = errors.New("Device doesn't exist")

// deviceCommands builds `device add|remove|list|show|get|set|unset` (and
// `override` for instances) for the holders noun ("instance" or
// "profile") names.
func (a *app) deviceCommands(noun string, load loadDevices) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "Manage devices",
	}
	// edit loads the holder, lets fn look or change, and saves when fn
	// says it changed something.
	edit := func(ctx context.Context, arg string, fn func(h *deviceHolder) (bool, error)) error {
		h, err := load(ctx, arg)
		if err != nil {
			return err
		}
		if h.devices == nil {
			h.devices = api.Devices{}
		}
		changed, err := fn(h)
		if err != nil || !changed {
			return err
		}
		return h.save(ctx)
	}
	target := "[<remote>:]<" + noun + ">"

	add := &cobra.Command{
		Use:   "add " + target + " <device> <type> [key=value...]",
		Short: "Add devices to " + article(noun),
		Example: `  c config device add c1 data disk source=/share/c1 path=/opt
      Will mount the host's /share/c1 onto /opt in the instance.
  c profile device add web data disk source=/srv/data path=/data
      Will mount the host's /srv/data onto /data in every instance using web.`,
		Args: checkArgs(3, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dev := map[string]string{"type": args[2]}
			for _, kv := range args[3:] {
				k, v, err := parseKeyValue(kv)
				if err != nil {
					return err
				}
				dev[k] = v
			}
			err := edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				if _, ok := h.devices[args[1]]; ok {
					return false, errors.New("The device already exists")
				}
				h.devices[args[1]] = dev
				return true, nil
			})
			if err == nil {
				fmt.Fprintf(a.stdout, "Device %s added to %s\n", args[1], instanceArgName(args[0]))
			}
			return err
		},
	}

	remove := &cobra.Command{
		Use:     "remove " + target + " <name>...",
		Aliases: []string{"rm"},
		Short:   "Remove devices from " + article(noun),
		Args:    checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				for _, dev := range args[1:] {
					if _, ok := h.devices[dev]; !ok {
						if _, inherited := h.inherited[dev]; inherited {
							return false, errors.New("Device from profile(s) cannot be removed from individual instance. Override device or modify profile instead")
						}
						return false, errNoDevice
					}
					delete(h.devices, dev)
				}
				return true, nil
			})
			if err == nil {
				for _, dev := range args[1:] {
					fmt.Fprintf(a.stdout, "Device %s removed from %s\n", dev, instanceArgName(args[0]))
				}
			}
			return err
		},
	}

	list := &cobra.Command{
		Use:     "list " + target,
		Aliases: []string{"ls"},
		Short:   "List the devices of " + article(noun),
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				for _, n := range sortedKeys(h.devices) {
					fmt.Fprintln(a.stdout, n)
				}
				return false, nil
			})
		},
	}

	show := &cobra.Command{
		Use:   "show " + target,
		Short: "Show the full device configuration of " + article(noun),
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				return false, a.printYAML(h.devices)
			})
		},
	}

	get := &cobra.Command{
		Use:   "get " + target + " <device> <key>",
		Short: "Get values for device configuration keys",
		Args:  checkArgs(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				dev, ok := h.devices[args[1]]
				if !ok {
					return false, errNoDevice
				}
				fmt.Fprintln(a.stdout, dev[args[2]])
				return false, nil
			})
		},
	}

	set := &cobra.Command{
		Use:   "set " + target + " <device> <key>=<value>...",
		Short: "Set device configuration keys",
		Args:  checkArgs(3, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseSetKeys(args[2:])
			if err != nil {
				return err
			}
			return edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				dev, ok := h.devices[args[1]]
				if !ok {
					// A device from a profile is overridden for this
					// instance: its copy, with the keys set.
					inherited, ok := h.inherited[args[1]]
					if !ok {
						return false, errNoDevice
					}
					dev = maps.Clone(inherited)
					h.devices[args[1]] = dev
				}
				maps.Copy(dev, keys)
				return true, nil
			})
		},
	}

	unset := &cobra.Command{
		Use:   "unset " + target + " <device> <key>",
		Short: "Unset device configuration keys",
		Args:  checkArgs(3, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				dev, ok := h.devices[args[1]]
				if !ok {
					return false, errNoDevice
				}
				delete(dev, args[2])
				return true, nil
			})
		},
	}
	cmd.AddCommand(add, remove, list, show, get, set, unset)
	if noun != "instance" {
		return cmd
	}

	override := &cobra.Command{
		Use:   "override " + target + " <device> [key=value...]",
		Short: "Copy profile inherited devices and override configuration keys",
		Args:  checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys := map[string]string{}
			if len(args) > 2 {
				var err error
				if keys, err = parseSetKeys(args[2:]); err != nil {
					return err
				}
			}
			err := edit(cmd.Context(), args[0], func(h *deviceHolder) (bool, error) {
				if _, ok := h.devices[args[1]]; ok {
					return false, errors.New("The device already exists")
				}
				inherited, ok := h.inherited[args[1]]
				if !ok {
					return false, errors.New("The profile device doesn't exist")
				}
				dev := maps.Clone(inherited)
				maps.Copy(dev, keys)
				h.devices[args[1]] = dev
				return true, nil
			})
			if err == nil {
				fmt.Fprintf(a.stdout, "Device %s overridden for %s\n", args[1], instanceArgName(args[0]))
			}
			return err
		},
	}
	cmd.AddCommand(override)
	return cmd
}

// article puts "an" or "a" before a noun, for help texts.
func article(noun string) string {
	if noun != "" && (noun[0] == 'a' || noun[0] == 'e' || noun[0] == 'i' || noun[0] == 'o' || noun[0] == 'u') {
		return "an " + noun
	}
	return "a " + noun
}
