// Package api holds the request and response types of the REST API 1.0.
//
// The JSON field names follow LXD's API exactly, because LXD's own clients
// (the lxc command line tool, pylxd) talk to celld unchanged.
package api
