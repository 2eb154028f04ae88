package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"cell/client"
)

// Remote is a server `c` knows by name.
type Remote struct {
	// Addr is "unix://" (the default socket), "unix:///path/to/unix.socket"
	// or an http(s) URL.
	Addr string `json:"addr" yaml:"addr"`
	// Protocol is "lxd", the REST API both celld and LXD speak, or
	// "simplestreams" for image servers.
	Protocol string `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	AuthType string `json:"auth_type,omitempty" yaml:"auth_type,omitempty"`
	Public   bool   `json:"public" yaml:"public"`
	// Static remotes are built in and cannot be changed or removed.
	Static bool `json:"-" yaml:"-"`
}

// Config is the client's configuration: its remotes and the default one,
// kept in config.yml under ConfigDir in the shape of lxc's config.yml.
type Config struct {
	DefaultRemote string            `yaml:"default-remote"`
	Remotes       map[string]Remote `yaml:"remotes"`
	Aliases       map[string]string `yaml:"aliases,omitempty"`
}

// staticRemotes are always there and cannot be changed (as in lxc).
var staticRemotes = map[string]Remote{
	"local":        {Addr: "unix://", Protocol: "lxd", AuthType: "file access", Static: true},
	"ubuntu":       {Addr: "https://cloud-images.ubuntu.com/releases", Protocol: "simplestreams", Public: true, Static: true},
	"ubuntu-daily": {Addr: "https://cloud-images.ubuntu.com/daily", Protocol: "simplestreams", Public: true, Static: true},
}

// defaultRemotes are there until the user changes the configuration.
var defaultRemotes = map[string]Remote{
	"images": {Addr: "https://images.linuxcontainers.org", Protocol: "simplestreams", Public: true},
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

// ConfigPath is the configuration file.
func ConfigPath() string { return filepath.Join(ConfigDir(), "config.yml") }

// LoadConfig reads the client configuration; without a file it is the
// built-in one.
func LoadConfig() (*Config, error) {
	conf := &Config{DefaultRemote: "local", Remotes: map[string]Remote{}}
	data, err := os.ReadFile(ConfigPath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for name, r := range defaultRemotes {
			conf.Remotes[name] = r
		}
	case err != nil:
		return nil, fmt.Errorf("read client configuration: %w", err)
	default:
		if err := yaml.Unmarshal(data, conf); err != nil {
			return nil, fmt.Errorf("parse client configuration %s: %w", ConfigPath(), err)
		}
		if conf.Remotes == nil {
			conf.Remotes = map[string]Remote{}
		}
		for name, r := range conf.Remotes {
			if r.Protocol == "" {
				r.Protocol = "lxd"
			}
			conf.Remotes[name] = r
		}
		if conf.DefaultRemote == "" {
			conf.DefaultRemote = "local"
		}
	}
	for name, r := range staticRemotes {
		conf.Remotes[name] = r
	}
	return conf, nil
}

// Save writes the configuration file atomically (static remotes are not
// written: they are always there).
func (c *Config) Save() error {
	out := Config{DefaultRemote: c.DefaultRemote, Remotes: map[string]Remote{}, Aliases: c.Aliases}
	for name, r := range c.Remotes {
		if !r.Static {
			out.Remotes[name] = r
		}
	}
	data, err := yaml.Marshal(out)
	if err != nil {
		return fmt.Errorf("encode client configuration: %w", err)
	}
	dir := ConfigDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".config.yml-*")
	if err != nil {
		return fmt.Errorf("write client configuration: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write client configuration: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write client configuration: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write client configuration: %w", err)
	}
	if err := os.Rename(f.Name(), ConfigPath()); err != nil {
		return fmt.Errorf("write client configuration: %w", err)
	}
	return nil
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

// IsImageServer tells whether a remote is a simplestreams image server.
func (c *Config) IsImageServer(name string) bool {
	return c.Remotes[name].Protocol == "simplestreams"
}

// Connect opens a client for a remote.
func (c *Config) Connect(name string) (*client.Client, error) {
	r, ok := c.Remotes[name]
	if !ok {
		return nil, fmt.Errorf("The remote %q doesn't exist", name)
	}
	if r.Protocol == "simplestreams" {
		return nil, fmt.Errorf("remote %q (%s) is a simplestreams image server: it only serves images", name, r.Addr)
	}
	if path, ok := strings.CutPrefix(r.Addr, "unix://"); ok {
		return client.ConnectUnix(path), nil
	}
	return nil, fmt.Errorf("remote %q (%s): only unix socket remotes are supported for now", name, r.Addr)
}

// validRemoteName refuses names that cannot be written before a colon.
func validRemoteName(name string) error {
	if name == "" || strings.ContainsAny(name, ":/ \t\n") {
		return fmt.Errorf("Invalid remote name %q: it must be non-empty, without colons, slashes or spaces", name)
	}
	return nil
}

// checkRemoteURL validates a remote's address for its protocol.
func checkRemoteURL(addr, protocol string) (string, error) {
	switch protocol {
	case "simplestreams":
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", fmt.Errorf("Invalid URL %q for a simplestreams remote: want https://host[/path] (or http://)", addr)
		}
		return strings.TrimRight(addr, "/"), nil
	case "lxd":
		if strings.HasPrefix(addr, "unix://") {
			return addr, nil
		}
		return "", fmt.Errorf("remotes of protocol lxd over the network (another celld or LXD over HTTPS) are not supported yet: add image servers with --protocol simplestreams, or a local socket as unix:///path")
	}
	return "", fmt.Errorf("Invalid protocol %q: use simplestreams or lxd", protocol)
}

// modifiable returns a remote the user may change.
func (c *Config) modifiable(name string) (Remote, error) {
	r, ok := c.Remotes[name]
	if !ok {
		return r, fmt.Errorf("The remote %q doesn't exist", name)
	}
	if r.Static {
		return r, fmt.Errorf("Remote %s is static and cannot be modified", name)
	}
	return r, nil
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
				auth := r.AuthType
				if r.Protocol == "simplestreams" {
					auth = "none"
				} else if auth == "" {
					auth = "tls"
				}
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
	cmd.AddCommand(list, getDefault, a.cmdRemoteAdd(), a.cmdRemoteRemove(), a.cmdRemoteRename(),
		a.cmdRemoteSetURL(), a.cmdRemoteSwitch())
	return cmd
}

func (a *app) cmdRemoteAdd() *cobra.Command {
	var protocol, authType string
	var public bool
	cmd := &cobra.Command{
		Use:   "add <remote> <URL>",
		Short: "Add new remote servers",
		Example: `  c remote add mirror https://my.mirror.example/ --protocol simplestreams
      Add an image server`,
		Args: checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, addr := args[0], args[1]
			if err := validRemoteName(name); err != nil {
				return err
			}
			if _, ok := a.conf.Remotes[name]; ok {
				return fmt.Errorf("Remote %s exists as <%s>", name, a.conf.Remotes[name].Addr)
			}
			addr, err := checkRemoteURL(addr, protocol)
			if err != nil {
				return err
			}
			r := Remote{Addr: addr, Protocol: protocol, Public: public, AuthType: authType}
			if protocol == "simplestreams" {
				r.Public, r.AuthType = true, ""
			}
			a.conf.Remotes[name] = r
			return a.conf.Save()
		},
	}
	cmd.Flags().StringVar(&protocol, "protocol", "lxd", "Server protocol (lxd or simplestreams)")
	cmd.Flags().StringVar(&authType, "auth-type", "", "Server authentication type (tls)")
	cmd.Flags().BoolVar(&public, "public", false, "Public image server")
	return cmd
}

func (a *app) cmdRemoteRemove() *cobra.Command {
	return &cobra.Command{
		Use:     "remove <remote>",
		Aliases: []string{"rm"},
		Short:   "Remove remotes",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.conf.modifiable(args[0]); err != nil {
				return err
			}
			if args[0] == a.conf.DefaultRemote {
				return errors.New("Can't remove the default remote")
			}
			delete(a.conf.Remotes, args[0])
			return a.conf.Save()
		},
	}
}

func (a *app) cmdRemoteRename() *cobra.Command {
	return &cobra.Command{
		Use:   "rename <remote> <new-name>",
		Short: "Rename remotes",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.conf.modifiable(args[0])
			if err != nil {
				return err
			}
			if err := validRemoteName(args[1]); err != nil {
				return err
			}
			if _, ok := a.conf.Remotes[args[1]]; ok {
				return fmt.Errorf("Remote %s already exists", args[1])
			}
			delete(a.conf.Remotes, args[0])
			a.conf.Remotes[args[1]] = r
			if a.conf.DefaultRemote == args[0] {
				a.conf.DefaultRemote = args[1]
			}
			return a.conf.Save()
		},
	}
}

func (a *app) cmdRemoteSetURL() *cobra.Command {
	return &cobra.Command{
		Use:   "set-url <remote> <URL>",
		Short: "Set the URL for the remote",
		Args:  checkArgs(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.conf.modifiable(args[0])
			if err != nil {
				return err
			}
			addr, err := checkRemoteURL(args[1], r.Protocol)
			if err != nil {
				return err
			}
			r.Addr = addr
			a.conf.Remotes[args[0]] = r
			return a.conf.Save()
		},
	}
}

func (a *app) cmdRemoteSwitch() *cobra.Command {
	return &cobra.Command{
		Use:   "switch <remote>",
		Short: "Switch the default remote",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, ok := a.conf.Remotes[args[0]]
			if !ok {
				return fmt.Errorf("The remote %q doesn't exist", args[0])
			}
			if r.Protocol == "simplestreams" {
				return fmt.Errorf("Remote %s is a simplestreams image server: it cannot be the default remote", args[0])
			}
			a.conf.DefaultRemote = args[0]
			return a.conf.Save()
		},
	}
}

// yesNo renders a boolean as lxc's tables do.
func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}
