// Package cli implements `c`, Cell's command line client. Its verbs, flags
// and output follow LXD's `lxc` client, because its users already know them.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"cell/client"
)

// Version is the client's version, printed by `c version`.
var Version = "0.1.0"

// app holds what every command needs: the streams, the global flags and the
// connections made so far.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	flagDebug   bool
	flagVerbose bool
	flagQuiet   bool

	conf    *Config
	clients map[string]*client.Client
}

// exitError ends `c` with a given status without printing anything more
// (as when `c exec` passes on the command's exit code).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs `c` with its arguments (without the program name) and returns
// the process exit status.
func Main(ctx context.Context, args []string) int {
	a := &app{
		stdin:   os.Stdin,
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		clients: map[string]*client.Client{},
	}
	return a.run(ctx, args)
}

func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	var execErr *execError
	if errors.As(err, &execErr) {
		fmt.Fprintf(a.stderr, "Error: %v\n", execErr.err)
		return execErr.status
	}
	fmt.Fprintf(a.stderr, "Error: %v\n", err)
	return 1
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "c",
		Short:         "Command line client for Cell",
		Long:          "Command line client for Cell, a manager of system containers.\n\nAll of Cell's features can be driven through the commands below.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       Version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.setupLogging()
			conf, err := LoadConfig()
			if err != nil {
				return err
			}
			a.conf = conf
			return nil
		},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true

	pf := root.PersistentFlags()
	pf.BoolVar(&a.flagDebug, "debug", false, "Show all debug messages")
	pf.BoolVarP(&a.flagVerbose, "verbose", "v", false, "Show all information messages")
	pf.BoolVarP(&a.flagQuiet, "quiet", "q", false, "Don't show progress information")

	root.AddCommand(
		a.cmdLaunch(), a.cmdInit(),
		a.cmdStart(), a.cmdStop(), a.cmdRestart(), a.cmdPause(), a.cmdResume(),
		a.cmdDelete(), a.cmdRename(), a.cmdMove(), a.cmdCopy(), a.cmdSnapshot(), a.cmdRestore(),
		a.cmdList(), a.cmdInfo(), a.cmdExec(), a.cmdFile(),
		a.cmdImage(), a.cmdPublish(), a.cmdConfig(), a.cmdProfile(), a.cmdStorage(), a.cmdNetwork(),
		a.cmdVersion(), a.cmdRemote(), a.cmdOperation(), a.cmdQuery(), a.cmdMonitor(), a.cmdDiff(),
		a.cmdExport(), a.cmdImport(),
	)
	return root
}

// setupLogging sends log/slog output to stderr at the level the global
// flags ask for; by default only warnings show.
func (a *app) setupLogging() {
	level := slog.LevelWarn
	switch {
	case a.flagDebug:
		level = slog.LevelDebug
	case a.flagVerbose:
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})))
}

// client returns the connection to a remote, made once.
func (a *app) client(remote string) (*client.Client, error) {
	if c, ok := a.clients[remote]; ok {
		return c, nil
	}
	c, err := a.conf.Connect(remote)
	if err != nil {
		return nil, err
	}
	a.clients[remote] = c
	return c, nil
}

// remoteArg reads the optional "[remote:]" argument of list-like commands
// (args holds at most one); without it the default remote is meant.
func (a *app) remoteArg(args []string) (string, error) {
	if len(args) == 0 {
		return a.conf.DefaultRemote, nil
	}
	r, _, err := a.conf.ParseRemote(args[0])
	return r, err
}

// remoteClient connects to the remote named by the optional "[remote:]"
// argument.
func (a *app) remoteClient(args []string) (*client.Client, error) {
	remote, err := a.remoteArg(args)
	if err != nil {
		return nil, err
	}
	return a.client(remote)
}

// parseOne splits "[remote:]name" and connects to the remote.
func (a *app) parseOne(arg string) (*client.Client, string, error) {
	remote, name, err := a.conf.ParseRemote(arg)
	if err != nil {
		return nil, "", err
	}
	c, err := a.client(remote)
	if err != nil {
		return nil, "", err
	}
	return c, name, nil
}

// errInvalidArgs is LXD's answer to a wrong number of arguments.
var errInvalidArgs = errors.New("Invalid number of arguments")

// checkArgs validates the argument count like lxc does: no arguments at
// all for a command that needs some prints its help and succeeds; any
// other wrong count prints the help and fails.
func checkArgs(minArgs, maxArgs int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= minArgs && (maxArgs < 0 || len(args) <= maxArgs) {
			return nil
		}
		_ = cmd.Help()
		if len(args) == 0 {
			return &exitError{code: 0}
		}
		return errInvalidArgs
	}
}
