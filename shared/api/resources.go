package api

// Resources is GET /1.0/resources: what the host has.
type Resources struct {
	CPU     ResourcesCPU     `json:"cpu" yaml:"cpu"`
	Memory  ResourcesMemory  `json:"memory" yaml:"memory"`
	GPU     ResourcesGPU     `json:"gpu" yaml:"gpu"`
	Network ResourcesNetwork `json:"network" yaml:"network"`
	Storage ResourcesStorage `json:"storage" yaml:"storage"`
	USB     ResourcesUSB     `json:"usb" yaml:"usb"`
	PCI     ResourcesPCI     `json:"pci" yaml:"pci"`
	System  ResourcesSystem  `json:"system" yaml:"system"`
}

// ResourcesCPU is the host's processors.
type ResourcesCPU struct {
	Architecture string               `json:"architecture" yaml:"architecture"`
	Sockets      []ResourcesCPUSocket `json:"sockets" yaml:"sockets"`
	Total        uint64               `json:"total" yaml:"total"`
}

// ResourcesCPUSocket is one CPU package.
type ResourcesCPUSocket struct {
	Name   string             `json:"name,omitempty" yaml:"name,omitempty"`
	Vendor string             `json:"vendor,omitempty" yaml:"vendor,omitempty"`
	Socket uint64             `json:"socket" yaml:"socket"`
	Cores  []ResourcesCPUCore `json:"cores" yaml:"cores"`
}

// ResourcesCPUCore is one core of a socket.
type ResourcesCPUCore struct {
	Core    uint64               `json:"core" yaml:"core"`
	Die     uint64               `json:"die" yaml:"die"`
	Threads []ResourcesCPUThread `json:"threads" yaml:"threads"`
}

// ResourcesCPUThread is one hardware thread (a logical CPU).
type ResourcesCPUThread struct {
	ID       int64  `json:"id" yaml:"id"`
	NUMANode uint64 `json:"numa_node" yaml:"numa_node"`
	Thread   uint64 `json:"thread" yaml:"thread"`
	Online   bool   `json:"online" yaml:"online"`
	Isolated bool   `json:"isolated" yaml:"isolated"`
}

// ResourcesMemory is the host's memory, in bytes.
type ResourcesMemory struct {
	Used  uint64 `json:"used" yaml:"used"`
	Total uint64 `json:"total" yaml:"total"`
}

// ResourcesGPU lists GPUs (celld reports none).
type ResourcesGPU struct {
	Cards []any  `json:"cards" yaml:"cards"`
	Total uint64 `json:"total" yaml:"total"`
}

// ResourcesNetwork is the host's physical network cards.
type ResourcesNetwork struct {
	Cards []ResourcesNetworkCard `json:"cards" yaml:"cards"`
	Total uint64                 `json:"total" yaml:"total"`
}

// ResourcesNetworkCard is one network card.
type ResourcesNetworkCard struct {
	Driver     string                     `json:"driver" yaml:"driver"`
	PCIAddress string                     `json:"pci_address,omitempty" yaml:"pci_address,omitempty"`
	Ports      []ResourcesNetworkCardPort `json:"ports" yaml:"ports"`
}

// ResourcesNetworkCardPort is one port (interface) of a card.
type ResourcesNetworkCardPort struct {
	ID           string `json:"id" yaml:"id"`
	Address      string `json:"address" yaml:"address"`
	Port         uint64 `json:"port" yaml:"port"`
	Protocol     string `json:"protocol" yaml:"protocol"`
	LinkDetected bool   `json:"link_detected" yaml:"link_detected"`
	LinkSpeed    uint64 `json:"link_speed,omitempty" yaml:"link_speed,omitempty"`
}

// ResourcesStorage is the host's disks.
type ResourcesStorage struct {
	Disks []ResourcesStorageDisk `json:"disks" yaml:"disks"`
	Total uint64                 `json:"total" yaml:"total"`
}

// ResourcesStorageDisk is one disk.
type ResourcesStorageDisk struct {
	ID         string                          `json:"id" yaml:"id"`
	Device     string                          `json:"device" yaml:"device"`
	Model      string                          `json:"model,omitempty" yaml:"model,omitempty"`
	Type       string                          `json:"type" yaml:"type"`
	ReadOnly   bool                            `json:"read_only" yaml:"read_only"`
	Size       uint64                          `json:"size" yaml:"size"`
	Removable  bool                            `json:"removable" yaml:"removable"`
	RPM        uint64                          `json:"rpm" yaml:"rpm"`
	BlockSize  uint64                          `json:"block_size" yaml:"block_size"`
	Partitions []ResourcesStorageDiskPartition `json:"partitions" yaml:"partitions"`
}

// ResourcesStorageDiskPartition is one partition of a disk.
type ResourcesStorageDiskPartition struct {
	ID        string `json:"id" yaml:"id"`
	Device    string `json:"device" yaml:"device"`
	ReadOnly  bool   `json:"read_only" yaml:"read_only"`
	Size      uint64 `json:"size" yaml:"size"`
	Partition uint64 `json:"partition" yaml:"partition"`
}

// ResourcesUSB lists USB devices (celld reports none).
type ResourcesUSB struct {
	Devices []any  `json:"devices" yaml:"devices"`
	Total   uint64 `json:"total" yaml:"total"`
}

// ResourcesPCI lists PCI devices (celld reports none).
type ResourcesPCI struct {
	Devices []any  `json:"devices" yaml:"devices"`
	Total   uint64 `json:"total" yaml:"total"`
}

// ResourcesSystem describes the machine.
type ResourcesSystem struct {
	UUID    string `json:"uuid" yaml:"uuid"`
	Vendor  string `json:"vendor" yaml:"vendor"`
	Product string `json:"product" yaml:"product"`
	Type    string `json:"type" yaml:"type"`
}
