package daemon

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"cell/daemon/liblxc"
)

// metricHelp is the HELP and TYPE of every metric celld exports; they
// follow LXD's lxd_* metrics, renamed cell_*.
var metricHelp = []struct{ name, typ, help string }{
	{"cell_cpu_seconds_total", "counter", "The total number of CPU time used in seconds."},
	{"cell_memory_MemTotal_bytes", "gauge", "The amount of memory the instance may use (its limit, or the host's memory)."},
	{"cell_memory_MemFree_bytes", "gauge", "The amount of free memory left to the instance."},
	{"cell_memory_RSS_bytes", "gauge", "The amount of anonymous and swap cache memory."},
	{"cell_memory_Cached_bytes", "gauge", "The amount of page cache memory."},
	{"cell_memory_OOM_kills_total", "counter", "The number of out of memory kills."},
	{"cell_procs_total", "gauge", "The number of running processes."},
	{"cell_disk_read_bytes_total", "counter", "The total number of bytes read."},
	{"cell_disk_written_bytes_total", "counter", "The total number of bytes written."},
	{"cell_network_receive_bytes_total", "counter", "The amount of received bytes on a given interface."},
	{"cell_network_receive_packets_total", "counter", "The amount of received packets on a given interface."},
	{"cell_network_transmit_bytes_total", "counter", "The amount of transmitted bytes on a given interface."},
	{"cell_network_transmit_packets_total", "counter", "The amount of transmitted packets on a given interface."},
}

// sample is one value of a metric with its labels (besides the instance's).
type sample struct {
	metric string
	labels string
	value  float64
}

// getMetrics answers GET /1.0/metrics in the Prometheus text format, with
// the figures of every running instance.
func (d *Daemon) getMetrics(w http.ResponseWriter, r *http.Request) error {
	rows, err := d.db.Instances(r.Context())
	if err != nil {
		return err
	}
	byMetric := map[string][]string{}
	for _, row := range rows {
		if d.runtimeState(row.Name) != liblxc.Running {
			continue
		}
		base := fmt.Sprintf(`name=%q,project="default",type="container"`, row.Name)
		for _, s := range d.instanceMetrics(row.Name) {
			labels := base
			if s.labels != "" {
				labels = s.labels + "," + base
			}
			byMetric[s.metric] = append(byMetric[s.metric],
				fmt.Sprintf("%s{%s} %s", s.metric, labels, strconv.FormatFloat(s.value, 'f', -1, 64)))
		}
	}
	var b bytes.Buffer
	for _, m := range metricHelp {
		lines := byMetric[m.name]
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.typ)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, err = w.Write(b.Bytes())
	return err
}

// instanceMetrics reads one running container's cgroup and network
// counters.
func (d *Daemon) instanceMetrics(name string) []sample {
	st := d.runtime.Stats(name)
	cg := func(key string) map[string]float64 { return keyValues(d.runtime.CgroupItem(name, key)) }
	var out []sample
	add := func(metric, labels string, v float64) { out = append(out, sample{metric, labels, v}) }

	var user, system float64
	var memLimit, oom float64
	memStat := cg("memory.stat")
	rss, cache := memStat["rss"], memStat["cache"]
	if liblxc.CgroupV2() {
		cpu := cg("cpu.stat")
		user, system = cpu["user_usec"]/1e6, cpu["system_usec"]/1e6
		memLimit, _ = strconv.ParseFloat(d.runtime.CgroupItem(name, "memory.max"), 64)
		oom = cg("memory.events")["oom_kill"]
		rss, cache = memStat["anon"], memStat["file"]
	} else {
		// cpuacct.stat counts in USER_HZ, 100 a second on Linux.
		cpu := cg("cpuacct.stat")
		user, system = cpu["user"]/100, cpu["system"]/100
		memLimit, _ = strconv.ParseFloat(d.runtime.CgroupItem(name, "memory.limit_in_bytes"), 64)
		oom = cg("memory.oom_control")["oom_kill"]
	}
	add("cell_cpu_seconds_total", `mode="user"`, user)
	add("cell_cpu_seconds_total", `mode="system"`, system)
	if host := float64(hostMemory()); memLimit <= 0 || memLimit > host {
		memLimit = host
	}
	add("cell_memory_MemTotal_bytes", "", memLimit)
	add("cell_memory_MemFree_bytes", "", max(0, memLimit-float64(st.MemoryBytes)))
	add("cell_memory_RSS_bytes", "", rss)
	add("cell_memory_Cached_bytes", "", cache)
	add("cell_memory_OOM_kills_total", "", oom)
	add("cell_procs_total", "", float64(st.Processes))
	for dev, io := range d.diskIO(name) {
		add("cell_disk_read_bytes_total", fmt.Sprintf("device=%q", dev), io[0])
		add("cell_disk_written_bytes_total", fmt.Sprintf("device=%q", dev), io[1])
	}
	if st.Pid > 0 {
		for _, n := range netDev(st.Pid) {
			l := fmt.Sprintf("device=%q", n.name)
			add("cell_network_receive_bytes_total", l, n.rxBytes)
			add("cell_network_receive_packets_total", l, n.rxPackets)
			add("cell_network_transmit_bytes_total", l, n.txBytes)
			add("cell_network_transmit_packets_total", l, n.txPackets)
		}
	}
	return out
}

// keyValues reads "key value" lines (memory.stat, cpu.stat...).
func keyValues(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// diskIO returns bytes read and written per block device name.
func (d *Daemon) diskIO(name string) map[string][2]float64 {
	out := map[string][2]float64{}
	devName := func(majmin string) string {
		if p, err := filepath.EvalSymlinks("/sys/dev/block/" + majmin); err == nil {
			return filepath.Base(p)
		}
		return majmin
	}
	if liblxc.CgroupV2() {
		// io.stat: "8:0 rbytes=1 wbytes=2 rios=3 ..."
		for _, line := range strings.Split(d.runtime.CgroupItem(name, "io.stat"), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			var v [2]float64
			for _, kv := range f[1:] {
				k, val, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseFloat(val, 64)
				switch k {
				case "rbytes":
					v[0] = n
				case "wbytes":
					v[1] = n
				}
			}
			out[devName(f[0])] = v
		}
		return out
	}
	// blkio.throttle.io_service_bytes: "8:0 Read 1234" ... "Total 5678".
	for _, line := range strings.Split(d.runtime.CgroupItem(name, "blkio.throttle.io_service_bytes"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseFloat(f[2], 64)
		v := out[devName(f[0])]
		switch f[1] {
		case "Read":
			v[0] = n
		case "Write":
			v[1] = n
		default:
			continue
		}
		out[devName(f[0])] = v
	}
	return out
}

// netCounters are one interface's counters from /proc/PID/net/dev.
type netCounters struct {
	name                                   string
	rxBytes, rxPackets, txBytes, txPackets float64
}

// netDev reads the counters of the interfaces in the network namespace
// of process pid (the container's), loopback left out.
func netDev(pid int) []netCounters {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil
	}
	var out []netCounters
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if !ok || name == "lo" || len(f) < 10 {
			continue
		}
		num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
		out = append(out, netCounters{name, num(0), num(1), num(8), num(9)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
