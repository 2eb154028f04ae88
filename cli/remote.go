package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"cell/client"
)

// Remote is a server `c` knows by name.
type Remote struct {
	// Addr is "unix://" (the default socket) or "unix:///path/to/unix.socket".
	Addr string `json:"addr" yaml:"addr"`
	// Protocol is "lxd", the REST API both celld and LXD speak;
	// "simplestreams" image servers come later.
	Protocol string `json:"protocol" yaml:"protocol"`
	Public   bool   `json:"public" yaml:"public"`
	// Static remotes are built in and cannot be removed.
	Static bool `json:"-" yaml:"-"`
}

// Config is the client's configuration: its remotes and the default one.
// For now it only holds the built-in "local" remote; a config file under
// ConfigDir comes with remote management.
type Config struct {
	DefaultRemote string
	Remotes       map[string]Remote
}

// ConfigDir is $CELL_CONF, or ~/.config/cell.
func ConfigDir() string {
	if dir := os.Getenv("CELL_CONF"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "cell-config")
	}
	return filepath.Join(home, ".config", "cell")
}

// LoadConfig returns the client configuration.
func LoadConfig() (*Config, error) {
	return &Config{
		DefaultRemote: "local",
		Remotes: map[string]Remote{
			"local": {Addr: "unix://", Protocol: "lxd", Static: true},
		},
	}, nil
}

// ParseRemote splits "[remote:]name" into the remote and the rest. Without
// a remote prefix the default remote is meant. A prefix that is not a known
// remote is an error, except when it holds a "/" (then the colon belongs to
// a path, as in "c1/etc/a:b").
func (c *Config) ParseRemote(arg string) (remote, name string, err error) {
	prefix, rest, found := strings.Cut(arg, ":")
	if !found || strings.Contains(prefix, "/") {
		return c.DefaultRemote, arg, nil
	}
	if _, ok := c.Remotes[prefix]; !ok {
		return "", "", fmt.Errorf("The remote %q doesn't exist", prefix)
	}
	return prefix, rest, nil
}

// Connect opens a client for a remote.
func (c *Config) Connect(name string) (*client.Client, error) {
	r, ok := c.Remotes[name]
	if !ok {
		return nil, fmt.Errorf("The remote %q doesn't exist", name)
	}
	if path, ok := strings.CutPrefix(r.Addr, "unix://"); ok {
		return client.ConnectUnix(path), nil
	}
	return nil, fmt.Errorf("remote %q (%s): only unix socket remotes are supported for now", name, r.Addr)
}

func (a *app) cmdRemote() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "remote",
		Short: "Manage the list of remote servers",
	}
	var format string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the available remotes",
		Args:    checkArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			names := make([]string, 0, len(a.conf.Remotes))
			for name := range a.conf.Remotes {
				names = append(names, name)
			}
			sort.Strings(names)
			var rows [][]string
			for _, name := range names {
				r := a.conf.Remotes[name]
				shown := name
				if name == a.conf.DefaultRemote {
					shown += " (current)"
				}
				auth := "file access"
				rows = append(rows, []string{shown, r.Addr, r.Protocol, auth, yesNo(r.Public), yesNo(r.Static), "NO"})
			}
			header := []string{"NAME", "URL", "PROTOCOL", "AUTH TYPE", "PUBLIC", "STATIC", "GLOBAL"}
			return renderTable(a.stdout, format, header, rows, a.conf.Remotes)
		},
	}
	list.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")

	getDefault := &cobra.Command{
		Use:   "get-default",
		Short: "Show the default remote",
		Args:  checkArgs(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(a.stdout, a.conf.DefaultRemote)
			return nil
		},
	}
	cmd.AddCommand(list, getDefault)
	return cmd
}

// yesNo renders a boolean as lxc's tables do.
func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}
