package events

import (
	"context"
	"log/slog"

	"cell/shared/api"
)

// LogHandler is a slog.Handler that sends every record to the hub as a
// logging event (what `lxc monitor --type logging` shows) and passes it
// on to the next handler.
type LogHandler struct {
	hub   *Hub
	next  slog.Handler
	attrs []slog.Attr
}

// NewLogHandler wraps next so that log records also become events.
func NewLogHandler(hub *Hub, next slog.Handler) *LogHandler {
	return &LogHandler{hub: hub, next: next}
}

// Enabled implements slog.Handler. Debug records go to listeners even when
// the daemon's own log leaves them out, but only if someone listens.
func (h *LogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level) || h.hub.hasListeners(TypeLogging)
}

// Handle implements slog.Handler.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.hub.hasListeners(TypeLogging) {
		fields := map[string]string{}
		for _, a := range h.attrs {
			fields[a.Key] = a.Value.String()
		}
		r.Attrs(func(a slog.Attr) bool {
			fields[a.Key] = a.Value.String()
			return true
		})
		h.hub.Send(TypeLogging, api.EventLogging{Message: r.Message, Level: levelName(r.Level), Context: fields})
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// levelName uses LXD's names (dbug, info, warn, eror).
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warning"
	default:
		return "error"
	}
}

// WithAttrs implements slog.Handler.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{hub: h.hub, next: h.next.WithAttrs(attrs), attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

// WithGroup implements slog.Handler; groups are flattened into key prefixes.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{hub: h.hub, next: h.next.WithGroup(name), attrs: h.attrs}
}
