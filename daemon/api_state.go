package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

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
		Disk:   map[string]api.InstanceStateDisk{}, Network: d.networkState(inst, st.Pid),
	}
}

// networkState reads the interfaces of a running instance from inside its
// network namespace, with their counters from /proc/PID/net/dev and the
// veth host names celld recorded at start.
func (d *Daemon) networkState(inst *instance, pid int) map[string]api.InstanceStateNetwork {
	out := map[string]api.InstanceStateNetwork{}
	if pid <= 0 {
		return out
	}
	hostNames := map[string]string{}
	for _, dev := range nicDevices(inst.expandedDevices) {
		name := inst.expandedDevices[dev]["name"]
		if name == "" {
			name = inst.Config[keyNICName(dev)]
		}
		hostNames[name] = inst.Config[keyNICHostName(dev)]
	}
	err := inNetNS(pid, func() error {
		ifaces, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifc := range ifaces {
			n := api.InstanceStateNetwork{Addresses: []api.InstanceStateNetworkAddress{},
				Hwaddr: ifc.HardwareAddr.String(), HostName: hostNames[ifc.Name], Mtu: ifc.MTU,
				State: "down", Type: "broadcast"}
			if ifc.Flags&net.FlagUp != 0 {
				n.State = "up"
			}
			switch {
			case ifc.Flags&net.FlagLoopback != 0:
				n.Type = "loopback"
			case ifc.Flags&net.FlagPointToPoint != 0:
				n.Type = "point-to-point"
			}
			addrs, _ := ifc.Addrs()
			for _, a := range addrs {
				ipn, ok := a.(*net.IPNet)
				if !ok {
					continue
				}
				ones, _ := ipn.Mask.Size()
				n.Addresses = append(n.Addresses, api.InstanceStateNetworkAddress{
					Family: ipFamily(ipn.IP), Address: ipn.IP.String(), Netmask: strconv.Itoa(ones), Scope: ipScope(ipn.IP)})
			}
			out[ifc.Name] = n
		}
		return nil
	})
	if err != nil {
		slog.Debug("read instance interfaces", "instance", inst.Name, "err", err)
		return out
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			name, rest, ok := strings.Cut(line, ":")
			f := strings.Fields(rest)
			n, known := out[strings.TrimSpace(name)]
			if !ok || !known || len(f) < 10 {
				continue
			}
			num := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
			n.Counters = api.InstanceStateNetworkCounters{BytesReceived: num(0), PacketsReceived: num(1),
				BytesSent: num(8), PacketsSent: num(9)}
			out[strings.TrimSpace(name)] = n
		}
	}
	return out
}

func ipFamily(ip net.IP) string {
	if ip.To4() != nil {
		return "inet"
	}
	return "inet6"
}

// ipScope names an address's scope as ip(8) and LXD do.
func ipScope(ip net.IP) string {
	switch {
	case ip.IsLoopback():
		return "local"
	case ip.IsLinkLocalUnicast():
		return "link"
	default:
		return "global"
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
	if req.Stateful && req.Action != "start" && req.Action != "stop" {
		return badRequest("only start and stop can be stateful, not %q", req.Action)
	}
	var run func(ctx context.Context) error
	var desc string
	switch req.Action {
	case "start":
		desc, run = "Starting instance", func(ctx context.Context) error { return d.startInstanceState(ctx, name, req.Stateful) }
	case "stop":
		desc, run = "Stopping instance", func(ctx context.Context) error {
			if req.Stateful {
				return d.stopInstanceStateful(ctx, name)
			}
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
