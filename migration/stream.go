package migration

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"
)

// The control websocket carries one protobuf message per binary websocket
// message, as LXD sends them (MigrationHeader, MigrationControl,
// MigrationSync).

// SendControl sends one control message.
func SendControl(ws *websocket.Conn, msg proto.Message) error {
	data, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode %T: %w", msg, err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, data); err != nil {
		return fmt.Errorf("send %T: %w", msg, err)
	}
	return nil
}

// RecvControl receives one control message into msg.
func RecvControl(ws *websocket.Conn, msg proto.Message) error {
	mt, data, err := ws.ReadMessage()
	if err != nil {
		return fmt.Errorf("receive %T: %w", msg, err)
	}
	if mt != websocket.BinaryMessage {
		return fmt.Errorf("receive %T: got a websocket message of type %d, want binary", msg, mt)
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		return fmt.Errorf("decode %T: %w", msg, err)
	}
	return nil
}

// Conn is a bidirectional byte stream over which a transfer runs, whose
// sending direction can be ended (CloseWrite) without closing it, so that
// several transfers (each snapshot, then the instance) run one after the
// other over the same connection.
type Conn interface {
	io.Reader
	io.Writer
	// CloseWrite ends the current stream: the peer's Read returns io.EOF,
	// and then reads the next stream.
	CloseWrite() error
}

// Stream is a Conn over a websocket (the filesystem and criu websockets
// of a migration): data goes in binary messages, and an empty text message
// ends a stream, as LXD marks it.
type Stream struct {
	ws *websocket.Conn
	// wmu serializes writers: gorilla allows one concurrent writer.
	wmu sync.Mutex
	// cur is the message being read.
	cur io.Reader
}

// NewStream wraps a websocket.
func NewStream(ws *websocket.Conn) *Stream { return &Stream{ws: ws} }

// Read reads the current stream; io.EOF at its end marker.
func (s *Stream) Read(p []byte) (int, error) {
	for {
		if s.cur != nil {
			n, err := s.cur.Read(p)
			if errors.Is(err, io.EOF) {
				s.cur = nil
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		mt, r, err := s.ws.NextReader()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
				return 0, io.EOF
			}
			return 0, err
		}
		if mt == websocket.TextMessage {
			// The end marker; its content does not matter.
			_, _ = io.Copy(io.Discard, r)
			return 0, io.EOF
		}
		s.cur = r
	}
}

// Write sends p as one binary message.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite sends the end-of-stream marker.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.ws.WriteMessage(websocket.TextMessage, []byte{})
}

// Progress counts the bytes of a transfer for the operation's metadata:
// Report is called with the total so far after each write.
type Progress struct {
	mu     sync.Mutex
	total  int64
	Report func(total int64)
}

// Add counts n more bytes.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.total += int64(n)
	total := p.total
	p.mu.Unlock()
	if p.Report != nil {
		p.Report(total)
	}
}

// Total is the byte count so far.
func (p *Progress) Total() int64 {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// countingWriter counts what passes through into a Progress.
type countingWriter struct {
	w io.Writer
	p *Progress
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.Add(n)
	return n, err
}

// sendStream copies r to conn as one stream and ends it.
func sendStream(conn Conn, r io.Reader, p *Progress) error {
	// Large messages: one websocket message per 1 MiB read.
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(countingWriter{conn, p}, r, buf); err != nil {
		return err
	}
	return conn.CloseWrite()
}

// countingConn counts the bytes read from a Conn into a Progress.
type countingConn struct {
	Conn
	p *Progress
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.Add(n)
	return n, err
}

// CountReads returns conn with every byte read from it counted in p: the
// receiver's progress.
func CountReads(conn Conn, p *Progress) Conn {
	if p == nil {
		return conn
	}
	return countingConn{conn, p}
}
