package api

// NetworkPut is the writable part of a network.
type NetworkPut struct {
	Config      map[string]string `json:"config" yaml:"config"`
	Description string            `json:"description" yaml:"description"`
}

// Network is a managed network (a bridge celld runs) or, with Managed
// false, one of the host's own interfaces.
type Network struct {
	NetworkPut `yaml:",inline"`
	Name       string   `json:"name" yaml:"name"`
	Type       string   `json:"type" yaml:"type"`
	UsedBy     []string `json:"used_by" yaml:"used_by"`
	Managed    bool     `json:"managed" yaml:"managed"`
	Status     string   `json:"status" yaml:"status"`
	Locations  []string `json:"locations" yaml:"locations"`
}

// NetworksPost is the body of POST /1.0/networks.
type NetworksPost struct {
	NetworkPut `yaml:",inline"`
	Name       string `json:"name" yaml:"name"`
	Type       string `json:"type" yaml:"type"`
}

// NetworkPost renames a network.
type NetworkPost struct {
	Name string `json:"name" yaml:"name"`
}

// NetworkLease is one DHCP lease of a managed network.
type NetworkLease struct {
	Hostname string `json:"hostname" yaml:"hostname"`
	Hwaddr   string `json:"hwaddr" yaml:"hwaddr"`
	Address  string `json:"address" yaml:"address"`
	// Type is "static" for an address celld reserved for an instance
	// (its nic's ipv4.address), "dynamic" otherwise.
	Type     string `json:"type" yaml:"type"`
	Location string `json:"location" yaml:"location"`
}

// NetworkState is a network interface's live state.
type NetworkState struct {
	Addresses []NetworkStateAddress `json:"addresses" yaml:"addresses"`
	Counters  NetworkStateCounters  `json:"counters" yaml:"counters"`
	Hwaddr    string                `json:"hwaddr" yaml:"hwaddr"`
	Mtu       int                   `json:"mtu" yaml:"mtu"`
	// State is "up" or "down".
	State  string              `json:"state" yaml:"state"`
	Type   string              `json:"type" yaml:"type"`
	Bridge *NetworkStateBridge `json:"bridge" yaml:"bridge"`
}

// NetworkStateAddress is one address of an interface.
type NetworkStateAddress struct {
	Family  string `json:"family" yaml:"family"`
	Address string `json:"address" yaml:"address"`
	Netmask string `json:"netmask" yaml:"netmask"`
	Scope   string `json:"scope" yaml:"scope"`
}

// NetworkStateCounters are an interface's traffic counters.
type NetworkStateCounters struct {
	BytesReceived   int64 `json:"bytes_received" yaml:"bytes_received"`
	BytesSent       int64 `json:"bytes_sent" yaml:"bytes_sent"`
	PacketsReceived int64 `json:"packets_received" yaml:"packets_received"`
	PacketsSent     int64 `json:"packets_sent" yaml:"packets_sent"`
}

// NetworkStateBridge is a bridge's state.
type NetworkStateBridge struct {
	ID            string   `json:"id" yaml:"id"`
	STP           bool     `json:"stp" yaml:"stp"`
	ForwardDelay  uint64   `json:"forward_delay" yaml:"forward_delay"`
	VlanDefault   uint64   `json:"vlan_default" yaml:"vlan_default"`
	VlanFiltering bool     `json:"vlan_filtering" yaml:"vlan_filtering"`
	UpperDevices  []string `json:"upper_devices" yaml:"upper_devices"`
}
