package api

// StoragePoolPut is the writable part of a storage pool.
type StoragePoolPut struct {
	Config      map[string]string `json:"config" yaml:"config"`
	Description string            `json:"description" yaml:"description"`
}

// StoragePool is a storage pool.
type StoragePool struct {
	StoragePoolPut `yaml:",inline"`
	Name           string   `json:"name" yaml:"name"`
	Driver         string   `json:"driver" yaml:"driver"`
	UsedBy         []string `json:"used_by" yaml:"used_by"`
	Status         string   `json:"status" yaml:"status"`
	Locations      []string `json:"locations" yaml:"locations"`
}

// StoragePoolsPost is the body of POST /1.0/storage-pools.
type StoragePoolsPost struct {
	StoragePoolPut `yaml:",inline"`
	Name           string `json:"name" yaml:"name"`
	Driver         string `json:"driver" yaml:"driver"`
}
