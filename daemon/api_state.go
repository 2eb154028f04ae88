package daemon

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/shared/api"
)

// instanceState is the runtime state the API shows.
func (d *Daemon) instanceState(inst *instance) *api.InstanceState {
	st := d.runtime.Stats(inst.Name)
	code := statusCode(d.runtimeState(inst.Name))
	return &api.InstanceState{
		Status: code.String(), StatusCode: code, Pid: int64(st.Pid), Processes: st.Processes,
		CPU:    api.InstanceStateCPU{Usage: st.CPUNanos},
		Memory: api.InstanceStateMemory{Usage: st.MemoryBytes, UsagePeak: st.MemoryPeak},
		Disk:   map[string]api.InstanceStateDisk{}, Network: map[string]api.InstanceStateNetwork{},
	}
}

func (d *Daemon) getInstanceState(w http.ResponseWriter, r *http.Request) error {
	inst, err := d.loadInstance(r.Context(), chi.URLParam(r, "name"))
	if err != nil {
		return err
	}
	return syncResponse(w, d.instanceState(inst))
}

func (d *Daemon) putInstanceState(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	var req api.InstanceStatePut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if _, err := d.loadInstance(ctx, name); err != nil {
		return err
	}
	if req.Stateful {
		return badRequest("stateful stop and start are not supported yet")
	}
	var run func(ctx context.Context) error
	var desc string
	switch req.Action {
	case "start":
		desc, run = "Starting instance", func(ctx context.Context) error { return d.startInstance(ctx, name) }
	case "stop":
		desc, run = "Stopping instance", func(ctx context.Context) error {
			return d.stopInstance(ctx, name, req.Force, req.Timeout, true)
		}
	case "restart":
		desc, run = "Restarting instance", func(ctx context.Context) error {
			if err := d.stopInstance(ctx, name, req.Force, req.Timeout, false); err != nil {
				return err
			}
			return d.startInstance(ctx, name)
		}
	case "freeze":
		desc, run = "Freezing instance", func(ctx context.Context) error { return d.freezeInstance(name, true) }
	case "unfreeze":
		desc, run = "Unfreezing instance", func(ctx context.Context) error { return d.freezeInstance(name, false) }
	default:
		return badRequest("unknown state action %q (use start, stop, restart, freeze or unfreeze)", req.Action)
	}
	op := d.ops.Start(ctx, operations.Spec{
		Description: desc,
		Resources:   instanceResources(name),
		Run:         func(ctx context.Context, op *operations.Operation) error { return run(ctx) },
	})
	return asyncResponse(w, op)
}

func (d *Daemon) freezeInstance(name string, freeze bool) error {
	unlock := d.locks.Lock("instance/" + name)
	defer unlock()
	state := d.runtimeState(name)
	if freeze {
		if state != liblxc.Running {
			return badRequest("instance %q is not running", name)
		}
		if err := d.runtime.Freeze(name); err != nil {
			return err
		}
		d.events.Lifecycle("instance-paused", instanceURL(name), nil)
		return nil
	}
	if state != liblxc.Frozen {
		return badRequest("instance %q is not frozen", name)
	}
	if err := d.runtime.Unfreeze(name); err != nil {
		return err
	}
	d.events.Lifecycle("instance-resumed", instanceURL(name), nil)
	return nil
}
