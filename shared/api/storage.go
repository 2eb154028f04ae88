package api

import "time"

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

// StorageVolumePut is the writable part of a storage volume.
type StorageVolumePut struct {
	Config      map[string]string `json:"config" yaml:"config"`
	Description string            `json:"description" yaml:"description"`
}

// StorageVolume is a storage volume (GET /1.0/storage-pools/P/volumes/TYPE/NAME).
type StorageVolume struct {
	StorageVolumePut `yaml:",inline"`
	Name             string    `json:"name" yaml:"name"`
	Type             string    `json:"type" yaml:"type"`
	Pool             string    `json:"pool" yaml:"pool"`
	ContentType      string    `json:"content_type" yaml:"content_type"`
	UsedBy           []string  `json:"used_by" yaml:"used_by"`
	Location         string    `json:"location" yaml:"location"`
	CreatedAt        time.Time `json:"created_at" yaml:"created_at"`
}

// StorageVolumeSource says where a new volume's content comes from.
type StorageVolumeSource struct {
	Type string `json:"type" yaml:"type"`
	Pool string `json:"pool" yaml:"pool"`
	Name string `json:"name" yaml:"name"`
}

// StorageVolumesPost is the body of POST /1.0/storage-pools/P/volumes[/custom].
type StorageVolumesPost struct {
	StorageVolumePut `yaml:",inline"`
	Name             string              `json:"name" yaml:"name"`
	Type             string              `json:"type" yaml:"type"`
	ContentType      string              `json:"content_type" yaml:"content_type"`
	Source           StorageVolumeSource `json:"source" yaml:"source"`
}

// StorageVolumePost renames a volume (POST /1.0/storage-pools/P/volumes/custom/NAME).
type StorageVolumePost struct {
	Name string `json:"name" yaml:"name"`
	Pool string `json:"pool,omitempty" yaml:"pool,omitempty"`
}

// StorageVolumeSnapshot is a snapshot of a custom volume.
type StorageVolumeSnapshot struct {
	Name        string            `json:"name" yaml:"name"`
	Description string            `json:"description" yaml:"description"`
	Config      map[string]string `json:"config" yaml:"config"`
	ContentType string            `json:"content_type" yaml:"content_type"`
	CreatedAt   time.Time         `json:"created_at" yaml:"created_at"`
}

// StorageVolumeSnapshotsPost is the body of POST .../volumes/custom/NAME/snapshots.
type StorageVolumeSnapshotsPost struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
}
