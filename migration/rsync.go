package migration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// RsyncOptions are the rsync features both sides agree on (the
// rsyncFeatures of the migration header, plus what only celld knows).
type RsyncOptions struct {
	Xattrs   bool
	Delete   bool
	Compress bool
	// Hardlinks and ACLs keep hard links and POSIX ACLs. LXD's receiver
	// does not ask for them: leave them off when the peer is LXD.
	Hardlinks bool
	ACLs      bool
}

// FullRsync is what two celld use.
var FullRsync = RsyncOptions{Xattrs: true, Delete: true, Hardlinks: true, ACLs: true}

// Both sides build their rsync command lines from the same options. The
// receiver runs `rsync --server` with a command line of its own (never one
// that came over the network), as LXD's receiver does, so the sender's
// client must ask for exactly the same transfer.

// commonArgs are the options of the transfer, as long options, which the
// client and the server take alike.
func (o RsyncOptions) commonArgs() []string {
	args := []string{"--numeric-ids", "--devices", "--specials", "--partial", "--sparse"}
	if o.Hardlinks {
		args = append(args, "--hard-links")
	}
	if o.ACLs {
		args = append(args, "--acls")
	}
	if o.Xattrs {
		args = append(args, "--xattrs")
	}
	if o.Delete {
		args = append(args, "--delete")
	}
	if o.Compress {
		args = append(args, "--compress", "--compress-level=2")
	}
	return args
}

// relayShell is the "remote shell" the sending rsync client runs: it joins
// the client's connection to two FIFOs in dir that celld relays to the
// peer (LXD runs its own netcat there; rsync closes inherited descriptors,
// so a socket cannot be handed down). The remote command rsync appends as
// arguments is ignored. Like ssh once the server has exited, it ends as
// soon as the server's side has ended: the client waits for that.
func relayShell(dir string) string {
	// fd 4: a background command's stdin is /dev/null in sh.
	return fmt.Sprintf(`sh -c 'exec 2>/dev/null 4<&0; cat <&4 >%[1]s/up & cat <%[1]s/down; kill $! 2>/dev/null'`, dir)
}

// RsyncSend sends the tree under src (its contents, not src itself) over
// conn to a peer running RsyncRecv with the same options. It returns when
// the transfer is complete.
func RsyncSend(ctx context.Context, src string, conn Conn, opts RsyncOptions, p *Progress) error {
	dir, err := os.MkdirTemp("", "cell-rsync-")
	if err != nil {
		return fmt.Errorf("rsync send: %w", err)
	}
	defer os.RemoveAll(dir)
	for _, name := range []string{"up", "down"} {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o600); err != nil {
			return fmt.Errorf("rsync send: %w", err)
		}
	}
	args := append([]string{"--archive", "--rsh", relayShell(dir)}, opts.commonArgs()...)
	args = append(args, strings.TrimSuffix(src, "/")+"/", "migration:.")
	cmd := exec.CommandContext(ctx, "rsync", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rsync send: %w", err)
	}
	// The FIFOs are opened as the shell opens its ends; if rsync fails
	// before running the shell, the opens are released after it exited.
	downDone := make(chan error, 1)
	go func() {
		down, err := os.OpenFile(filepath.Join(dir, "down"), os.O_WRONLY, 0)
		if err != nil {
			downDone <- err
			return
		}
		_, err = io.Copy(down, conn)
		// The server is done: the shell ends, and with it the client.
		down.Close()
		downDone <- err
	}()
	upDone := make(chan error, 1)
	go func() {
		up, err := os.Open(filepath.Join(dir, "up"))
		if err != nil {
			upDone <- err
			return
		}
		defer up.Close()
		_, err = io.Copy(countingWriter{conn, p}, up)
		if err == nil {
			err = conn.CloseWrite()
		}
		upDone <- err
	}()
	runErr := cmd.Wait()
	if f, err := os.OpenFile(filepath.Join(dir, "up"), os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
	upErr := <-upDone
	if runErr != nil {
		if f, err := os.OpenFile(filepath.Join(dir, "down"), os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		// The peer's stream will not come: what waits for it is released
		// when the caller closes conn.
		return fmt.Errorf("rsync send %s: %w: %s", src, runErr, strings.TrimSpace(stderr.String()))
	}
	downErr := <-downDone
	return errors.Join(wrapErr("rsync send: upload", upErr), wrapErr("rsync send: download", ignorePipe(downErr)))
}

// RsyncRecv receives into dst (created if missing) the tree a peer sends
// with RsyncSend and the same options.
func RsyncRecv(ctx context.Context, dst string, conn Conn, opts RsyncOptions) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("rsync receive: %w", err)
	}
	// -logDtpre.iLsfx is the short-option block an rsync client sends for
	// --archive (LXD's receiver uses it too); the rest are the options.
	// --ignore-times: successive snapshots arrive into one tree, and a
	// file changed within the same second without changing size would
	// pass rsync's quick check and keep the previous snapshot's content.
	// Only the receiver (rsync's generator) uses it, so the sender's
	// command line, LXD's included, needs no change; the delta transfer
	// still sends only what differs.
	args := append([]string{"--server", "-logDtpre.iLsfx", "--ignore-times"}, opts.commonArgs()...)
	args = append(args, ".", dst)
	cmd := exec.CommandContext(ctx, "rsync", args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("rsync receive: %w", err)
	}
	down := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdin, conn)
		stdin.Close()
		down <- err
	}()
	_, upErr := io.Copy(conn, stdout)
	if upErr == nil {
		upErr = conn.CloseWrite()
	}
	runErr := cmd.Wait()
	downErr := <-down
	if runErr != nil {
		return fmt.Errorf("rsync receive into %s: %w: %s", dst, runErr, strings.TrimSpace(stderr.String()))
	}
	return errors.Join(wrapErr("rsync receive: upload", upErr), wrapErr("rsync receive: download", ignorePipe(downErr)))
}

func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ignorePipe drops the error of writing to a process that finished
// before reading everything (rsync exits once the transfer is done).
func ignorePipe(err error) error {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// RsyncOptionsFrom turns the rsyncFeatures of a migration header into
// options. Hard links and ACLs are not in LXD's feature list: they are
// asked for separately, when both sides are celld.
func RsyncOptionsFrom(f *RsyncFeatures, celld bool) RsyncOptions {
	o := RsyncOptions{Xattrs: f.GetXattrs(), Delete: f.GetDelete(), Compress: f.GetCompress()}
	if celld {
		o.Hardlinks, o.ACLs = true, true
	}
	return o
}
