package api

// InstanceDiffEntry is one file changed in an instance's filesystem
// (GET /1.0/instances/NAME/diff, a Cell extension): Kind is A (added),
// C (changed) or D (deleted), as `docker diff` prints them.
type InstanceDiffEntry struct {
	Path string `json:"path" yaml:"path"`
	Kind string `json:"kind" yaml:"kind"`
}
