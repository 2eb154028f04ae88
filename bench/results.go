package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// workload describes one row of the report.
type workload struct {
	key   string
	label string
	unit  string // "ms" or "MiB"
	// target is the goal for celld/LXD (lower is better); 0: none.
	target float64
	// floorKey names the floor measurement the row is compared with.
	floorKey    string
	floorTarget float64
}

func workloads() []workload {
	n, mb := *flagInstances, *flagFileMB
	out := []workload{
		{key: "launch", label: "launch (create+start, API)", unit: "ms", target: 0.7},
		{key: "start", label: "start (API)", unit: "ms", floorKey: "start", floorTarget: 1.3},
		{key: "stop", label: "stop, clean (API)", unit: "ms"},
		{key: "delete", label: "delete (API)", unit: "ms"},
		// The CLI figure contains the client's own cost (see the CLI round
		// trip row), which the floor does not: its celld/floor is shown
		// without a target; the API row is the one held to 1.3x.
		{key: "exec_cli", label: "exec true (lxc exec)", unit: "ms", target: 0.5, floorKey: "exec"},
		{key: "exec_api", label: "exec true (API, no websocket)", unit: "ms", target: 0.5, floorKey: "exec", floorTarget: 1.3},
		{key: "cli_query", label: "CLI round trip (lxc query /1.0)", unit: "ms"},
		{key: "list_cli", label: fmt.Sprintf("list %d (lxc list --format csv)", n), unit: "ms", target: 0.5},
		{key: "list_api", label: fmt.Sprintf("list %d (API recursion=2)", n), unit: "ms", target: 0.5},
		// Higher is better here: requests per second.
		{key: "https_rps", label: fmt.Sprintf("HTTPS GET instances?recursion=1, %d instances (%d clients)", n, *flagHTTPSClients), unit: "req/s"},
		{key: "push", label: fmt.Sprintf("file push %d MB (lxc file)", mb), unit: "ms", target: 0.8},
		{key: "pull", label: fmt.Sprintf("file pull %d MB (lxc file)", mb), unit: "ms", target: 0.8},
		{key: "rss_idle0", label: "daemon RSS, idle, 0 instances", unit: "MiB", target: 0.5},
		{key: "rss_idle_n", label: fmt.Sprintf("daemon RSS, idle, %d running", n), unit: "MiB", target: 0.5},
		{key: "rss_after", label: "daemon RSS, 0 instances, after the runs", unit: "MiB"},
		{key: "parallel", label: fmt.Sprintf("%d parallel launches, wall time (dir)", *flagParallel), unit: "ms", target: 0.5},
	}
	data := fmt.Sprintf("%d MiB", *flagDataMB)
	for _, d := range []string{"btrfs", "zfs"} {
		t := func(v float64) float64 {
			if d == "btrfs" {
				return v
			}
			return 0 // LXD here has no ZFS: celld alone
		}
		out = append(out,
			workload{key: "launch_" + d, label: "launch (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "snapshot_" + d, label: "snapshot, empty (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "snapshot_" + d + "_data", label: "snapshot, " + data + " (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "restore_" + d, label: "restore, empty (" + d + ")", unit: "ms", target: t(0.3)},
			workload{key: "restore_" + d + "_data", label: "restore, " + data + " (" + d + ")", unit: "ms", target: t(0.3)},
			workload{key: "copy_" + d, label: "copy, empty (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "copy_" + d + "_data", label: "copy, " + data + " (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "delete_" + d, label: "delete, empty (" + d + ")", unit: "ms", target: t(0.25)},
			workload{key: "delete_" + d + "_data", label: "delete, " + data + " (" + d + ")", unit: "ms", target: t(0.25)},
		)
	}
	return out
}

type machine struct {
	CPU              string `json:"cpu_model"`
	Cores            int    `json:"cores"`
	MemoryBytes      int64  `json:"memory_bytes"`
	Kernel           string `json:"kernel"`
	LXDVersion       string `json:"lxd_version"`
	LXDServerVersion string `json:"lxd_server_version"`
	LiblxcVersion    string `json:"liblxc_version"`
	CelldVersion     string `json:"celld_version"`
	Commit           string `json:"commit"`
	Go               string `json:"go"`
}

type results struct {
	Machine    machine
	Date       string
	Rounds     int
	Iterations int
	Instances  int
	FileMB     int
	// samples[key][who]: who is "celld", "lxd" or "floor".
	samples map[string]map[string][]float64
}

func newResults() *results { return &results{samples: map[string]map[string][]float64{}} }

func (r *results) add(key, who string, v float64) {
	if r.samples[key] == nil {
		r.samples[key] = map[string][]float64{}
	}
	r.samples[key][who] = append(r.samples[key][who], v)
}

func (r *results) any() bool { return len(r.samples) > 0 }

type stats struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	N       int       `json:"n"`
	Samples []float64 `json:"samples"`
}

func summarize(v []float64) *stats {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &stats{Median: round3(med), Min: round3(s[0]), Max: round3(s[len(s)-1]), N: len(s), Samples: roundAll(v)}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func roundAll(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = round3(x)
	}
	return out
}

func ratio(a, b *stats) *float64 {
	if a == nil || b == nil || b.Median == 0 {
		return nil
	}
	r := round3(a.Median / b.Median)
	return &r
}

type row struct {
	Name        string   `json:"name"`
	Label       string   `json:"label"`
	Unit        string   `json:"unit"`
	Celld       *stats   `json:"celld"`
	LXD         *stats   `json:"lxd"`
	Ratio       *float64 `json:"ratio_celld_lxd"`
	Target      *float64 `json:"target_ratio,omitempty"`
	Floor       *stats   `json:"floor,omitempty"`
	FloorRatio  *float64 `json:"ratio_celld_floor,omitempty"`
	FloorTarget *float64 `json:"target_floor_ratio,omitempty"`
}

func (r *results) rows() []row {
	var out []row
	for _, w := range workloads() {
		s := r.samples[w.key]
		if s == nil {
			continue
		}
		rw := row{Name: w.key, Label: w.label, Unit: w.unit, Celld: summarize(s["celld"]), LXD: summarize(s["lxd"])}
		rw.Ratio = ratio(rw.Celld, rw.LXD)
		if w.target > 0 {
			t := w.target
			rw.Target = &t
		}
		if w.floorKey != "" {
			rw.Floor = summarize(r.samples[w.floorKey]["floor"])
			rw.FloorRatio = ratio(rw.Celld, rw.Floor)
			if rw.Floor != nil && w.floorTarget > 0 {
				t := w.floorTarget
				rw.FloorTarget = &t
			}
		}
		out = append(out, rw)
	}
	return out
}

func fmtVal(s *stats, unit string) string {
	if s == nil {
		return "-"
	}
	if unit == "ms" && s.Median >= 1000 {
		return fmt.Sprintf("%.2f s", s.Median/1000)
	}
	return fmt.Sprintf("%.1f %s", s.Median, unit)
}

func fmtRatio(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *r)
}

func fmtTarget(r, target *float64) string {
	if r == nil || target == nil {
		return ""
	}
	if *r <= *target {
		return fmt.Sprintf("<=%g ok", *target)
	}
	return fmt.Sprintf("<=%g MISS", *target)
}

func (r *results) printTable(w io.Writer) {
	fmt.Fprintf(w, "\ncelld vs LXD %s: medians over %d rounds (per round: %d samples; clean stop, push/pull and storage 1, list %d); %s, %d cores, kernel %s\n\n",
		r.Machine.LXDVersion, r.Rounds, r.Iterations, *flagListIters, r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel)
	table := [][]string{
		{"workload", "celld", "LXD", "celld/LXD", "target", "floor", "celld/floor", "target"},
	}
	for _, rw := range r.rows() {
		table = append(table, []string{rw.Label, fmtVal(rw.Celld, rw.Unit), fmtVal(rw.LXD, rw.Unit),
			fmtRatio(rw.Ratio), fmtTarget(rw.Ratio, rw.Target), fmtVal(rw.Floor, rw.Unit),
			fmtRatio(rw.FloorRatio), fmtTarget(rw.FloorRatio, rw.FloorTarget)})
	}
	widths := make([]int, len(table[0]))
	for _, line := range table {
		for i, cell := range line {
			widths[i] = max(widths[i], len(cell))
		}
	}
	for n, line := range table {
		var b strings.Builder
		for i, cell := range line {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], cell)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], cell)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
		if n == 0 {
			total := len(widths) * 2
			for _, x := range widths {
				total += x
			}
			fmt.Fprintln(w, strings.Repeat("-", total-2))
		}
	}
	fmt.Fprintln(w, strings.TrimSpace(`
target: the goal for the ratio (lower is better); "ok" when met, "MISS" when not.
floor: liblxc's own lxc-start (daemonized, returns when RUNNING) and lxc-attach -- true
on the same busybox rootfs with the lxc config celld renders; no daemon involved.
CLI round trip: the lxc client's own start-up and one GET, a cost every CLI figure contains.
btrfs/zfs: pools on a loop file; snapshot, restore, copy (instance only) and delete (of the
copy) on stopped containers, empty and with random data written in first; zfs is celld alone.`))
}

func (r *results) writeJSON(path string) error {
	doc := map[string]any{
		"machine":    r.Machine,
		"date":       r.Date,
		"rounds":     r.Rounds,
		"iterations": r.Iterations,
		"instances":  r.Instances,
		"file_mb":    r.FileMB,
		"workloads":  r.rows(),
		"notes": []string{
			"times in ms, memory in MiB; ratios are celld/LXD of the medians (lower is better), except https_rps (requests per second: higher is better)",
			"CLI figures use LXD's lxc client against both daemons (LXD_SOCKET); API figures a Go HTTP client over each unix socket",
			"floor: lxc-start / lxc-attach on a prepared busybox rootfs with celld's lxc config, no daemon",
			"RSS: VmRSS of the daemon process only (not the per-container [lxc monitor] processes)",
			"btrfs/zfs: loop-file pools of " + *flagPoolSize + "; snapshot, restore, copy (instance only) and delete (of the copy) on stopped containers, empty and with " + strconv.Itoa(*flagDataMB) + " MiB of random data; zfs (zfs-fuse) is celld alone, LXD 5.0.2 here has no ZFS",
		},
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
