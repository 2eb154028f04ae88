package daemon

import (
	"context"
	"log/slog"
	"os"
	"time"

	"cell/daemon/config"
	"cell/daemon/db"
	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/snapshots"
)

// envSnapshotTick is a test hook, set only by integration tests; it is not
// part of the API and nothing in production sets it. Its value is a
// duration (e.g. "1s"): the snapshot task then runs that often, and its
// clock for schedules advances one minute per run, starting from the
// minute celld started in. A "* * * * *" schedule is so due at every run
// and "0 * * * *" every 60th, exactly as in production, only faster;
// nothing else about the task changes. Snapshot dates and expiry stay on
// the real clock, so an expiry of a few seconds ("3S") is pruned a few
// seconds later.
const envSnapshotTick = "CELL_DEBUG_SNAPSHOT_TICK"

// taskClock drives a periodic background task (snapshots, images): when
// it runs, and what time it is for it. With a test tick from the
// environment the task runs once a tick and its clock advances one period
// per run; otherwise it runs once a period on the real clock.
type taskClock struct {
	period time.Duration
	// aligned tasks run on the period's boundaries (the minute, for
	// cron schedules) and see the time truncated to it; others run a
	// period after the previous run and see the time as it is.
	aligned bool
	tick    time.Duration // zero: the real clock
	virtual time.Time
}

// newTaskClock makes the clock of a task that runs every period; env names
// its test hook, what names the task in the warning that the hook is on.
func newTaskClock(period time.Duration, aligned bool, env, what string) *taskClock {
	c := &taskClock{period: period, aligned: aligned}
	if v := os.Getenv(env); v != "" {
		tick, err := time.ParseDuration(v)
		if err != nil || tick <= 0 {
			slog.Warn("ignoring "+env, "value", v, "err", err)
		} else {
			c.tick = tick
			c.virtual = c.truncate(time.Now())
			slog.Warn(what+" task on a test clock: the clock advances one period per tick", "tick", tick, "period", period)
		}
	}
	return c
}

func (c *taskClock) truncate(t time.Time) time.Time {
	if c.aligned {
		return t.Truncate(c.period)
	}
	return t
}

// now is the task's current time.
func (c *taskClock) now() time.Time {
	if c.tick > 0 {
		return c.virtual
	}
	return c.truncate(time.Now())
}

// sleep waits for the next run (or one tick, which moves the test clock on
// a period). It is false when ctx ended.
func (c *taskClock) sleep(ctx context.Context) bool {
	wait := c.tick
	if wait == 0 {
		wait = c.period
		if c.aligned {
			now := time.Now()
			wait = now.Truncate(c.period).Add(c.period).Sub(now)
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		if c.tick > 0 {
			c.virtual = c.virtual.Add(c.period)
		}
		return true
	}
}

// snapshotTask takes the scheduled snapshots and prunes expired ones,
// until ctx ends. It runs once at start (the @startup snapshots, and
// pruning what expired while celld was down) and then on every minute. A
// schedule is due when it fires in the window since the previous run, so
// a run that is late (a slow snapshot) still takes each snapshot once.
// The @startup run starts together with autostart: an instance that is
// still being started then counts as stopped (snapshots.schedule.stopped).
func (d *Daemon) snapshotTask(ctx context.Context) {
	clock := newTaskClock(time.Minute, true, envSnapshotTick, "snapshot")
	last := clock.now()
	d.snapshotRun(ctx, last, last, true)
	for clock.sleep(ctx) {
		now := clock.now()
		d.snapshotRun(ctx, last, now, false)
		last = now
	}
}

// snapshotRun is one run of the task: schedules due in (last, now], or
// the @startup ones, then expiry.
func (d *Daemon) snapshotRun(ctx context.Context, last, now time.Time, startup bool) {
	rows, err := d.db.Instances(ctx)
	if err != nil {
		if ctx.Err() == nil {
			slog.Error("snapshot task: list instances", "err", err)
		}
		return
	}
	profiles, err := d.profileMap(ctx)
	if err != nil {
		slog.Error("snapshot task: list profiles", "err", err)
		return
	}
	byID := map[int64]*instance{}
	for _, row := range rows {
		inst := expand(row, profiles)
		byID[inst.ID] = inst
		if ctx.Err() != nil {
			return
		}
		if d.snapshotDue(inst, last, now, startup) {
			d.scheduledSnapshot(ctx, inst)
		}
	}
	d.pruneExpiredSnapshots(ctx, byID)
}

// snapshotDue applies snapshots.schedule and snapshots.schedule.stopped.
func (d *Daemon) snapshotDue(inst *instance, last, now time.Time, startup bool) bool {
	spec := inst.expandedConfig["snapshots.schedule"]
	if spec == "" {
		return false
	}
	sched, err := snapshots.ParseSchedule(spec)
	if err != nil {
		// Validated when set; a profile edited under an older celld
		// could still hold a bad one.
		slog.Warn("snapshot task: bad snapshots.schedule", "instance", inst.Name, "err", err)
		return false
	}
	due := sched.Due(last, now)
	if startup {
		due = sched.Startup
	}
	if !due {
		return false
	}
	return d.runtimeState(inst.Name) != liblxc.Stopped || config.IsTrue(inst.expandedConfig["snapshots.schedule.stopped"])
}

// scheduledSnapshot takes one snapshot named by snapshots.pattern and
// expiring after snapshots.expiry, through the same operation as the API.
func (d *Daemon) scheduledSnapshot(ctx context.Context, inst *instance) {
	op, err := d.startSnapshot(ctx, inst, "", nil)
	if err != nil {
		slog.Error("scheduled snapshot", "instance", inst.Name, "err", err)
		return
	}
	if err := waitOperation(ctx, op); err != "" {
		slog.Error("scheduled snapshot", "instance", inst.Name, "err", err)
		return
	}
	slog.Info("scheduled snapshot taken", "instance", inst.Name)
}

// pruneExpiredSnapshots deletes the snapshots whose expires_at has passed.
func (d *Daemon) pruneExpiredSnapshots(ctx context.Context, byID map[int64]*instance) {
	all, err := d.db.AllSnapshots(ctx)
	if err != nil {
		if ctx.Err() == nil {
			slog.Error("snapshot task: list snapshots", "err", err)
		}
		return
	}
	now := time.Now()
	for id, list := range all {
		inst := byID[id]
		if inst == nil {
			continue
		}
		for _, s := range list {
			if s.ExpiresAt.IsZero() || s.ExpiresAt.After(now) || ctx.Err() != nil {
				continue
			}
			d.pruneSnapshot(ctx, inst, s)
		}
	}
}

func (d *Daemon) pruneSnapshot(ctx context.Context, inst *instance, s db.Snapshot) {
	op, err := d.startDeleteSnapshot(ctx, inst, s)
	if err != nil {
		slog.Error("delete expired snapshot", "instance", inst.Name, "snapshot", s.Name, "err", err)
		return
	}
	if msg := waitOperation(ctx, op); msg != "" {
		slog.Error("delete expired snapshot", "instance", inst.Name, "snapshot", s.Name, "err", msg)
		return
	}
	slog.Info("expired snapshot deleted", "instance", inst.Name, "snapshot", s.Name, "expired", s.ExpiresAt)
}

// waitOperation waits for an operation to end and returns its error
// message ("" when it succeeded), or the context's when ctx ends first.
func waitOperation(ctx context.Context, op *operations.Operation) string {
	select {
	case <-op.Done():
		return op.Get().Err
	case <-ctx.Done():
		return ctx.Err().Error()
	}
}
