package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"cell/client"
)

// fileTarget is a path inside an instance.
type fileTarget struct {
	c        *client.Client
	instance string
	path     string // absolute, as given (a trailing "/" kept)
}

// splitInstancePath splits "instance/path" into the instance and the
// absolute path inside it.
func splitInstancePath(s string) (instance, p string, err error) {
	instance, rest, ok := strings.Cut(s, "/")
	if !ok || instance == "" {
		return "", "", fmt.Errorf("Invalid instance path: %q (want <instance>/<path>)", s)
	}
	return instance, "/" + rest, nil
}

func (a *app) parseFileTarget(arg string) (fileTarget, error) {
	c, rest, err := a.parseOne(arg)
	if err != nil {
		return fileTarget{}, err
	}
	instance, p, err := splitInstancePath(rest)
	if err != nil {
		return fileTarget{}, err
	}
	return fileTarget{c: c, instance: instance, path: p}, nil
}

func (a *app) cmdFile() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "file",
		Short: "Manage files in instances",
	}
	cmd.AddCommand(a.cmdFilePush(), a.cmdFilePull(), a.cmdFileDelete(), a.cmdFileEdit())
	return cmd
}

// pushFlags are the flags of file push.
type pushFlags struct {
	recursive  bool
	createDirs bool
	uid, gid   int64
	mode       string
}

// owner says who owns a pushed file: the flags if given, else the local
// file's owner and permissions, as lxc does.
func (f *pushFlags) owner(info os.FileInfo) (uid, gid int64, mode os.FileMode, err error) {
	uid, gid, mode = 0, 0, info.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		uid, gid = int64(st.Uid), int64(st.Gid)
	}
	if f.uid >= 0 {
		uid = f.uid
	}
	if f.gid >= 0 {
		gid = f.gid
	}
	if f.mode != "" {
		m, perr := parseMode(f.mode)
		if perr != nil {
			return 0, 0, 0, perr
		}
		mode = m
	}
	return uid, gid, mode, nil
}

// parseMode reads an octal mode like "0644" or "755".
func parseMode(s string) (os.FileMode, error) {
	bits, err := strconv.ParseUint(s, 8, 32)
	if err != nil || bits > 0o7777 {
		return 0, fmt.Errorf("Invalid mode %q: want octal permissions like 0644", s)
	}
	m := os.FileMode(bits & 0o777)
	if bits&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if bits&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if bits&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// pushDestination is where one source lands: inside the target directory
// when the target ends with "/" or several sources are pushed.
func pushDestination(target, source string, intoDir bool) string {
	if intoDir || strings.HasSuffix(target, "/") {
		return path.Join(target, filepath.Base(source))
	}
	return path.Clean(target)
}

func (a *app) cmdFilePush() *cobra.Command {
	flags := pushFlags{}
	cmd := &cobra.Command{
		Use:   "push <source path>... [<remote>:]<instance>/<path>",
		Short: "Push files into instances",
		Example: `  c file push /etc/hosts foo/etc/hosts
     To push /etc/hosts into the instance "foo".

  c file push -r dir foo/tmp/
     To push the directory dir into /tmp/dir of "foo".

  echo hello | c file push - foo/tmp/hello
     To write standard input to a file.`,
		Args: checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := a.parseFileTarget(args[len(args)-1])
			if err != nil {
				return err
			}
			sources := args[:len(args)-1]
			intoDir := len(sources) > 1 || flags.recursive
			for _, src := range sources {
				dest := pushDestination(t.path, src, intoDir)
				if err := a.pushOne(ctx, t, src, dest, &flags); err != nil {
					return err
				}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&flags.recursive, "recursive", "r", false, "Recursively transfer files")
	fl.BoolVarP(&flags.createDirs, "create-dirs", "p", false, "Create any directories necessary")
	fl.Int64Var(&flags.uid, "uid", -1, "Set the file's uid on push")
	fl.Int64Var(&flags.gid, "gid", -1, "Set the file's gid on push")
	fl.StringVar(&flags.mode, "mode", "", "Set the file's perms on push")
	return cmd
}

// pushOne pushes one source (a file, "-" for stdin, or with -r a tree).
func (a *app) pushOne(ctx context.Context, t fileTarget, src, dest string, flags *pushFlags) error {
	if src == "-" {
		mode := os.FileMode(0o644)
		if flags.mode != "" {
			m, err := parseMode(flags.mode)
			if err != nil {
				return err
			}
			mode = m
		}
		if flags.createDirs {
			if err := mkdirAll(ctx, t, path.Dir(dest), max(flags.uid, 0), max(flags.gid, 0)); err != nil {
				return err
			}
		}
		return t.c.CreateInstanceFile(ctx, t.instance, dest, client.FileArgs{
			Content: a.stdin, UID: max(flags.uid, 0), GID: max(flags.gid, 0), Mode: mode,
		})
	}

	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if info.IsDir() && !flags.recursive {
		return fmt.Errorf("%s is a directory: use -r to push it", src)
	}
	uid, gid, _, err := flags.owner(info)
	if err != nil {
		return err
	}
	if flags.createDirs {
		if err := mkdirAll(ctx, t, path.Dir(dest), uid, gid); err != nil {
			return err
		}
	}
	if !flags.recursive {
		// A single file follows a symlink, like cp.
		if info, err = os.Stat(src); err != nil {
			return err
		}
		return a.pushFile(ctx, t, src, dest, info, flags)
	}

	return filepath.Walk(src, func(local string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, local)
		if err != nil {
			return err
		}
		remote := path.Join(dest, filepath.ToSlash(rel))
		return a.pushFile(ctx, t, local, remote, info, flags)
	})
}

// pushFile pushes one file, directory or symlink.
func (a *app) pushFile(ctx context.Context, t fileTarget, local, remote string, info os.FileInfo, flags *pushFlags) error {
	uid, gid, mode, err := flags.owner(info)
	if err != nil {
		return err
	}
	args := client.FileArgs{UID: uid, GID: gid, Mode: mode}
	switch {
	case info.IsDir():
		args.Type = client.FileTypeDirectory
	case info.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(local)
		if err != nil {
			return err
		}
		args.Type = client.FileTypeSymlink
		args.Content = strings.NewReader(target)
		args.Mode = 0
	case info.Mode().IsRegular():
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		args.Content, args.Length = f, info.Size()
		progress := a.newProgress(fmt.Sprintf("Pushing %s to %s", local, remote), info.Size())
		defer progress.done()
		args.Content = &progressReader{r: f, p: progress}
	default:
		slog.Warn("skipping special file", "path", local)
		return nil
	}
	if err := t.c.CreateInstanceFile(ctx, t.instance, remote, args); err != nil {
		return fmt.Errorf("push %s to %s: %w", local, remote, err)
	}
	return nil
}

// progressReader feeds a progress line from reads.
type progressReader struct {
	r io.Reader
	p *progress
	n int64
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.n += int64(n)
	r.p.update(r.n)
	return n, err
}

// mkdirAll creates dir and its missing parents in the instance.
func mkdirAll(ctx context.Context, t fileTarget, dir string, uid, gid int64) error {
	dir = path.Clean(dir)
	if dir == "/" {
		return nil
	}
	f, err := t.c.GetInstanceFile(ctx, t.instance, dir)
	if err == nil {
		if f.Content != nil {
			f.Content.Close()
		}
		if f.Type != client.FileTypeDirectory {
			return fmt.Errorf("%s exists and is not a directory", dir)
		}
		return nil
	}
	if !client.IsNotFound(err) {
		return err
	}
	if err := mkdirAll(ctx, t, path.Dir(dir), uid, gid); err != nil {
		return err
	}
	return t.c.CreateInstanceFile(ctx, t.instance, dir, client.FileArgs{
		Type: client.FileTypeDirectory, UID: uid, GID: gid, Mode: 0o755,
	})
}

func (a *app) cmdFilePull() *cobra.Command {
	var recursive, createDirs bool
	cmd := &cobra.Command{
		Use:   "pull [<remote>:]<instance>/<path> [[<remote>:]<instance>/<path>...] <target path>",
		Short: "Pull files from instances",
		Example: `  c file pull foo/etc/hosts .
     To pull /etc/hosts from the instance and write it to the current directory.

  c file pull foo/etc/hosts -
     To write it to standard output.`,
		Args: checkArgs(2, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dest := args[len(args)-1]
			sources := args[:len(args)-1]
			if dest == "-" {
				if recursive {
					return errors.New("Can't pull recursively to standard output")
				}
				for _, s := range sources {
					if err := a.pullToStdout(ctx, s); err != nil {
						return err
					}
				}
				return nil
			}

			destIsDir := false
			if st, err := os.Stat(dest); err == nil && st.IsDir() {
				destIsDir = true
			} else if recursive {
				// As lxc: a recursive pull always lands inside the target
				// directory, made if missing.
				if err := os.MkdirAll(dest, 0o755); err != nil {
					return err
				}
				destIsDir = true
			} else if len(sources) > 1 || strings.HasSuffix(dest, "/") {
				if !createDirs {
					return fmt.Errorf("Target %q is not a directory", dest)
				}
				if err := os.MkdirAll(dest, 0o755); err != nil {
					return err
				}
				destIsDir = true
			} else if createDirs {
				if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
					return err
				}
			}

			for _, s := range sources {
				t, err := a.parseFileTarget(s)
				if err != nil {
					return err
				}
				local := dest
				if destIsDir {
					local = filepath.Join(dest, path.Base(t.path))
				}
				if err := a.pullOne(ctx, t, t.path, local, recursive); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "Recursively transfer files")
	cmd.Flags().BoolVarP(&createDirs, "create-dirs", "p", false, "Create any directories necessary")
	return cmd
}

func (a *app) pullToStdout(ctx context.Context, arg string) error {
	t, err := a.parseFileTarget(arg)
	if err != nil {
		return err
	}
	f, err := t.c.GetInstanceFile(ctx, t.instance, t.path)
	if err != nil {
		return err
	}
	if f.Type == client.FileTypeDirectory {
		return errors.New("Can't pull a directory without --recursive")
	}
	defer f.Content.Close()
	_, err = io.Copy(a.stdout, f.Content)
	return err
}

// pullOne pulls one file, symlink or (recursively) directory to local.
func (a *app) pullOne(ctx context.Context, t fileTarget, remote, local string, recursive bool) error {
	f, err := t.c.GetInstanceFile(ctx, t.instance, remote)
	if err != nil {
		return fmt.Errorf("pull %s: %w", remote, err)
	}
	switch f.Type {
	case client.FileTypeDirectory:
		if !recursive {
			return errors.New("Can't pull a directory without --recursive")
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o755
		}
		if err := os.Mkdir(local, mode|0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		for _, entry := range f.Entries {
			if err := a.pullOne(ctx, t, path.Join(remote, entry), filepath.Join(local, entry), true); err != nil {
				return err
			}
		}
		return os.Chmod(local, mode)
	case client.FileTypeSymlink:
		defer f.Content.Close()
		target, err := io.ReadAll(f.Content)
		if err != nil {
			return err
		}
		_ = os.Remove(local)
		return os.Symlink(string(bytes.TrimRight(target, "\n")), local)
	default:
		defer f.Content.Close()
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		out, err := os.OpenFile(local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, f.Content); err != nil {
			out.Close()
			return fmt.Errorf("pull %s: %w", remote, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
		// O_CREATE applies the umask and leaves an existing file's mode.
		return os.Chmod(local, mode)
	}
}

func (a *app) cmdFileDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete [<remote>:]<instance>/<path> [[<remote>:]<instance>/<path>...]",
		Aliases: []string{"rm"},
		Short:   "Delete files in instances",
		Args:    checkArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				t, err := a.parseFileTarget(arg)
				if err != nil {
					return err
				}
				if err := t.c.DeleteInstanceFile(cmd.Context(), t.instance, t.path); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) cmdFileEdit() *cobra.Command {
	return &cobra.Command{
		Use:   "edit [<remote>:]<instance>/<path>",
		Short: "Edit files in instances",
		Long: `Edit files in instances

The file opens in $VISUAL or $EDITOR; when standard input is not a terminal
the new content is read from it instead.`,
		Args: checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			t, err := a.parseFileTarget(args[0])
			if err != nil {
				return err
			}
			// Keep the file's owner and mode; a new file gets root's 0644.
			fa := client.FileArgs{Mode: 0o644}
			var content []byte
			f, err := t.c.GetInstanceFile(ctx, t.instance, t.path)
			switch {
			case err == nil && f.Type == client.FileTypeFile:
				content, err = io.ReadAll(f.Content)
				f.Content.Close()
				if err != nil {
					return err
				}
				fa.UID, fa.GID, fa.Mode = f.UID, f.GID, f.Mode
			case err == nil:
				if f.Content != nil {
					f.Content.Close()
				}
				return fmt.Errorf("%s is a %s, not a file", t.path, f.Type)
			case !client.IsNotFound(err):
				return err
			}

			if !a.stdinIsTerminal() {
				fa.Content = a.stdin
				return t.c.CreateInstanceFile(ctx, t.instance, t.path, fa)
			}

			tmp, err := os.CreateTemp("", "cell_file_edit_*"+path.Ext(t.path))
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := tmp.Write(content); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := a.runEditor(tmp.Name()); err != nil {
				return err
			}
			edited, err := os.ReadFile(tmp.Name())
			if err != nil {
				return err
			}
			fa.Content, fa.Length = bytes.NewReader(edited), int64(len(edited))
			return t.c.CreateInstanceFile(ctx, t.instance, t.path, fa)
		},
	}
}
