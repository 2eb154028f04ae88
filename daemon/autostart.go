package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"cell/daemon/config"
	"cell/daemon/liblxc"
)

// shouldAutostart applies LXD's rule: boot.autostart=true always starts;
// when it is not set, an instance that was running when the host went
// down (volatile.last_state.power) is started again.
func shouldAutostart(inst *instance) bool {
	if v, ok := inst.expandedConfig["boot.autostart"]; ok && v != "" {
		return config.IsTrue(v)
	}
	return inst.Config[keyLastPower] == "RUNNING"
}

// autostart starts, at daemon start, the instances that should run and
// do not, highest boot.autostart.priority first, waiting
// boot.autostart.delay seconds after each. Running instances are left as
// they are: a daemon restart never restarts containers.
func (d *Daemon) autostart(ctx context.Context) {
	rows, err := d.db.Instances(ctx)
	if err != nil {
		slog.Error("autostart: list instances", "err", err)
		return
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		slog.Error("autostart: list profiles", "err", err)
		return
	}
	var todo []*instance
	for _, row := range rows {
		inst := expand(row, profiles)
		if shouldAutostart(inst) && d.runtimeState(inst.Name) == liblxc.Stopped {
			todo = append(todo, inst)
		}
	}
	priority := func(i *instance) int {
		p, _ := strconv.Atoi(i.expandedConfig["boot.autostart.priority"])
		return p
	}
	sort.SliceStable(todo, func(a, b int) bool { return priority(todo[a]) > priority(todo[b]) })
	for _, inst := range todo {
		if ctx.Err() != nil {
			return
		}
		slog.Info("autostart", "instance", inst.Name)
		if err := d.startInstance(ctx, inst.Name); err != nil {
			slog.Error("autostart failed", "instance", inst.Name, "err", err)
			continue
		}
		if delay, _ := strconv.Atoi(inst.expandedConfig["boot.autostart.delay"]); delay > 0 {
			select {
			case <-time.After(time.Duration(delay) * time.Second):
			case <-ctx.Done():
				return
			}
		}
	}
}

// StopInstances stops every running instance cleanly, in parallel, for a
// host shutdown. Their recorded power state stays RUNNING, so the next
// start of celld brings them back.
func (d *Daemon) StopInstances(ctx context.Context) error {
	rows, err := d.db.Instances(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, row := range rows {
		if d.runtimeState(row.Name) == liblxc.Stopped {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slog.Info("stopping for host shutdown", "instance", row.Name)
			if err := d.stopInstance(ctx, row.Name, false, 0, false); err != nil {
				slog.Error("stop for host shutdown", "instance", row.Name, "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

// shutdownRequested is closed when a client asked the daemon to shut down.
func (d *Daemon) ShutdownRequested() <-chan struct{} { return d.shutdownCh }

// internalShutdown serves `celld shutdown`: stop every instance, answer,
// and then let the daemon exit.
func (d *Daemon) internalShutdown(w http.ResponseWriter, r *http.Request) error {
	if err := d.StopInstances(r.Context()); err != nil {
		return err
	}
	d.shutdownOnce.Do(func() { close(d.shutdownCh) })
	return syncResponse(w, nil)
}
