package api

import "time"

// ImagePut is the writable part of an image.
type ImagePut struct {
	AutoUpdate bool              `json:"auto_update" yaml:"auto_update"`
	Properties map[string]string `json:"properties" yaml:"properties"`
	Public     bool              `json:"public" yaml:"public"`
	ExpiresAt  time.Time         `json:"expires_at" yaml:"expires_at"`
	Profiles   []string          `json:"profiles" yaml:"profiles"`
}

// Image is an image in the local store.
type Image struct {
	ImagePut     `yaml:",inline"`
	Aliases      []ImageAlias `json:"aliases" yaml:"aliases"`
	Architecture string       `json:"architecture" yaml:"architecture"`
	Cached       bool         `json:"cached" yaml:"cached"`
	Filename     string       `json:"filename" yaml:"filename"`
	Fingerprint  string       `json:"fingerprint" yaml:"fingerprint"`
	Size         int64        `json:"size" yaml:"size"`
	UpdateSource *ImageSource `json:"update_source,omitempty" yaml:"update_source,omitempty"`
	Type         string       `json:"type" yaml:"type"`
	CreatedAt    time.Time    `json:"created_at" yaml:"created_at"`
	LastUsedAt   time.Time    `json:"last_used_at" yaml:"last_used_at"`
	UploadedAt   time.Time    `json:"uploaded_at" yaml:"uploaded_at"`
}

// ImageAlias is an alias as listed inside an image.
type ImageAlias struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description" yaml:"description"`
}

// ImageSource is where a cached image came from.
type ImageSource struct {
	Alias       string `json:"alias" yaml:"alias"`
	Certificate string `json:"certificate" yaml:"certificate"`
	Protocol    string `json:"protocol" yaml:"protocol"`
	Server      string `json:"server" yaml:"server"`
	ImageType   string `json:"image_type" yaml:"image_type"`
}

// ImagesPost is the JSON part of POST /1.0/images (creation from a source
// other than an upload).
type ImagesPost struct {
	ImagePut `yaml:",inline"`
	Filename string            `json:"filename" yaml:"filename"`
	Source   *ImagesPostSource `json:"source" yaml:"source"`
	Aliases  []ImageAlias      `json:"aliases" yaml:"aliases"`
}

// ImagesPostSource is the source of an image created by POST /1.0/images.
type ImagesPostSource struct {
	ImageSource `yaml:",inline"`
	Mode        string `json:"mode" yaml:"mode"`
	Type        string `json:"type" yaml:"type"`
	URL         string `json:"url" yaml:"url"`
	Name        string `json:"name" yaml:"name"`
	Fingerprint string `json:"fingerprint" yaml:"fingerprint"`
	Secret      string `json:"secret" yaml:"secret"`
}

// ImageAliasesPost is the body of POST /1.0/images/aliases.
type ImageAliasesPost struct {
	ImageAliasesEntry `yaml:",inline"`
}

// ImageAliasesEntryPut is the writable part of an alias.
type ImageAliasesEntryPut struct {
	Description string `json:"description" yaml:"description"`
	Target      string `json:"target" yaml:"target"`
}

// ImageAliasesEntryPost renames an alias.
type ImageAliasesEntryPost struct {
	Name string `json:"name" yaml:"name"`
}

// ImageAliasesEntry is an alias.
type ImageAliasesEntry struct {
	ImageAliasesEntryPut `yaml:",inline"`
	Name                 string `json:"name" yaml:"name"`
	Type                 string `json:"type" yaml:"type"`
}

// ImageMetadata is the content of metadata.yaml in an image.
type ImageMetadata struct {
	Architecture string                            `json:"architecture" yaml:"architecture"`
	CreationDate int64                             `json:"creation_date" yaml:"creation_date"`
	ExpiryDate   int64                             `json:"expiry_date" yaml:"expiry_date"`
	Properties   map[string]string                 `json:"properties" yaml:"properties"`
	Templates    map[string]*ImageMetadataTemplate `json:"templates" yaml:"templates"`
}

// ImageMetadataTemplate is one template entry of metadata.yaml.
type ImageMetadataTemplate struct {
	When       []string          `json:"when" yaml:"when"`
	CreateOnly bool              `json:"create_only" yaml:"create_only"`
	Template   string            `json:"template" yaml:"template"`
	Properties map[string]string `json:"properties" yaml:"properties"`
}
