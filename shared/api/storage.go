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

// ResourcesStoragePool is the answer of GET /1.0/storage-pools/NAME/resources.
type ResourcesStoragePool struct {
	Space  ResourcesStoragePoolSpace  `json:"space" yaml:"space"`
	Inodes ResourcesStoragePoolInodes `json:"inodes" yaml:"inodes"`
}

// ResourcesStoragePoolSpace is a pool's space, in bytes.
type ResourcesStoragePoolSpace struct {
	Used  uint64 `json:"used" yaml:"used"`
	Total uint64 `json:"total" yaml:"total"`
}

// ResourcesStoragePoolInodes is a pool's inodes.
type ResourcesStoragePoolInodes struct {
	Used  uint64 `json:"used" yaml:"used"`
	Total uint64 `json:"total" yaml:"total"`
}
