package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"cell/shared/api"
)

// ExecIO wires a command's streams to local readers and writers. Any of
// them may be nil. In interactive mode the command has a terminal and all
// of its output arrives on Stdout.
type ExecIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Exec is a command running in an instance.
type Exec struct {
	op      *Operation
	control *websocket.Conn // nil when not connected

	ctlMu sync.Mutex // one writer at a time on the control socket

	outputDone chan struct{} // closed once every output stream has ended
	conns      []*websocket.Conn
}

// ExecInstance starts a command in an instance. With req.WaitForWebsocket
// the server waits for the streams, which this method connects to streams;
// otherwise the command runs detached and only the operation is of use.
//
// Reading Stdin happens in a goroutine that may stay blocked in Read until
// the reader returns, even after the command ended (as with a terminal).
func (c *Client) ExecInstance(ctx context.Context, name string, req api.InstanceExecPost, streams ExecIO) (*Exec, error) {
	op, err := c.doOperation(ctx, request{method: http.MethodPost, path: urlPath("instances", name, "exec"), body: req})
	if err != nil {
		return nil, err
	}
	e := &Exec{op: op, outputDone: make(chan struct{})}
	if !req.WaitForWebsocket {
		close(e.outputDone)
		return e, nil
	}

	fail := func(err error) (*Exec, error) {
		e.closeAll()
		// The server is waiting for the websockets; cancelling spares it
		// a wait until its own timeout.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = op.Cancel(cctx)
		return nil, err
	}
	fds, err := execSecrets(op.Metadata)
	if err != nil {
		return fail(err)
	}
	connect := func(fd string) (*websocket.Conn, error) {
		secret, ok := fds[fd]
		if !ok {
			return nil, fmt.Errorf("exec: the server sent no websocket for fd %q", fd)
		}
		conn, err := c.websocket(ctx, urlPath("operations", op.ID, "websocket"), url.Values{"secret": {secret}})
		if err != nil {
			return nil, fmt.Errorf("exec: connect fd %s: %w", fd, err)
		}
		e.conns = append(e.conns, conn)
		return conn, nil
	}

	if e.control, err = connect("control"); err != nil {
		return fail(err)
	}
	// Sockets we only write to still need a reader: gorilla answers the
	// server's keepalive pings and close messages only while reading.
	go drain(e.control)
	if req.Interactive {
		// One bidirectional socket carries stdin and the terminal output.
		conn, err := connect("0")
		if err != nil {
			return fail(err)
		}
		go sendStream(conn, streams.Stdin)
		go func() {
			receiveStream(conn, streams.Stdout)
			// The server finishes the exec only once this side is closed
			// too; stdin (a terminal) may never end on its own.
			closeConn(conn)
			close(e.outputDone)
		}()
		return e, nil
	}

	var conns [3]*websocket.Conn
	for i := range conns {
		if conns[i], err = connect(fmt.Sprint(i)); err != nil {
			return fail(err)
		}
	}
	go sendStream(conns[0], streams.Stdin)
	go drain(conns[0])
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); receiveStream(conns[1], streams.Stdout) }()
	go func() { defer wg.Done(); receiveStream(conns[2], streams.Stderr) }()
	go func() {
		wg.Wait()
		closeConn(conns[0])
		close(e.outputDone)
	}()
	return e, nil
}

// execSecrets reads the websocket secrets from an exec operation's metadata:
// {"fds": {"0": "...", "control": "..."}}.
func execSecrets(md map[string]any) (map[string]string, error) {
	raw, ok := md["fds"].(map[string]any)
	if !ok {
		return nil, errors.New("exec: the operation lists no websockets (metadata.fds)")
	}
	fds := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("exec: websocket secret for fd %q is not a string", k)
		}
		fds[k] = s
	}
	return fds, nil
}

// sendStream copies r to the websocket as binary messages. At the end of r
// it sends an empty text message: that is how LXD's client tells the server
// that stdin reached EOF, so the command sees the end of its input.
func sendStream(conn *websocket.Conn, r io.Reader) {
	if r != nil {
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if werr := conn.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				break
			}
		}
	}
	_ = conn.WriteMessage(websocket.TextMessage, nil)
}

// receiveStream copies messages from the websocket to w until the server
// closes the stream (a close message, an empty text message or a broken
// connection).
func receiveStream(conn *websocket.Conn, w io.Writer) {
	for {
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if mt == websocket.TextMessage && len(data) == 0 {
			return
		}
		if w != nil && len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				// Keep draining so the server is not blocked on us.
				w = nil
			}
		}
	}
}

// closeConn says goodbye with a close message, then drops the connection.
func closeConn(conn *websocket.Conn) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	_ = conn.Close()
}

// drain reads and drops messages until the connection ends.
func drain(conn *websocket.Conn) {
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// Operation returns the exec's operation.
func (e *Exec) Operation() *Operation { return e.op }

// sendControl writes one message on the control websocket.
func (e *Exec) sendControl(msg api.InstanceExecControl) error {
	if e.control == nil {
		return errors.New("exec: no control websocket")
	}
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	_ = e.control.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := e.control.WriteJSON(msg); err != nil {
		return fmt.Errorf("exec: send %s: %w", msg.Command, err)
	}
	return nil
}

// Resize tells the command's terminal its new size.
func (e *Exec) Resize(width, height int) error {
	return e.sendControl(api.InstanceExecControl{
		Command: "window-resize",
		Args:    map[string]string{"width": fmt.Sprint(width), "height": fmt.Sprint(height)},
	})
}

// Signal sends a signal to the command.
func (e *Exec) Signal(sig int) error {
	return e.sendControl(api.InstanceExecControl{Command: "signal", Signal: sig})
}

// Wait waits for the command to end and for its output to be copied, and
// returns its exit code. An error means the exec itself failed; the code
// is then still the server's when it gave one (LXD fails an exec whose
// command does not exist with "Command not found" and code 127), else -1.
func (e *Exec) Wait(ctx context.Context) (int, error) {
	defer e.closeAll()
	if err := e.op.Wait(ctx); err != nil {
		var opErr *OperationError
		if errors.As(err, &opErr) {
			if code, cerr := ExitCode(opErr.Op.Metadata); cerr == nil {
				return code, err
			}
		}
		return -1, err
	}
	// The operation can end a moment before the last output arrives.
	select {
	case <-e.outputDone:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	return ExitCode(e.op.Metadata)
}

func (e *Exec) closeAll() {
	e.ctlMu.Lock()
	defer e.ctlMu.Unlock()
	for _, conn := range e.conns {
		_ = conn.Close()
	}
}

// ExitCode reads the command's exit status from a finished exec operation's
// metadata ("return").
func ExitCode(md map[string]any) (int, error) {
	v, ok := md["return"]
	if !ok {
		return -1, errors.New("exec: the operation did not report an exit code")
	}
	switch n := v.(type) {
	case float64:
		return int(n), nil
	case int:
		return n, nil
	case int64:
		return int(n), nil
	}
	return -1, fmt.Errorf("exec: bad exit code %v", v)
}
