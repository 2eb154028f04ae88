package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResources: /1.0/resources tells the host's CPUs, memory, disks and
// NICs as /proc and /sys have them, through `c query` and LXD's own
// `lxc info --resources`.
func TestResources(t *testing.T) {
	d := busyboxDaemon(t)
	var res struct {
		CPU struct {
			Total   int `json:"total"`
			Sockets []struct {
				Cores []struct {
					Threads []struct {
						ID int `json:"id"`
					} `json:"threads"`
				} `json:"cores"`
			} `json:"sockets"`
		} `json:"cpu"`
		Memory struct {
			Total uint64 `json:"total"`
			Used  uint64 `json:"used"`
		} `json:"memory"`
		Storage struct {
			Disks []struct {
				ID   string `json:"id"`
				Size uint64 `json:"size"`
			} `json:"disks"`
		} `json:"storage"`
		Network struct {
			Cards []struct {
				Ports []struct {
					ID      string `json:"id"`
					Address string `json:"address"`
				} `json:"ports"`
			} `json:"cards"`
		} `json:"network"`
	}
	if err := json.Unmarshal([]byte(d.MustC("query", "/1.0/resources")), &res); err != nil {
		t.Fatal(err)
	}
	cpus, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*")
	threads := 0
	for _, s := range res.CPU.Sockets {
		for _, c := range s.Cores {
			threads += len(c.Threads)
		}
	}
	if res.CPU.Total != len(cpus) || threads != len(cpus) {
		t.Errorf("CPU total %d, threads %d; the host has %d", res.CPU.Total, threads, len(cpus))
	}
	var memKB uint64
	data, _ := os.ReadFile("/proc/meminfo")
	fmt.Sscanf(string(data), "MemTotal: %d kB", &memKB)
	if res.Memory.Total != memKB*1024 || res.Memory.Used == 0 || res.Memory.Used > res.Memory.Total {
		t.Errorf("memory %+v; MemTotal is %d kB", res.Memory, memKB)
	}
	// Every disk with a device behind it, with its size.
	blocks, _ := filepath.Glob("/sys/class/block/*/device")
	var want []string
	for _, b := range blocks {
		want = append(want, filepath.Base(filepath.Dir(b)))
	}
	var got []string
	for _, disk := range res.Storage.Disks {
		got = append(got, disk.ID)
		var sectors uint64
		data, _ := os.ReadFile("/sys/class/block/" + disk.ID + "/size")
		fmt.Sscan(string(data), &sectors)
		if disk.Size != sectors*512 {
			t.Errorf("disk %s size %d, want %d", disk.ID, disk.Size, sectors*512)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("disks %v, want %v", got, want)
	}
	// Every NIC with a device behind it, with its MAC address.
	nics, _ := filepath.Glob("/sys/class/net/*/device")
	if len(res.Network.Cards) != len(nics) {
		t.Errorf("%d network cards, the host has %d: %+v", len(res.Network.Cards), len(nics), res.Network.Cards)
	}
	for _, c := range res.Network.Cards {
		mac, _ := os.ReadFile("/sys/class/net/" + c.Ports[0].ID + "/address")
		if c.Ports[0].Address != strings.TrimSpace(string(mac)) {
			t.Errorf("NIC %s address %q, want %q", c.Ports[0].ID, c.Ports[0].Address, mac)
		}
	}

	// LXD's client reads it too.
	out, errOut, code := d.Run(nil, "lxc", "info", "--resources")
	if code != 0 || !strings.Contains(out, "CPU") || !strings.Contains(out, "Memory:") {
		t.Errorf("lxc info --resources: exit %d\n%s%s", code, out, errOut)
	}
}

// TestMetrics: /1.0/metrics shows each running instance's figures in the
// Prometheus text format, its memory total being its limit.
func TestMetrics(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "C01", map[string]string{"limits.memory": "64MiB"})
	createInstance(t, d, "C02", nil) // stopped: not shown
	out := d.MustC("query", "/1.0/metrics")
	labels := `{name="C01",project="default",type="container"}`
	for _, want := range []string{
		"# TYPE cell_cpu_seconds_total counter\n",
		"cell_memory_MemTotal_bytes" + labels + " 67108864\n",
		"cell_procs_total" + labels + " ",
		`cell_cpu_seconds_total{mode="user",name="C01",project="default",type="container"} `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `name="C02"`) {
		t.Errorf("metrics show the stopped C02:\n%s", out)
	}
	// The process count is the container's own.
	var procs float64
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "cell_procs_total"+labels+" "); ok {
			fmt.Sscan(rest, &procs)
		}
	}
	if st := instanceStateOf(t, d, "C01"); procs < 1 || st.Processes < 1 {
		t.Errorf("processes: metrics %v, state %d", procs, st.Processes)
	}
}
