package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"

	"cell/client"
	"cell/shared/api"
	"cell/shared/tlsutil"
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
	if !strings.HasPrefix(r.Addr, "https://") {
		return nil, fmt.Errorf("remote %q (%s): the address must be unix:// or https://", name, r.Addr)
	}
	serverCert, err := os.ReadFile(ServerCertPath(name))
	if err != nil {
		return nil, fmt.Errorf("remote %q: no pinned server certificate (%w): remove it and add it again with `c remote add`", name, err)
	}
	certPEM, keyPEM, err := clientKeyPair(os.Stderr)
	if err != nil {
		return nil, err
	}
	cl, err := client.ConnectHTTPS(r.Addr, certPEM, keyPEM, serverCert)
	if err != nil {
		return nil, fmt.Errorf("remote %q: %w", name, err)
	}
	cl.SetRemoteName(name)
	return cl, nil
}

// ServerCertPath is where a remote's server certificate is pinned, as in
// lxc: servercerts/NAME.crt in the configuration directory.
func ServerCertPath(remote string) string {
	return filepath.Join(ConfigDir(), "servercerts", remote+".crt")
}

// clientKeyPair returns the client's certificate and key (PEM), generating
// them on first use like lxc does.
func clientKeyPair(stderr io.Writer) (certPEM, keyPEM []byte, err error) {
	certPath, keyPath := filepath.Join(ConfigDir(), "client.crt"), filepath.Join(ConfigDir(), "client.key")
	if !tlsutil.Exists(certPath) {
		fmt.Fprintln(stderr, "Generating a client certificate. This may take a minute...")
	}
	if _, _, err := tlsutil.KeyPair(certPath, keyPath, true); err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	if certPEM, err = os.ReadFile(certPath); err == nil {
		keyPEM, err = os.ReadFile(keyPath)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("client certificate: %w", err)
	}
	return certPEM, keyPEM, nil
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
		if strings.HasPrefix(addr, "/") {
			return "unix://" + addr, nil
		}
		return httpsURL(addr)
	}
	return "", fmt.Errorf("Invalid protocol %q: use simplestreams or lxd", protocol)
}

// httpsURL completes the address of a server over HTTPS as lxc does:
// "host", "host:port" or "https://host[:port]", port 8443 by default.
func httpsURL(addr string) (string, error) {
	rest := addr
	if scheme, r, ok := strings.Cut(addr, "://"); ok {
		if scheme != "https" {
			return "", fmt.Errorf("Invalid URL scheme %q in %q: use https:// (or unix:// for a local socket)", scheme, addr)
		}
		rest = r
	}
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || strings.ContainsAny(rest, "/?# ") {
		return "", fmt.Errorf("Invalid address %q: want [https://]host[:port]", addr)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]"), "8443"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("Invalid port %q in %q", port, addr)
	}
	return "https://" + net.JoinHostPort(host, port), nil
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
	var protocol, authType, password, token string
	var public, acceptCert bool
	cmd := &cobra.Command{
		Use:   "add <remote> [<URL>|<token>]",
		Short: "Add new remote servers",
		Example: `  c remote add mirror https://my.mirror.example/ --protocol simplestreams
      Add an image server

  c remote add host2 https://10.0.0.2:8443 --token TOKEN
      Add another Cell (or LXD) server with a token from its "c config trust add"

  c remote add host2 TOKEN
      The same: the token holds the server's addresses`,
		Args: checkArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, addr := args[0], args[0]
			if len(args) > 1 {
				addr = args[1]
			}
			if err := validRemoteName(name); err != nil {
				return err
			}
			if _, ok := a.conf.Remotes[name]; ok {
				return fmt.Errorf("Remote %s exists as <%s>", name, a.conf.Remotes[name].Addr)
			}
			if protocol == "lxd" && !public {
				if tok, err := api.DecodeCertificateAddToken(addr); err == nil {
					return a.addRemoteFromToken(cmd.Context(), name, addr, tok)
				}
			}
			addr, err := checkRemoteURL(addr, protocol)
			if err != nil {
				return err
			}
			r := Remote{Addr: addr, Protocol: protocol, Public: public, AuthType: authType}
			if protocol == "simplestreams" {
				r.Public, r.AuthType = true, ""
			}
			if protocol == "lxd" && strings.HasPrefix(addr, "https://") {
				return a.addHTTPSRemote(cmd.Context(), name, r, httpsTrust{password: password, token: token, acceptCert: acceptCert})
			}
			a.conf.Remotes[name] = r
			return a.conf.Save()
		},
	}
	cmd.Flags().StringVar(&protocol, "protocol", "lxd", "Server protocol (lxd or simplestreams)")
	cmd.Flags().StringVar(&authType, "auth-type", "", "Server authentication type (tls)")
	cmd.Flags().BoolVar(&public, "public", false, "Public image server")
	cmd.Flags().BoolVar(&acceptCert, "accept-certificate", false, "Accept certificate")
	cmd.Flags().StringVar(&password, "password", "", "Remote admin password")
	cmd.Flags().StringVar(&token, "token", "", "Remote trust token")
	return cmd
}

// httpsTrust is how `c remote add` gets the server to trust this client.
type httpsTrust struct {
	password, token string
	acceptCert      bool
	// fingerprint, from a token, is the server certificate expected (no
	// need to ask the user then).
	fingerprint string
}

// addRemoteFromToken adds a remote from a token alone: the token names the
// server's addresses and its certificate's fingerprint.
func (a *app) addRemoteFromToken(ctx context.Context, name, raw string, tok *api.CertificateAddToken) error {
	if len(tok.Addresses) == 0 {
		return errors.New("the token lists no server address: give the URL too (c remote add NAME URL --token TOKEN)")
	}
	var errs []error
	for _, addr := range tok.Addresses {
		u, err := httpsURL(addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = a.addHTTPSRemote(ctx, name, Remote{Addr: u, Protocol: "lxd"}, httpsTrust{token: raw, fingerprint: tok.Fingerprint})
		if err == nil {
			return nil
		}
		var unreachable *unreachableError
		if !errors.As(err, &unreachable) {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("no address of the token answered: %w", errors.Join(errs...))
}

type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// addHTTPSRemote pins the server's certificate (after the user accepted
// its fingerprint, or it matched the token's), gets the server to trust
// this client (password or token, asking for one when needed), checks that
// it does, and only then records the remote. A failure leaves neither the
// remote nor its pinned certificate behind.
func (a *app) addHTTPSRemote(ctx context.Context, name string, r Remote, trust httpsTrust) (err error) {
	if _, _, err := clientKeyPair(a.stderr); err != nil {
		return err
	}
	cert, err := tlsutil.FetchCertificate(ctx, strings.TrimPrefix(r.Addr, "https://"))
	if err != nil {
		return &unreachableError{fmt.Errorf("Unavailable remote server: %w", err)}
	}
	fp := tlsutil.Fingerprint(cert)
	if trust.fingerprint == "" && trust.token != "" {
		// --token with a URL: the token still says which server it is for.
		if tok, err := api.DecodeCertificateAddToken(trust.token); err == nil {
			trust.fingerprint = tok.Fingerprint
		}
	}
	switch {
	case trust.fingerprint != "":
		if trust.fingerprint != fp {
			return fmt.Errorf("Certificate fingerprint mismatch between certificate token and server %q: the token says %s, the server presents %s", r.Addr, trust.fingerprint, fp)
		}
	case !trust.acceptCert:
		fmt.Fprintf(a.stdout, "Certificate fingerprint: %s\n", fp)
		fmt.Fprint(a.stdout, "ok (y/n/[fingerprint])? ")
		line, err := readLine(a.stdin)
		if err != nil {
			return err
		}
		if line != fp {
			if line == "" || strings.ToLower(line[:1]) == "n" {
				return errors.New("Server certificate NACKed by user")
			} else if strings.ToLower(line[:1]) != "y" {
				return errors.New("Please type 'y', 'n' or the fingerprint")
			}
		}
	}
	certPath := ServerCertPath(name)
	if err := os.MkdirAll(filepath.Dir(certPath), 0o750); err != nil {
		return fmt.Errorf("Could not create server cert dir: %w", err)
	}
	if err := os.WriteFile(certPath, tlsutil.EncodeCertPEM(cert), 0o644); err != nil {
		return fmt.Errorf("Could not write server cert file %q: %w", certPath, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(certPath)
			delete(a.conf.Remotes, name)
			delete(a.clients, name)
		}
	}()

	if r.AuthType == "" {
		r.AuthType = "tls"
	}
	a.conf.Remotes[name] = r
	c, err := a.conf.Connect(name)
	if err != nil {
		return err
	}
	srv, _, err := c.GetServer(ctx)
	if err != nil {
		return err
	}
	if srv.Auth != "trusted" {
		password := trust.password
		if password == "" {
			password = trust.token
		}
		if password == "" {
			fmt.Fprintf(a.stdout, "Admin password (or token) for %s: ", name)
			if password, err = readSecret(a.stdin); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
		}
		// LXD 5.0 servers take a token where the password goes; so does
		// celld.
		if err := c.TrustMe(ctx, password, ""); err != nil {
			return err
		}
		if srv, _, err = c.GetServer(ctx); err != nil {
			return err
		}
		if srv.Auth != "trusted" {
			return errors.New("Server doesn't trust us after authentication")
		}
		fmt.Fprintln(a.stdout, "Client certificate now trusted by server:", name)
	}
	return a.conf.Save()
}

// readLine reads one line of an answer, without its newline.
func readLine(in io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if errors.Is(err, io.EOF) {
			if b.Len() == 0 {
				return "", errors.New("no answer: standard input is closed")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("read answer: %w", err)
		}
	}
	return strings.TrimSpace(b.String()), nil
}

// readSecret reads a password without echoing it when stdin is a terminal.
func readSecret(in io.Reader) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		pw, err := term.ReadPassword(int(f.Fd()))
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(pw), nil
	}
	return readLine(in)
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
			if err := a.conf.Save(); err != nil {
				return err
			}
			if err := os.Remove(ServerCertPath(args[0])); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the pinned certificate: %w", err)
			}
			return nil
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
			if err := os.Rename(ServerCertPath(args[0]), ServerCertPath(args[1])); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("rename the pinned certificate: %w", err)
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
