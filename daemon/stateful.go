package daemon

// Stateful stop and start, and the running state of stateful snapshots:
// CRIU checkpoints kept in the instance's volume, as LXD keeps them in
// <instance>/state. A checkpoint in the volume is carried along by
// snapshots and copies like any other file of the volume.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"cell/daemon/liblxc"
)

// stateDirName is the checkpoint's directory in an instance's volume.
const stateDirName = "state"

// stateDir is where an instance's checkpoint lives.
func (d *Daemon) stateDir(inst *instance) (string, error) {
	volume, _, err := d.volumePath(inst)
	if err != nil {
		return "", err
	}
	return filepath.Join(volume, stateDirName), nil
}

// setStateful records whether the instance has a saved running state
// (the API's "stateful").
func (d *Daemon) setStateful(ctx context.Context, name string, stateful bool) error {
	row, err := d.db.Instance(ctx, name)
	if err != nil {
		return err
	}
	if row.Stateful == stateful {
		return nil
	}
	row.Stateful = stateful
	if err := d.db.UpdateInstance(ctx, row); err != nil {
		return fmt.Errorf("record stateful=%t for %q: %w", stateful, name, err)
	}
	return nil
}

// stopInstanceStateful checkpoints a running instance into its volume and
// stops it; the next start resumes it. A failed checkpoint leaves the
// instance running and nothing saved.
func (d *Daemon) stopInstanceStateful(ctx context.Context, name string) error {
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	switch d.runtimeState(name) {
	case liblxc.Running:
	case liblxc.Stopped:
		return badRequest("instance %q is not running", name)
	default:
		return badRequest("instance %q is %s: only a running instance can be stopped statefully", name, d.runtimeState(name))
	}
	dir, err := d.stateDir(inst)
	if err != nil {
		return err
	}
	// A leftover of an earlier failed attempt must not mix with this one.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear old checkpoint: %w", err)
	}
	// Recorded first, as a stop does: if celld dies during the dump the
	// instance must not be autostarted cold over its checkpoint.
	if err := d.db.SetInstanceConfig(ctx, inst.ID, map[string]string{keyLastPower: "STOPPED"}); err != nil {
		return err
	}
	if err := d.runtime.Checkpoint(ctx, name, liblxc.CheckpointOptions{Dir: dir, Stop: true}); err != nil {
		_ = os.RemoveAll(dir)
		_ = d.db.SetInstanceConfig(context.WithoutCancel(ctx), inst.ID, map[string]string{keyLastPower: inst.Config[keyLastPower]})
		if d.runtimeState(name) == liblxc.Stopped {
			// CRIU killed it on its way out: nothing left to keep.
			d.stopProxies(name, nil)
			d.stoppedNICs(context.WithoutCancel(ctx), inst)
		}
		return err
	}
	if err := d.setStateful(ctx, name, true); err != nil {
		return err
	}
	d.stopProxies(name, nil)
	d.stoppedNICs(ctx, inst)
	d.events.Lifecycle("instance-stopped", instanceURL(name), map[string]any{"stateful": true})
	return nil
}

// statefulStart is what startInstanceState does with a saved state: it
// returns the checkpoint to restore from, or "" for a cold boot, in which
// case a saved state is discarded (a cold boot changes the files the
// checkpoint's processes had open). stateful asks for the restore.
func (d *Daemon) statefulStart(ctx context.Context, inst *instance, stateful bool) (string, error) {
	dir, err := d.stateDir(inst)
	if err != nil {
		return "", err
	}
	if stateful {
		if !inst.Stateful {
			return "", badRequest("instance %q has no saved running state: start it without --stateful", inst.Name)
		}
		return dir, nil
	}
	if !inst.Stateful {
		// A checkpoint no record points to (one a copy brought along)
		// will never be used.
		if err := os.RemoveAll(dir); err != nil {
			slog.Warn("remove a stray checkpoint", "instance", inst.Name, "err", err)
		}
		return "", nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("discard the saved state of %q: %w", inst.Name, err)
	}
	return "", d.setStateful(ctx, inst.Name, false)
}

// restoreRunning restores an instance from its checkpoint. The checkpoint
// is removed only once the instance runs; after a failure it stays, for
// another try or a --stateless start.
func (d *Daemon) restoreRunning(ctx context.Context, inst *instance, dir string) error {
	if err := d.runtime.Restore(ctx, inst.Name, dir); err != nil {
		if d.runtimeState(inst.Name) != liblxc.Stopped {
			// A half-restored container must not stay up.
			_ = d.runtime.Stop(inst.Name)
		}
		return fmt.Errorf("the instance's saved state is kept (start it with --stateless to boot it afresh and discard the state): %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		slog.Warn("remove restored checkpoint", "instance", inst.Name, "err", err)
	}
	return d.setStateful(ctx, inst.Name, false)
}

// checkpointForSnapshot saves the running state of an instance into its
// volume, leaving it running, so that the snapshot taken next holds it.
// The returned function removes it from the instance's volume again.
func (d *Daemon) checkpointForSnapshot(ctx context.Context, inst *instance) (func(), error) {
	if d.runtimeState(inst.Name) != liblxc.Running {
		return nil, badRequest("instance %q is not running: a stateful snapshot saves a running state", inst.Name)
	}
	dir, err := d.stateDir(inst)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear old checkpoint: %w", err)
	}
	cleanup := func() {
		if err := os.RemoveAll(dir); err != nil {
			slog.Warn("remove snapshot checkpoint", "instance", inst.Name, "err", err)
		}
	}
	if err := d.runtime.Checkpoint(ctx, inst.Name, liblxc.CheckpointOptions{Dir: dir}); err != nil {
		cleanup()
		return nil, err
	}
	return cleanup, nil
}

// restoredSnapshotState settles the saved state after a snapshot's files
// were restored into the volume: with stateful the snapshot's checkpoint is
// the instance's saved state (the next start resumes it), otherwise any
// checkpoint the snapshot brought is dropped.
func (d *Daemon) restoredSnapshotState(ctx context.Context, inst *instance, snapStateful, stateful bool) error {
	dir, err := d.stateDir(inst)
	if err != nil {
		return err
	}
	if stateful && snapStateful {
		return d.setStateful(ctx, inst.Name, true)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("drop the snapshot's saved state: %w", err)
	}
	return d.setStateful(ctx, inst.Name, false)
}
