package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/client"
	"cell/shared/api"
)

func (a *app) cmdProfile() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Manage profiles",
	}
	cmd.AddCommand(
		a.cmdProfileList(), profileObject.showCmd(a), a.cmdProfileCreate(), a.cmdProfileCopy(),
		profileObject.editCmd(a), profileObject.deleteCmd(a), profileObject.renameCmd(a),
		a.cmdProfileAdd(), a.cmdProfileRemove(), a.cmdProfileAssign(),
		profileObject.getCmd(a), profileObject.setCmd(a, "  c profile set web limits.memory=512MiB"), profileObject.unsetCmd(a), a.cmdProfileDevice(),
	)
	return cmd
}

func (a *app) cmdProfileList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:]",
		Aliases: []string{"ls"},
		Short:   "List profiles",
		Args:    checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			profiles, err := c.GetProfiles(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, p := range profiles {
				rows = append(rows, []string{p.Name, p.Description, strconv.Itoa(len(p.UsedBy))})
			}
			sortRows(rows)
			return renderTable(a.stdout, format, []string{"NAME", "DESCRIPTION", "USED BY"}, rows, profiles)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdProfileCreate() *cobra.Command {
	var description string
	cmd := &cobra.Command{
		Use:   "create [<remote>:]<profile>",
		Short: "Create profiles",
		Example: `  c profile create p1
  c profile create p1 < config.yaml
      Create a profile with the configuration from config.yaml`,
		Args: checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			req := api.ProfilesPost{Name: name}
			if !a.stdinIsTerminal() {
				data, err := io.ReadAll(a.stdin)
				if err != nil {
					return err
				}
				if err := yaml.Unmarshal(data, &req.ProfilePut); err != nil {
					return fmt.Errorf("parse profile from stdin: %w", err)
				}
			}
			if description != "" {
				req.Description = description
			}
			if err := c.CreateProfile(cmd.Context(), req); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Profile %s created\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&description, "description", "", "Profile description")
	return cmd
}

func (a *app) cmdProfileCopy() *cobra.Command {
	return &cobra.Command{
		Use:     "copy [<remote>:]<profile> [<remote>:]<profile>",
		Aliases: []string{"cp"},
		Short:   "Copy profiles",
		Args:    checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			src, srcName, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			dst, dstName, err := a.parseOne(args[1])
			if err != nil {
				return err
			}
			if dstName == "" {
				dstName = srcName
			}
			p, _, err := src.GetProfile(ctx, srcName)
			if err != nil {
				return err
			}
			return dst.CreateProfile(ctx, api.ProfilesPost{Name: dstName, ProfilePut: p.ProfilePut})
		},
	}
}

// editProfiles changes an instance's profile list with fn and saves it.
func (a *app) editProfiles(ctx context.Context, arg string, fn func([]string) ([]string, error)) (string, error) {
	c, name, err := a.parseOne(arg)
	if err != nil {
		return "", err
	}
	inst, etag, err := c.GetInstance(ctx, name)
	if err != nil {
		return "", err
	}
	profiles, err := fn(inst.Profiles)
	if err != nil {
		return "", err
	}
	inst.Profiles = profiles
	return name, a.putInstance(ctx, c, name, inst.InstancePut, etag)
}

func (a *app) cmdProfileAdd() *cobra.Command {
	return &cobra.Command{
		Use:   "add [<remote>:]<instance> <profile>",
		Short: "Add profiles to instances",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.editProfiles(cmd.Context(), args[0], func(p []string) ([]string, error) {
				if slices.Contains(p, args[1]) {
					return nil, fmt.Errorf("Profile %s is already applied", args[1])
				}
				return append(p, args[1]), nil
			})
			if err == nil && !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Profile %s added to %s\n", args[1], name)
			}
			return err
		},
	}
}

func (a *app) cmdProfileRemove() *cobra.Command {
	return &cobra.Command{
		Use:   "remove [<remote>:]<instance> <profile>",
		Short: "Remove profiles from instances",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.editProfiles(cmd.Context(), args[0], func(p []string) ([]string, error) {
				i := slices.Index(p, args[1])
				if i < 0 {
					return nil, fmt.Errorf("Profile %s isn't currently applied to %s", args[1], instanceArgName(args[0]))
				}
				return slices.Delete(p, i, i+1), nil
			})
			if err == nil && !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Profile %s removed from %s\n", args[1], name)
			}
			return err
		},
	}
}

func (a *app) cmdProfileAssign() *cobra.Command {
	return &cobra.Command{
		Use:   "assign [<remote>:]<instance> <profiles>",
		Short: "Assign sets of profiles to instances",
		Example: `  c profile assign foo default,bar
      Set the profiles for "foo" to "default" and "bar".

  c profile assign foo ""
      Remove all profile from "foo"`,
		Args: checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			profiles := []string{}
			if args[1] != "" {
				profiles = strings.Split(args[1], ",")
			}
			name, err := a.editProfiles(cmd.Context(), args[0], func([]string) ([]string, error) {
				return profiles, nil
			})
			if err != nil || a.flagQuiet {
				return err
			}
			if len(profiles) == 0 {
				fmt.Fprintf(a.stdout, "Profiles removed from %s\n", name)
			} else {
				fmt.Fprintf(a.stdout, "Profiles %s applied to %s\n", args[1], name)
			}
			return nil
		},
	}
}

// cmdProfileDevice is `c profile device ...` on a profile's devices.
func (a *app) cmdProfileDevice() *cobra.Command {
	return a.deviceCommands("profile", func(ctx context.Context, arg string) (*deviceHolder, error) {
		c, name, err := a.parseOne(arg)
		if err != nil {
			return nil, err
		}
		p, etag, err := c.GetProfile(ctx, name)
		if err != nil {
			return nil, err
		}
		h := &deviceHolder{devices: p.Devices}
		h.save = func(ctx context.Context) error {
			p.Devices = h.devices
			return c.UpdateProfile(ctx, name, p.ProfilePut, etag)
		}
		return h, nil
	})
}

// profileObject gives profiles the show, edit, get, set and unset commands.
var profileObject = configObject[*api.Profile, api.ProfilePut]{
	noun: "profile", arg: "<profile>",
	get:      (*client.Client).GetProfile,
	writable: func(p *api.Profile) api.ProfilePut { return p.ProfilePut },
	fields:   func(p *api.ProfilePut) (*map[string]string, *string) { return &p.Config, &p.Description },
	update:   (*client.Client).UpdateProfile,
	remove:   (*client.Client).DeleteProfile,
	rename:   (*client.Client).RenameProfile,
}
