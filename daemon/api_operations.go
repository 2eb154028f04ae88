package daemon

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/events"
)

func (d *Daemon) listOperations(w http.ResponseWriter, r *http.Request) error {
	byStatus := map[string][]any{}
	for _, op := range d.ops.List() {
		o := op.Get()
		key := strings.ToLower(o.Status)
		if recursion(r) > 0 {
			byStatus[key] = append(byStatus[key], o)
		} else {
			byStatus[key] = append(byStatus[key], op.URL())
		}
	}
	return syncResponse(w, byStatus)
}

func (d *Daemon) getOperation(w http.ResponseWriter, r *http.Request) error {
	op, err := d.ops.Lookup(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	return syncResponse(w, op.Get())
}

func (d *Daemon) cancelOperation(w http.ResponseWriter, r *http.Request) error {
	op, err := d.ops.Lookup(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	if err := op.Cancel(); err != nil {
		return badRequest("%v", err)
	}
	return syncResponse(w, nil)
}

// waitOperation blocks until the operation ends, or for ?timeout seconds
// (-1 or absent: no limit), then answers its state.
func (d *Daemon) waitOperation(w http.ResponseWriter, r *http.Request) error {
	op, err := d.ops.Lookup(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	timeout := -1
	if t := r.URL.Query().Get("timeout"); t != "" {
		if timeout, err = strconv.Atoi(t); err != nil {
			return badRequest("timeout %q is not a number of seconds", t)
		}
	}
	var expire <-chan time.Time
	if timeout >= 0 {
		expire = time.After(time.Duration(timeout) * time.Second)
	}
	select {
	case <-op.Done():
	case <-expire:
	case <-r.Context().Done():
		return nil
	}
	return syncResponse(w, op.Get())
}

func (d *Daemon) operationWebsocket(w http.ResponseWriter, r *http.Request) error {
	op, err := d.ops.Lookup(chi.URLParam(r, "id"))
	if err != nil {
		return err
	}
	return op.Connect(w, r, r.URL.Query().Get("secret"))
}

// getEvents streams events over a websocket until the client goes away.
func (d *Daemon) getEvents(w http.ResponseWriter, r *http.Request) error {
	var types []string
	if t := r.URL.Query().Get("type"); t != "" {
		for _, s := range splitComma(t) {
			switch s {
			case events.TypeOperation, events.TypeLogging, events.TypeLifecycle:
				types = append(types, s)
			default:
				return badRequest("unknown event type %q (use operation, logging or lifecycle)", s)
			}
		}
	}
	// Subscribe before the handshake answers: a client that acts right
	// after connecting must get the events of what it did.
	l := d.events.Listen(types)
	defer l.Close()
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil
	}
	defer conn.Close()
	// The client sends nothing; reading notices when it disconnects.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case ev, ok := <-l.C:
			if !ok {
				return nil
			}
			if err := conn.WriteJSON(ev); err != nil {
				return nil
			}
		case <-gone:
			return nil
		case <-d.ctx.Done():
			return nil
		}
	}
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
