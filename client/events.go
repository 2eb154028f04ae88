package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"cell/shared/api"
)

// GetEvents listens to the server's event stream and calls handler for each
// event, in order, until ctx ends (it then returns ctx's error) or the
// connection fails. types selects "operation", "logging" and/or
// "lifecycle"; empty means all.
func (c *Client) GetEvents(ctx context.Context, types []string, handler func(api.Event)) error {
	var q url.Values
	if len(types) > 0 {
		q = url.Values{"type": {strings.Join(types, ",")}}
	}
	conn, err := c.websocket(ctx, "/1.0/events", q)
	if err != nil {
		return err
	}
	// Closing the connection is what unblocks the read loop when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("event stream: %w", err)
		}
		var ev api.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("event stream: bad event: %w", err)
		}
		handler(ev)
	}
}
