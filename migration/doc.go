// Package migration moves instances between hosts: the control messages of
// LXD's migration protocol (migrate.proto, generated into migrate.pb.go),
// their framing over websockets, and the filesystem transfer primitives
// (rsync, btrfs send/receive, zfs send/recv) as streams that run over
// those websockets.
package migration

// migrate.proto is LXD's, unchanged, so that the messages stay
// wire-compatible with LXD; only the Go package is chosen here. The
// generator is built from the protobuf module go.mod pins. Needs protoc
// (apt-get install protobuf-compiler).
//go:generate go build -o .protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
//go:generate protoc --plugin=protoc-gen-go=.protoc-gen-go --go_out=. --go_opt=paths=source_relative --go_opt=Mmigrate.proto=cell/migration migrate.proto
//go:generate rm -f .protoc-gen-go
