package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/term"
)

// stdinIsTerminal reports whether `c` reads from a person rather than from
// a pipe or a file.
func (a *app) stdinIsTerminal() bool {
	f, ok := a.stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// editorCommand is $VISUAL, $EDITOR or vi, split into program and args.
func editorCommand() []string {
	for _, env := range []string{"VISUAL", "EDITOR"} {
		if v := strings.Fields(os.Getenv(env)); len(v) > 0 {
			return v
		}
	}
	return []string{"vi"}
}

// runEditor opens path in the user's editor, attached to the terminal.
func (a *app) runEditor(path string) error {
	argv := append(editorCommand(), path)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %s: %w", argv[0], err)
	}
	return nil
}

// editYAML lets the user change current as YAML and hands the result to
// apply. When stdin is not a terminal the new YAML is read from it;
// otherwise the editor opens, and reopens after a failed apply, as lxc does.
func (a *app) editYAML(current any, apply func([]byte) error) error {
	if !a.stdinIsTerminal() {
		data, err := io.ReadAll(a.stdin)
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
		return apply(data)
	}

	data, err := marshalYAML(current)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp("", "cell_editor_*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	in := bufio.NewReader(a.stdin)
	for {
		if err := a.runEditor(f.Name()); err != nil {
			return err
		}
		edited, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		if bytes.Equal(edited, data) {
			return nil // nothing changed
		}
		err = apply(edited)
		if err == nil {
			return nil
		}
		fmt.Fprintf(a.stderr, "Config parsing error: %v\n", err)
		fmt.Fprintln(a.stdout, "Press enter to open the editor again or ctrl+c to abort change")
		if _, err := in.ReadString('\n'); err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
	}
}
