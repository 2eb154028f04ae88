package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) cmdDiff() *cobra.Command {
	return &cobra.Command{
		Use:   "diff [<remote>:]<instance> [<snapshot>]",
		Short: "Show the files changed in an instance since its image or a snapshot",
		Long: `Show the files changed in an instance's filesystem since its image (or
since one of its snapshots), one a line, as docker diff prints them:
A for added, C for changed, D for deleted.`,
		Example: `  c diff c1
      Files changed since c1's image.

  c diff c1 snap0
      Files changed since snapshot snap0.`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			snap := ""
			if len(args) == 2 {
				snap = args[1]
			}
			changes, err := c.GetInstanceDiff(cmd.Context(), name, snap)
			if err != nil {
				return err
			}
			for _, ch := range changes {
				fmt.Fprintf(a.stdout, "%s %s\n", ch.Kind, ch.Path)
			}
			return nil
		},
	}
}
