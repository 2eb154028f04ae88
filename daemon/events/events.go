// Package events fans out the server's events (operation, logging,
// lifecycle) to every /1.0/events listener.
package events

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"cell/shared/api"
)

// The event types LXD clients subscribe to.
const (
	TypeOperation = "operation"
	TypeLogging   = "logging"
	TypeLifecycle = "lifecycle"
)

// Hub delivers events to listeners.
type Hub struct {
	mu        sync.Mutex
	listeners map[*Listener]struct{}
}

// Listener receives the events of the types it asked for.
type Listener struct {
	types map[string]bool
	C     chan api.Event
	hub   *Hub
	once  sync.Once
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{listeners: map[*Listener]struct{}{}} }

// Listen registers a listener for the given types (all types when empty).
func (h *Hub) Listen(types []string) *Listener {
	l := &Listener{types: map[string]bool{}, C: make(chan api.Event, 256), hub: h}
	for _, t := range types {
		l.types[t] = true
	}
	h.mu.Lock()
	h.listeners[l] = struct{}{}
	h.mu.Unlock()
	return l
}

// Close unregisters the listener and closes its channel.
func (l *Listener) Close() {
	l.once.Do(func() {
		l.hub.mu.Lock()
		delete(l.hub.listeners, l)
		l.hub.mu.Unlock()
		close(l.C)
	})
}

// hasListeners reports whether anyone listens to events of a type.
func (h *Hub) hasListeners(eventType string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.listeners {
		if len(l.types) == 0 || l.types[eventType] {
			return true
		}
	}
	return false
}

// Send delivers an event. A listener too slow to keep 256 events queued is
// disconnected rather than allowed to stall the daemon.
func (h *Hub) Send(eventType string, metadata any) {
	raw, err := json.Marshal(metadata)
	if err != nil {
		slog.Error("encode event", "type", eventType, "err", err)
		return
	}
	ev := api.Event{Type: eventType, Timestamp: time.Now().UTC(), Metadata: raw, Location: "none", Project: "default"}
	h.mu.Lock()
	var slow []*Listener
	for l := range h.listeners {
		if len(l.types) > 0 && !l.types[eventType] {
			continue
		}
		select {
		case l.C <- ev:
		default:
			slow = append(slow, l)
		}
	}
	h.mu.Unlock()
	for _, l := range slow {
		slog.Warn("dropping slow event listener")
		l.Close()
	}
}

// Lifecycle sends a lifecycle event such as "instance-started".
func (h *Hub) Lifecycle(action, source string, ctx map[string]any) {
	slog.Info(action, "source", source)
	h.Send(TypeLifecycle, api.EventLifecycle{Action: action, Source: source, Context: ctx})
}
