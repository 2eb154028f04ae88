// Package snapshots owns what LXD's snapshot options mean, apart from any
// storage driver: snapshot names from snapshots.pattern, schedules from
// snapshots.schedule and expiry dates from snapshots.expiry.
package snapshots

// DefaultPattern names snapshots when snapshots.pattern is not set.
const DefaultPattern = "snap%d"
