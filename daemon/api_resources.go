package daemon

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"cell/shared/api"
)

// getResources answers GET /1.0/resources from /proc and /sys.
func (d *Daemon) getResources(w http.ResponseWriter, r *http.Request) error {
	res := api.Resources{
		CPU:     hostCPUs(),
		Memory:  hostMemoryUse(),
		Network: hostNICs(),
		Storage: hostDisks(),
		GPU:     api.ResourcesGPU{Cards: []any{}},
		USB:     api.ResourcesUSB{Devices: []any{}},
		PCI:     api.ResourcesPCI{Devices: []any{}},
		System: api.ResourcesSystem{
			UUID: sysString("/sys/class/dmi/id/product_uuid"), Vendor: sysString("/sys/class/dmi/id/sys_vendor"),
			Product: sysString("/sys/class/dmi/id/product_name"), Type: "physical",
		},
	}
	return syncResponse(w, res)
}

// sysString reads a one-line /proc or /sys file; "" if it cannot.
func sysString(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// sysUint reads a number from a /sys file; 0 if it cannot.
func sysUint(path string) uint64 {
	n, _ := strconv.ParseUint(sysString(path), 10, 64)
	return n
}

// cpuModel reads the model and vendor names from /proc/cpuinfo.
func cpuModel() (name, vendor string) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() && (name == "" || vendor == "") {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			name = strings.TrimSpace(v)
		case "vendor_id":
			vendor = strings.TrimSpace(v)
		}
	}
	return name, vendor
}

// hostCPUs groups the logical CPUs by socket and core, from their
// topology in /sys.
func hostCPUs() api.ResourcesCPU {
	out := api.ResourcesCPU{Architecture: hostArchitecture(), Sockets: []api.ResourcesCPUSocket{}}
	name, vendor := cpuModel()
	paths, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*")
	type key struct{ socket, core uint64 }
	threads := map[key][]api.ResourcesCPUThread{}
	for _, p := range paths {
		id, err := strconv.ParseInt(strings.TrimPrefix(filepath.Base(p), "cpu"), 10, 64)
		if err != nil {
			continue
		}
		k := key{sysUint(p + "/topology/physical_package_id"), sysUint(p + "/topology/core_id")}
		// cpu0 often has no online file: it cannot be taken offline.
		online := sysString(p+"/online") != "0"
		threads[k] = append(threads[k], api.ResourcesCPUThread{ID: id, Online: online})
		out.Total++
	}
	keys := make([]key, 0, len(threads))
	for k := range threads {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if a.socket != b.socket {
			return int(a.socket) - int(b.socket)
		}
		return int(a.core) - int(b.core)
	})
	for _, k := range keys {
		if len(out.Sockets) == 0 || out.Sockets[len(out.Sockets)-1].Socket != k.socket {
			out.Sockets = append(out.Sockets, api.ResourcesCPUSocket{Name: name, Vendor: vendor, Socket: k.socket})
		}
		ts := threads[k]
		slices.SortFunc(ts, func(a, b api.ResourcesCPUThread) int { return int(a.ID - b.ID) })
		for i := range ts {
			ts[i].Thread = uint64(i)
		}
		s := &out.Sockets[len(out.Sockets)-1]
		s.Cores = append(s.Cores, api.ResourcesCPUCore{Core: k.core, Threads: ts})
	}
	return out
}

// hostMemoryUse is the host's memory: used is what is not available.
func hostMemoryUse() api.ResourcesMemory {
	info := meminfo()
	return api.ResourcesMemory{Total: info["MemTotal"], Used: info["MemTotal"] - info["MemAvailable"]}
}

// meminfo reads /proc/meminfo, in bytes.
func meminfo() map[string]uint64 {
	out := map[string]uint64{}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		out[k] = n
	}
	return out
}

// hostNICs lists the network interfaces backed by a device (physical or
// virtual hardware), not bridges, veths or other software interfaces.
func hostNICs() api.ResourcesNetwork {
	out := api.ResourcesNetwork{Cards: []api.ResourcesNetworkCard{}}
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		base := filepath.Join("/sys/class/net", e.Name())
		dev, err := filepath.EvalSymlinks(base + "/device")
		if err != nil {
			continue
		}
		card := api.ResourcesNetworkCard{Ports: []api.ResourcesNetworkCardPort{{
			ID: e.Name(), Address: sysString(base + "/address"), Protocol: "ethernet",
			LinkDetected: sysString(base+"/carrier") == "1",
		}}}
		if speed, err := strconv.ParseInt(sysString(base+"/speed"), 10, 64); err == nil && speed > 0 {
			card.Ports[0].LinkSpeed = uint64(speed)
		}
		if drv, err := os.Readlink(base + "/device/driver"); err == nil {
			card.Driver = filepath.Base(drv)
		}
		if strings.Contains(dev, "/pci") {
			// A virtio NIC sits under its PCI function: .../0000:00:03.0/virtio2.
			for p := dev; p != "/" && p != "."; p = filepath.Dir(p) {
				if b := filepath.Base(p); strings.Count(b, ":") == 2 && strings.Contains(b, ".") {
					card.PCIAddress = b
					break
				}
			}
		}
		out.Cards = append(out.Cards, card)
	}
	out.Total = uint64(len(out.Cards))
	return out
}

// hostDisks lists the block devices backed by a device (not loop, ram or
// zram devices, nor device-mapper), with their partitions.
func hostDisks() api.ResourcesStorage {
	out := api.ResourcesStorage{Disks: []api.ResourcesStorageDisk{}}
	entries, _ := os.ReadDir("/sys/class/block")
	for _, e := range entries {
		base := filepath.Join("/sys/class/block", e.Name())
		if _, err := os.Stat(base + "/device"); err != nil {
			continue
		}
		if _, err := os.Stat(base + "/partition"); err == nil {
			continue
		}
		disk := api.ResourcesStorageDisk{
			ID: e.Name(), Device: sysString(base + "/dev"), Model: sysString(base + "/device/model"),
			Type: diskType(e.Name()), ReadOnly: sysString(base+"/ro") == "1", Size: sysUint(base+"/size") * 512,
			Removable: sysString(base+"/removable") == "1", BlockSize: sysUint(base + "/queue/logical_block_size"),
			Partitions: []api.ResourcesStorageDiskPartition{},
		}
		if sysString(base+"/queue/rotational") == "1" {
			disk.RPM = 1 // spinning, speed unknown
		}
		parts, _ := filepath.Glob(base + "/" + e.Name() + "*")
		for _, p := range parts {
			n := sysUint(p + "/partition")
			if n == 0 {
				continue
			}
			disk.Partitions = append(disk.Partitions, api.ResourcesStorageDiskPartition{
				ID: filepath.Base(p), Device: sysString(p + "/dev"), ReadOnly: sysString(p+"/ro") == "1",
				Size: sysUint(p+"/size") * 512, Partition: n,
			})
		}
		out.Disks = append(out.Disks, disk)
	}
	out.Total = uint64(len(out.Disks))
	return out
}

// diskType names the bus of a disk by its kernel name, as LXD shows it.
func diskType(name string) string {
	switch {
	case strings.HasPrefix(name, "vd"):
		return "virtio"
	case strings.HasPrefix(name, "nvme"):
		return "nvme"
	case strings.HasPrefix(name, "mmcblk"):
		return "mmc"
	default:
		return "scsi"
	}
}
