package migration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// btrfs send/receive and zfs send/recv: one stream per subvolume or
// snapshot, in order, each after the first sent as the difference from
// the one before it. The receiver is told how many streams come (from
// the migration header's snapshot list).

// sendCommand runs a command that writes one stream and sends it.
func sendCommand(ctx context.Context, conn Conn, p *Progress, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	sendErr := sendStream(conn, out, p)
	if sendErr != nil {
		// The peer is gone: do not wait for a sender blocked on its pipe.
		_ = cmd.Process.Kill()
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	if sendErr != nil {
		return fmt.Errorf("%s: send: %w", strings.Join(cmd.Args, " "), sendErr)
	}
	return nil
}

// recvCommand runs a command that reads one stream from conn.
func recvCommand(ctx context.Context, conn Conn, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	_, copyErr := io.Copy(in, conn)
	in.Close()
	if err := cmd.Wait(); err != nil {
		if copyErr == nil {
			// The stream may not be over: read the rest, so that the
			// next stream starts where it should.
			_, _ = io.Copy(io.Discard, conn)
		}
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(output.String()))
	}
	if copyErr != nil {
		return fmt.Errorf("%s: receive: %w", strings.Join(cmd.Args, " "), copyErr)
	}
	return nil
}

// BtrfsSend sends read-only subvolumes (snapshots first, oldest first, and
// last a read-only snapshot of the instance itself), each but the first
// incrementally from the one before. parent, if not "", is a subvolume the
// peer already has (a refresh): the first one is sent from it.
func BtrfsSend(ctx context.Context, conn Conn, subvolumes []string, parent string, p *Progress) error {
	for _, sv := range subvolumes {
		args := []string{"send"}
		if parent != "" {
			args = append(args, "-p", parent)
		}
		args = append(args, sv)
		if err := sendCommand(ctx, conn, p, "btrfs", args...); err != nil {
			return err
		}
		parent = sv
	}
	return nil
}

// BtrfsRecv receives count subvolumes sent by BtrfsSend into dir, and
// returns their paths in order (each named as on the sender).
func BtrfsRecv(ctx context.Context, conn Conn, dir string, count int) ([]string, error) {
	var got []string
	for i := 0; i < count; i++ {
		if err := recvCommand(ctx, conn, "btrfs", "receive", dir); err != nil {
			return got, err
		}
		name, err := newestSubvolume(dir, got)
		if err != nil {
			return got, err
		}
		got = append(got, name)
	}
	return got, nil
}

// newestSubvolume finds the entry of dir that is not in known: the
// subvolume btrfs receive just made.
func newestSubvolume(dir string, known []string) (string, error) {
	entries, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		return "", err
	}
	seen := map[string]bool{}
	for _, k := range known {
		seen[k] = true
	}
	for _, e := range entries {
		if !seen[e] {
			return e, nil
		}
	}
	return "", fmt.Errorf("btrfs receive into %s made no subvolume", dir)
}

// ZfsSend sends the snapshots (full names, dataset@snap, oldest first) of
// one dataset, each but the first incrementally from the one before. from,
// if not "", is a snapshot the peer already has (a refresh).
func ZfsSend(ctx context.Context, conn Conn, snapshots []string, from string, p *Progress) error {
	for _, snap := range snapshots {
		args := []string{"send"}
		if from != "" {
			args = append(args, "-i", from)
		}
		args = append(args, snap)
		if err := sendCommand(ctx, conn, p, "zfs", args...); err != nil {
			return err
		}
		from = snap
	}
	return nil
}

// ZfsRecv receives count snapshot streams sent by ZfsSend into dataset
// (created by the first full stream; rolled forward by the others).
func ZfsRecv(ctx context.Context, conn Conn, dataset string, count int) error {
	for i := 0; i < count; i++ {
		if err := recvCommand(ctx, conn, "zfs", "recv", "-F", dataset); err != nil {
			return err
		}
	}
	return nil
}
