package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"cell/client"
	"cell/shared/api"
)

type execFlags struct {
	env          []string
	cwd          string
	user, group  uint32
	forceTTY     bool
	forceNoTTY   bool
	mode         string
	disableStdin bool
}

func (a *app) cmdExec() *cobra.Command {
	var flags execFlags
	cmd := &cobra.Command{
		Use:   "exec [<remote>:]<instance> [flags] [--] <command line>",
		Short: "Execute commands in instances",
		Long: `Execute commands in instances

The command is run directly using exec, so there is no shell and shell
patterns (variables, file redirects, ...) won't be understood. If you need a
shell environment, start one: c exec c1 -- sh -c "..."

Mode defaults to non-interactive, interactive mode is selected if both
stdin and stdout are terminals (stderr is ignored).

The exit status of c is the command's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				_ = cmd.Help()
				return &exitError{code: 0}
			}
			// Flags may also follow the instance name, up to the command
			// (or "--"): parse them there too.
			fs := cmd.Flags()
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			command := fs.Args()
			if len(command) == 0 {
				return errInvalidArgs
			}
			return a.exec(cmd.Context(), args[0], command, &flags)
		},
	}
	// The instance's command line keeps its own flags.
	cmd.Flags().SetInterspersed(false)
	fl := cmd.Flags()
	fl.StringArrayVarP(&flags.env, "env", "e", nil, "Environment variable to set (e.g. HOME=/home/foo)")
	fl.StringVar(&flags.cwd, "cwd", "", "Directory to run the command in (default /root)")
	fl.Uint32Var(&flags.user, "user", 0, "User ID to run the command as")
	fl.Uint32Var(&flags.group, "group", 0, "Group ID to run the command as")
	fl.BoolVarP(&flags.forceTTY, "force-interactive", "t", false, "Force pseudo-terminal allocation")
	fl.BoolVarP(&flags.forceNoTTY, "force-noninteractive", "T", false, "Disable pseudo-terminal allocation")
	fl.StringVar(&flags.mode, "mode", "auto", "Override the terminal mode (auto, interactive or non-interactive)")
	fl.BoolVarP(&flags.disableStdin, "disable-stdin", "n", false, "Disable stdin (reads from /dev/null)")
	return cmd
}

// fdOf returns the descriptor behind a stream, or -1.
func fdOf(v any) int {
	if f, ok := v.(*os.File); ok {
		return int(f.Fd())
	}
	return -1
}

func isTerminal(v any) bool {
	fd := fdOf(v)
	return fd >= 0 && term.IsTerminal(fd)
}

// execInteractive decides between a terminal and plain pipes, as lxc does.
func execInteractive(mode string, forceTTY, forceNoTTY, stdinTTY, stdoutTTY bool) (bool, error) {
	if forceTTY && forceNoTTY {
		return false, fmt.Errorf("You can't pass -t and -T at the same time")
	}
	switch mode {
	case "auto", "":
	case "interactive":
		forceTTY = true
	case "non-interactive":
		forceNoTTY = true
	default:
		return false, fmt.Errorf("Invalid --mode %q: want auto, interactive or non-interactive", mode)
	}
	switch {
	case forceTTY:
		return true, nil
	case forceNoTTY:
		return false, nil
	}
	return stdinTTY && stdoutTTY, nil
}

// execExitStatus maps the end of an exec to c's exit status and the error
// to print (nil for none). The command's code passes through; a code the
// process cannot carry (outside 0-255) becomes 255 so that it never reads
// as success. A failed exec that still has a code (127 for "Command not
// found") prints the error and exits with that code, as lxc does; any
// other failure exits 1.
func execExitStatus(code int, err error) (int, error) {
	if code < 0 {
		if err == nil {
			return 0, nil
		}
		return 1, err
	}
	if code > 255 {
		code = 255
	}
	return code, err
}

func (a *app) exec(ctx context.Context, instanceArg string, command []string, flags *execFlags) error {
	c, name, err := a.parseOne(instanceArg)
	if err != nil {
		return err
	}
	interactive, err := execInteractive(flags.mode, flags.forceTTY, flags.forceNoTTY, isTerminal(a.stdin), isTerminal(a.stdout))
	if err != nil {
		return err
	}

	env := map[string]string{}
	if t := os.Getenv("TERM"); t != "" {
		env["TERM"] = t
	}
	for _, kv := range flags.env {
		k, v, err := parseKeyValue(kv)
		if err != nil {
			return err
		}
		env[k] = v
	}

	req := api.InstanceExecPost{
		Command:          command,
		WaitForWebsocket: true,
		Interactive:      interactive,
		Environment:      env,
		User:             flags.user,
		Group:            flags.group,
		Cwd:              flags.cwd,
	}
	if interactive {
		if w, h, err := term.GetSize(fdOf(a.stdout)); err == nil {
			req.Width, req.Height = w, h
		}
	}

	stdin := a.stdin
	if flags.disableStdin {
		stdin = nil
	}
	// A terminal in raw mode hands every key, ctrl-c included, to the
	// command.
	if interactive && isTerminal(a.stdin) {
		old, err := term.MakeRaw(fdOf(a.stdin))
		if err != nil {
			return fmt.Errorf("set the terminal to raw mode: %w", err)
		}
		defer func() { _ = term.Restore(fdOf(a.stdin), old) }()
	}

	e, err := c.ExecInstance(ctx, name, req, client.ExecIO{Stdin: stdin, Stdout: a.stdout, Stderr: a.stderr})
	if err != nil {
		return err
	}
	stop := a.forwardSignals(e, interactive)
	code, err := e.Wait(ctx)
	stop()

	status, err := execExitStatus(code, err)
	if err != nil {
		// Print now: the terminal is restored by the deferred call before
		// the process exits, but the message must not go out raw.
		return &execError{status: status, err: err}
	}
	if status != 0 {
		return &exitError{code: status}
	}
	return nil
}

// execError is a failed exec that exits with a given status after printing
// its message.
type execError struct {
	status int
	err    error
}

func (e *execError) Error() string { return e.err.Error() }
func (e *execError) Unwrap() error { return e.err }

// forwardedSignals are passed on to the command over the control socket.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTSTP, syscall.SIGTTIN,
	syscall.SIGTTOU, syscall.SIGCONT, syscall.SIGABRT,
}

// forwardSignals sends the terminal's size on SIGWINCH (interactive) and
// passes signals `c` receives to the command. It returns a function that
// stops it.
func (a *app) forwardSignals(e *client.Exec, interactive bool) func() {
	ch := make(chan os.Signal, 8)
	sigs := forwardedSignals
	if interactive {
		sigs = append(sigs, syscall.SIGWINCH)
	}
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				var err error
				if sig == syscall.SIGWINCH {
					if w, h, serr := term.GetSize(fdOf(a.stdout)); serr == nil {
						err = e.Resize(w, h)
					}
				} else {
					err = e.Signal(int(sig.(syscall.Signal)))
				}
				if err != nil {
					slog.Debug("exec control message failed", "signal", sig, "err", err)
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
