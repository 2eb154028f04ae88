package api

import "time"

// Devices maps a device name to its config.
type Devices map[string]map[string]string

// InstancePut is the writable part of an instance.
type InstancePut struct {
	Architecture string            `json:"architecture" yaml:"architecture"`
	Config       map[string]string `json:"config" yaml:"config"`
	Devices      Devices           `json:"devices" yaml:"devices"`
	Ephemeral    bool              `json:"ephemeral" yaml:"ephemeral"`
	Profiles     []string          `json:"profiles" yaml:"profiles"`
	Stateful     bool              `json:"stateful" yaml:"stateful"`
	Description  string            `json:"description" yaml:"description"`
	// Restore names a snapshot to restore (PUT only), as "SNAP" or
	// "INSTANCE/SNAP".
	Restore string `json:"restore,omitempty" yaml:"restore,omitempty"`
}

// InstanceSnapshotsPost creates a snapshot; an empty name lets the server
// pick the first free snapN.
type InstanceSnapshotsPost struct {
	Name      string     `json:"name" yaml:"name"`
	Stateful  bool       `json:"stateful" yaml:"stateful"`
	ExpiresAt *time.Time `json:"expires_at,omitempty" yaml:"expires_at,omitempty"`
}

// InstanceSnapshotPost renames a snapshot.
type InstanceSnapshotPost struct {
	Name      string `json:"name" yaml:"name"`
	Migration bool   `json:"migration" yaml:"migration"`
	Live      bool   `json:"live,omitempty" yaml:"live,omitempty"`
}

// InstanceSnapshotPut is the writable part of a snapshot.
type InstanceSnapshotPut struct {
	ExpiresAt time.Time `json:"expires_at" yaml:"expires_at"`
}

// Instance is an instance as the API shows it.
type Instance struct {
	InstancePut     `yaml:",inline"`
	CreatedAt       time.Time         `json:"created_at" yaml:"created_at"`
	ExpandedConfig  map[string]string `json:"expanded_config" yaml:"expanded_config"`
	ExpandedDevices Devices           `json:"expanded_devices" yaml:"expanded_devices"`
	Name            string            `json:"name" yaml:"name"`
	Status          string            `json:"status" yaml:"status"`
	StatusCode      StatusCode        `json:"status_code" yaml:"status_code"`
	LastUsedAt      time.Time         `json:"last_used_at" yaml:"last_used_at"`
	Location        string            `json:"location" yaml:"location"`
	Type            string            `json:"type" yaml:"type"`
	Project         string            `json:"project" yaml:"project"`
}

// InstanceFull is an instance with its state, snapshots and backups, as
// returned with recursion=2.
type InstanceFull struct {
	Instance  `yaml:",inline"`
	State     *InstanceState     `json:"state" yaml:"state"`
	Snapshots []InstanceSnapshot `json:"snapshots" yaml:"snapshots"`
	Backups   []any              `json:"backups" yaml:"backups"`
}

// InstanceSnapshot is a snapshot of an instance.
type InstanceSnapshot struct {
	InstancePut     `yaml:",inline"`
	CreatedAt       time.Time         `json:"created_at" yaml:"created_at"`
	ExpandedConfig  map[string]string `json:"expanded_config" yaml:"expanded_config"`
	ExpandedDevices Devices           `json:"expanded_devices" yaml:"expanded_devices"`
	LastUsedAt      time.Time         `json:"last_used_at" yaml:"last_used_at"`
	Name            string            `json:"name" yaml:"name"`
	ExpiresAt       time.Time         `json:"expires_at" yaml:"expires_at"`
}

// InstanceSource says where a new instance comes from.
type InstanceSource struct {
	Type          string            `json:"type" yaml:"type"`
	Certificate   string            `json:"certificate" yaml:"certificate"`
	Alias         string            `json:"alias,omitempty" yaml:"alias,omitempty"`
	Fingerprint   string            `json:"fingerprint,omitempty" yaml:"fingerprint,omitempty"`
	Properties    map[string]string `json:"properties,omitempty" yaml:"properties,omitempty"`
	Server        string            `json:"server,omitempty" yaml:"server,omitempty"`
	Secret        string            `json:"secret,omitempty" yaml:"secret,omitempty"`
	Protocol      string            `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	BaseImage     string            `json:"base-image,omitempty" yaml:"base-image,omitempty"`
	Mode          string            `json:"mode,omitempty" yaml:"mode,omitempty"`
	Operation     string            `json:"operation,omitempty" yaml:"operation,omitempty"`
	Websockets    map[string]string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
	Source        string            `json:"source,omitempty" yaml:"source,omitempty"`
	Live          bool              `json:"live,omitempty" yaml:"live,omitempty"`
	InstanceOnly  bool              `json:"instance_only,omitempty" yaml:"instance_only,omitempty"`
	ContainerOnly bool              `json:"container_only,omitempty" yaml:"container_only,omitempty"`
	Refresh       bool              `json:"refresh,omitempty" yaml:"refresh,omitempty"`
	Project       string            `json:"project,omitempty" yaml:"project,omitempty"`
}

// InstancesPost is the body of POST /1.0/instances.
type InstancesPost struct {
	InstancePut  `yaml:",inline"`
	Name         string         `json:"name" yaml:"name"`
	Source       InstanceSource `json:"source" yaml:"source"`
	InstanceType string         `json:"instance_type" yaml:"instance_type"`
	Type         string         `json:"type" yaml:"type"`
}

// InstancePost is the body of POST /1.0/instances/NAME (rename or migrate).
type InstancePost struct {
	Name          string `json:"name" yaml:"name"`
	Migration     bool   `json:"migration" yaml:"migration"`
	Live          bool   `json:"live" yaml:"live"`
	InstanceOnly  bool   `json:"instance_only" yaml:"instance_only"`
	ContainerOnly bool   `json:"container_only" yaml:"container_only"`
	Pool          string `json:"pool" yaml:"pool"`
	Project       string `json:"project" yaml:"project"`
	// Target, in a push-mode migration, is the target's operation the
	// source connects to.
	Target *InstancePostTarget `json:"target,omitempty" yaml:"target,omitempty"`
}

// InstancePostTarget is a push-mode migration's target: its operation,
// its certificate and the operation's websocket secrets.
type InstancePostTarget struct {
	Certificate string            `json:"certificate" yaml:"certificate"`
	Operation   string            `json:"operation,omitempty" yaml:"operation,omitempty"`
	Websockets  map[string]string `json:"secrets,omitempty" yaml:"secrets,omitempty"`
}

// InstanceStatePut is the body of PUT /1.0/instances/NAME/state.
type InstanceStatePut struct {
	Action   string `json:"action" yaml:"action"`
	Timeout  int    `json:"timeout" yaml:"timeout"`
	Force    bool   `json:"force" yaml:"force"`
	Stateful bool   `json:"stateful" yaml:"stateful"`
}

// InstanceState is the runtime state of an instance.
type InstanceState struct {
	Status     string                          `json:"status" yaml:"status"`
	StatusCode StatusCode                      `json:"status_code" yaml:"status_code"`
	Disk       map[string]InstanceStateDisk    `json:"disk" yaml:"disk"`
	Memory     InstanceStateMemory             `json:"memory" yaml:"memory"`
	Network    map[string]InstanceStateNetwork `json:"network" yaml:"network"`
	Pid        int64                           `json:"pid" yaml:"pid"`
	Processes  int64                           `json:"processes" yaml:"processes"`
	CPU        InstanceStateCPU                `json:"cpu" yaml:"cpu"`
}

// InstanceStateDisk is the disk usage of one disk device.
type InstanceStateDisk struct {
	Usage int64 `json:"usage" yaml:"usage"`
}

// InstanceStateCPU is the CPU time used, in nanoseconds.
type InstanceStateCPU struct {
	Usage int64 `json:"usage" yaml:"usage"`
}

// InstanceStateMemory is the memory used, in bytes.
type InstanceStateMemory struct {
	Usage         int64 `json:"usage" yaml:"usage"`
	UsagePeak     int64 `json:"usage_peak" yaml:"usage_peak"`
	SwapUsage     int64 `json:"swap_usage" yaml:"swap_usage"`
	SwapUsagePeak int64 `json:"swap_usage_peak" yaml:"swap_usage_peak"`
}

// InstanceStateNetwork is one network interface of a running instance.
type InstanceStateNetwork struct {
	Addresses []InstanceStateNetworkAddress `json:"addresses" yaml:"addresses"`
	Counters  InstanceStateNetworkCounters  `json:"counters" yaml:"counters"`
	Hwaddr    string                        `json:"hwaddr" yaml:"hwaddr"`
	HostName  string                        `json:"host_name" yaml:"host_name"`
	Mtu       int                           `json:"mtu" yaml:"mtu"`
	State     string                        `json:"state" yaml:"state"`
	Type      string                        `json:"type" yaml:"type"`
}

// InstanceStateNetworkAddress is one address of an interface.
type InstanceStateNetworkAddress struct {
	Family  string `json:"family" yaml:"family"`
	Address string `json:"address" yaml:"address"`
	Netmask string `json:"netmask" yaml:"netmask"`
	Scope   string `json:"scope" yaml:"scope"`
}

// InstanceStateNetworkCounters are the traffic counters of an interface.
type InstanceStateNetworkCounters struct {
	BytesReceived   int64 `json:"bytes_received" yaml:"bytes_received"`
	BytesSent       int64 `json:"bytes_sent" yaml:"bytes_sent"`
	PacketsReceived int64 `json:"packets_received" yaml:"packets_received"`
	PacketsSent     int64 `json:"packets_sent" yaml:"packets_sent"`
}

// InstanceExecPost is the body of POST /1.0/instances/NAME/exec.
type InstanceExecPost struct {
	Command          []string          `json:"command" yaml:"command"`
	WaitForWebsocket bool              `json:"wait-for-websocket" yaml:"wait-for-websocket"`
	Interactive      bool              `json:"interactive" yaml:"interactive"`
	Environment      map[string]string `json:"environment" yaml:"environment"`
	Width            int               `json:"width" yaml:"width"`
	Height           int               `json:"height" yaml:"height"`
	RecordOutput     bool              `json:"record-output" yaml:"record-output"`
	User             uint32            `json:"user" yaml:"user"`
	Group            uint32            `json:"group" yaml:"group"`
	Cwd              string            `json:"cwd" yaml:"cwd"`
}

// InstanceExecControl is a message on the control websocket of an exec.
type InstanceExecControl struct {
	Command string            `json:"command" yaml:"command"`
	Args    map[string]string `json:"args" yaml:"args"`
	Signal  int               `json:"signal" yaml:"signal"`
}
