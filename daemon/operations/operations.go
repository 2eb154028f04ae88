// Package operations runs the server's background tasks and keeps their
// status for /1.0/operations.
package operations

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"cell/daemon/events"
	"cell/shared/api"
)

// ErrNotFound is returned for an unknown operation id.
var ErrNotFound = errors.New("operation not found")

// ErrForbidden is returned when a websocket secret does not match.
var ErrForbidden = errors.New("websocket secret does not match")

// Websockets is implemented by operations that clients connect to
// (exec, console, migration).
type Websockets interface {
	// Secrets are what the operation metadata lists as "fds".
	Secrets() map[string]string
	// Connect serves the websocket called name ("control", "0", ...),
	// whose secret the client gave.
	Connect(w http.ResponseWriter, r *http.Request, name string) error
}

// Operation is one background task.
type Operation struct {
	reg       *Registry
	id        string
	class     string
	desc      string
	created   time.Time
	resources map[string][]string
	ws        Websockets
	cancel    context.CancelFunc

	mu        sync.Mutex
	updated   time.Time
	status    api.StatusCode
	metadata  map[string]any
	err       string
	done      chan struct{}
	mayCancel bool
}

// Registry holds the operations of the daemon.
type Registry struct {
	hub *events.Hub
	mu  sync.Mutex
	ops map[string]*Operation
	// keep is how long a finished operation stays listed.
	keep time.Duration
	wg   sync.WaitGroup
}

// NewRegistry returns an empty registry that reports to hub.
func NewRegistry(hub *events.Hub) *Registry {
	return &Registry{hub: hub, ops: map[string]*Operation{}, keep: 5 * time.Second}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// Spec describes an operation to start.
type Spec struct {
	Class       string // api.OperationClassTask or api.OperationClassWebsocket
	Description string
	Resources   map[string][]string
	Metadata    map[string]any
	Websockets  Websockets
	// Run does the work. Its context ends when the operation is cancelled
	// (only if MayCancel) or the daemon shuts down.
	Run       func(ctx context.Context, op *Operation) error
	MayCancel bool
}

// Start registers and starts an operation.
func (r *Registry) Start(ctx context.Context, s Spec) *Operation {
	now := time.Now().UTC()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	op := &Operation{
		reg: r, id: newID(), class: s.Class, desc: s.Description, created: now, updated: now,
		resources: s.Resources, ws: s.Websockets, cancel: cancel,
		status: api.Running, metadata: s.Metadata, done: make(chan struct{}), mayCancel: s.MayCancel,
	}
	if op.class == "" {
		op.class = api.OperationClassTask
	}
	if op.ws != nil {
		if op.metadata == nil {
			op.metadata = map[string]any{}
		}
		if _, flat := op.ws.(interface{ SecretsAsMetadata() }); flat {
			// Migration: LXD's clients read the secrets from the metadata itself.
			for k, v := range op.ws.Secrets() {
				op.metadata[k] = v
			}
		} else {
			op.metadata["fds"] = op.ws.Secrets()
		}
	}
	r.mu.Lock()
	r.ops[op.id] = op
	r.mu.Unlock()
	r.hub.Send(events.TypeOperation, op.Get())
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := s.Run(runCtx, op)
		op.finish(err)
		cancel()
	}()
	return op
}

// Wait blocks until every operation has ended.
func (r *Registry) Wait() { r.wg.Wait() }

func (op *Operation) finish(err error) {
	op.mu.Lock()
	op.updated = time.Now().UTC()
	switch {
	case err == nil:
		op.status = api.Success
	case errors.Is(err, context.Canceled):
		op.status = api.Cancelled
		op.err = err.Error()
	default:
		op.status = api.Failure
		op.err = err.Error()
	}
	op.mayCancel = false
	op.mu.Unlock()
	close(op.done)
	op.reg.hub.Send(events.TypeOperation, op.Get())
	// Finished operations stay visible for a while so that a client that
	// polls (rather than waits) still sees the result.
	time.AfterFunc(op.reg.keep, func() {
		op.reg.mu.Lock()
		delete(op.reg.ops, op.id)
		op.reg.mu.Unlock()
	})
}

// ID is the operation's id.
func (op *Operation) ID() string { return op.id }

// URL is the operation's path in the API.
func (op *Operation) URL() string { return "/1.0/operations/" + op.id }

// SetMetadata merges values into the operation's metadata and tells listeners.
func (op *Operation) SetMetadata(values map[string]any) {
	op.mu.Lock()
	if op.metadata == nil {
		op.metadata = map[string]any{}
	}
	for k, v := range values {
		op.metadata[k] = v
	}
	op.updated = time.Now().UTC()
	op.mu.Unlock()
	op.reg.hub.Send(events.TypeOperation, op.Get())
}

// Get returns the operation as the API shows it.
func (op *Operation) Get() api.Operation {
	op.mu.Lock()
	defer op.mu.Unlock()
	md := make(map[string]any, len(op.metadata))
	for k, v := range op.metadata {
		md[k] = v
	}
	if len(md) == 0 {
		md = nil
	}
	return api.Operation{
		ID: op.id, Class: op.class, Description: op.desc, CreatedAt: op.created, UpdatedAt: op.updated,
		Status: op.status.String(), StatusCode: op.status, Resources: op.resources, Metadata: md,
		MayCancel: op.mayCancel, Err: op.err, Location: "none",
	}
}

// Done is closed when the operation has ended.
func (op *Operation) Done() <-chan struct{} { return op.done }

// Cancel asks a cancellable operation to stop.
func (op *Operation) Cancel() error {
	op.mu.Lock()
	may := op.mayCancel
	op.mu.Unlock()
	if !may {
		return errors.New("this operation cannot be cancelled")
	}
	op.cancel()
	return nil
}

// Connect serves a websocket of the operation.
func (op *Operation) Connect(w http.ResponseWriter, r *http.Request, secret string) error {
	if op.ws == nil {
		return errors.New("this operation has no websockets")
	}
	// The secret is the client's credential: compared in constant time.
	for name, s := range op.ws.Secrets() {
		if subtle.ConstantTimeCompare([]byte(s), []byte(secret)) == 1 {
			return op.ws.Connect(w, r, name)
		}
	}
	return ErrForbidden
}

// Lookup returns an operation by id.
func (r *Registry) Lookup(id string) (*Operation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op, ok := r.ops[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return op, nil
}

// List returns every operation, oldest first.
func (r *Registry) List() []*Operation {
	r.mu.Lock()
	out := make([]*Operation, 0, len(r.ops))
	for _, op := range r.ops {
		out = append(out, op)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}
