package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"cell/daemon/liblxc"
	"cell/daemon/operations"
	"cell/shared/api"
	"cell/shared/idmap"
)

var upgrader = websocket.Upgrader{
	// The API authenticates the socket itself (unix socket permissions or
	// TLS); browsers never talk to it, so origin checks do not apply.
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  32 * 1024,
	WriteBufferSize: 32 * 1024,
}

// maxWebsocketMessage bounds one incoming websocket message: stdin chunks
// and control messages are small, and a huge frame must not exhaust memory.
const maxWebsocketMessage = 1 << 20

// execSession is one exec operation: its websockets and its process.
type execSession struct {
	secrets map[string]string // fd name ("0", "1", "2", "control") -> secret

	mu    sync.Mutex
	conns map[string]*websocket.Conn
	// connected is closed once every data websocket (all but control) is
	// connected: the command starts then. The control websocket is
	// optional, as in LXD: pylxd never connects it.
	connected chan struct{}
	// controlReady is closed when the control websocket connects.
	controlReady chan struct{}
	closed       bool
}

func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

func newExecSession(fds []string) *execSession {
	s := &execSession{secrets: map[string]string{}, conns: map[string]*websocket.Conn{},
		connected: make(chan struct{}), controlReady: make(chan struct{})}
	for _, fd := range fds {
		s.secrets[fd] = newSecret()
	}
	return s
}

// Secrets implements operations.Websockets.
func (s *execSession) Secrets() map[string]string { return s.secrets }

// Connect implements operations.Websockets.
func (s *execSession) Connect(w http.ResponseWriter, r *http.Request, fd string) error {
	s.mu.Lock()
	_, dup := s.conns[fd]
	s.mu.Unlock()
	if dup {
		return forbidden("websocket %s is already connected", fd)
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil // Upgrade has answered the client already.
	}
	conn.SetReadLimit(maxWebsocketMessage)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.conns[fd]; dup || s.closed {
		// A second connection raced the first, or the command has ended
		// already (a late control connection).
		conn.Close()
		return nil
	}
	s.conns[fd] = conn
	if fd == "control" {
		close(s.controlReady)
		return nil
	}
	for name := range s.secrets {
		if _, ok := s.conns[name]; !ok && name != "control" {
			return nil
		}
	}
	close(s.connected)
	return nil
}

// controlConn waits for the control websocket until done is closed; it
// returns nil if the client never connected it.
func (s *execSession) controlConn(done <-chan struct{}) *websocket.Conn {
	select {
	case <-s.controlReady:
		return s.conn("control")
	case <-done:
		return nil
	}
}

func (s *execSession) conn(fd string) *websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[fd]
}

func (s *execSession) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
}

// defaultExecEnv is what a command sees unless the request says otherwise.
func defaultExecEnv(uid uint32) map[string]string {
	home := "/root"
	if uid != 0 {
		home = "/"
	}
	return map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME": home, "LANG": "C.UTF-8", "USER": "root",
	}
}

func (d *Daemon) execInstance(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	name := chi.URLParam(r, "name")
	var req api.InstanceExecPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if len(req.Command) == 0 {
		return badRequest("exec needs a command")
	}
	inst, err := d.loadInstance(ctx, name)
	if err != nil {
		return err
	}
	if d.runtimeState(name) != liblxc.Running {
		return badRequest("instance %q is not running", name)
	}
	env := defaultExecEnv(req.User)
	for k, v := range inst.expandedConfig {
		if key, ok := cutPrefix(k, "environment."); ok {
			env[key] = v
		}
	}
	for k, v := range req.Environment {
		env[k] = v
	}
	proc := liblxc.Process{Args: req.Command, Cwd: req.Cwd, UID: int(req.User), GID: int(req.Group)}
	if proc.Cwd == "" {
		proc.Cwd = env["HOME"]
	}
	for k, v := range env {
		proc.Env = append(proc.Env, k+"="+v)
	}
	m := d.idmapFor(inst)

	spec := operations.Spec{Class: api.OperationClassTask, Description: "Executing command", Resources: instanceResources(name)}
	var session *execSession
	if req.WaitForWebsocket {
		fds := []string{"0", "1", "2", "control"}
		if req.Interactive {
			fds = []string{"0", "control"}
		}
		session = newExecSession(fds)
		spec.Class = api.OperationClassWebsocket
		spec.Websockets = session
	}
	spec.Run = func(ctx context.Context, op *operations.Operation) error {
		if session == nil {
			return d.execRecorded(ctx, op, name, proc, req.RecordOutput)
		}
		defer session.closeAll()
		select {
		case <-session.connected:
		case <-time.After(30 * time.Second):
			return errors.New("the client did not connect to the exec's stdin and output websockets within 30s")
		case <-ctx.Done():
			return ctx.Err()
		}
		var code int
		var err error
		if req.Interactive {
			code, err = d.execInteractive(name, proc, session, m, req.Width, req.Height)
		} else {
			code, err = d.execPiped(name, proc, session)
		}
		if err != nil {
			return err
		}
		op.SetMetadata(map[string]any{"return": code})
		return nil
	}
	return asyncResponse(w, d.ops.Start(ctx, spec))
}

// exitCode turns a wait status into a shell-style exit code.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// handleControl applies control messages (window size, signals) until the
// control websocket closes.
func handleControl(conn *websocket.Conn, proc *os.Process, pty *os.File) {
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var msg api.InstanceExecControl
		if err := json.Unmarshal(data, &msg); err != nil {
			slog.Debug("bad exec control message", "err", err)
			continue
		}
		switch msg.Command {
		case "window-resize":
			if pty == nil {
				continue
			}
			w, _ := strconv.Atoi(msg.Args["width"])
			h, _ := strconv.Atoi(msg.Args["height"])
			if w > 0 && h > 0 {
				_ = unix.IoctlSetWinsize(int(pty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(w), Row: uint16(h)})
			}
		case "signal":
			if msg.Signal > 0 && msg.Signal < 65 {
				// A signal sent right after the start (a client that
				// forwards ^C at once) would be lost before the exec.
				liblxc.WaitExec(proc.Pid, 5*time.Second)
				_ = proc.Signal(syscall.Signal(msg.Signal))
			}
		}
	}
}

// wsWriter sends everything written to it as binary websocket messages.
type wsWriter struct {
	conn *websocket.Conn
	mu   sync.Mutex
}

func (w *wsWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.conn.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// close tells the client the stream has ended.
func (w *wsWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
}

// copyFromWebsocket writes every binary message of conn to dst until the
// client closes its side. In LXD's protocol a text message on a stdin
// websocket means end of input; on a terminal (eofOnText false) there is
// no such thing, so text messages are ignored.
func copyFromWebsocket(dst io.Writer, conn *websocket.Conn, eofOnText bool) {
	for {
		mt, r, err := conn.NextReader()
		if err != nil {
			return
		}
		if mt == websocket.TextMessage && eofOnText {
			return
		}
		if mt != websocket.BinaryMessage {
			continue
		}
		if _, err := io.Copy(dst, r); err != nil {
			return
		}
	}
}

// execPiped runs a command with separate stdin, stdout and stderr.
func (d *Daemon) execPiped(name string, p liblxc.Process, s *execSession) (int, error) {
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	p.Stdin, p.Stdout, p.Stderr = stdinR, stdoutW, stderrW
	proc, err := d.runtime.Exec(name, p)
	// The child has its copies; ours must go so that EOF can arrive.
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdinW.Close()
		stdoutR.Close()
		stderrR.Close()
		return -1, err
	}
	go func() {
		copyFromWebsocket(stdinW, s.conn("0"), true)
		stdinW.Close()
	}()
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		if c := s.controlConn(exited); c != nil {
			handleControl(c, proc, nil)
		}
	}()
	var wg sync.WaitGroup
	for fd, r := range map[string]*os.File{"1": stdoutR, "2": stderrR} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &wsWriter{conn: s.conn(fd)}
			_, _ = io.Copy(out, r)
			r.Close()
			out.close()
		}()
	}
	ps, err := proc.Wait()
	if err != nil {
		return -1, fmt.Errorf("wait for command: %w", err)
	}
	// Output still buffered in the pipes is delivered; a background
	// process that keeps them open does not hold the exec forever.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		stdoutR.SetDeadline(time.Now())
		stderrR.SetDeadline(time.Now())
		<-done
	}
	return exitCode(ps), nil
}

// execInteractive runs a command on a new pseudo-terminal.
func (d *Daemon) execInteractive(name string, p liblxc.Process, s *execSession, m idmap.Map, width, height int) (int, error) {
	var devpts *os.File
	if f, err := d.runtime.Devpts(name); err == nil {
		devpts = f
		defer devpts.Close()
	}
	master, slave, err := openPty(devpts, int(m.ShiftUID(0)), int(m.ShiftGID(0)))
	if err != nil {
		return -1, err
	}
	defer master.Close()
	if width > 0 && height > 0 {
		_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(width), Row: uint16(height)})
	}
	p.Stdin, p.Stdout, p.Stderr = slave, slave, slave
	proc, err := d.runtime.Exec(name, p)
	slave.Close()
	if err != nil {
		return -1, err
	}
	conn := s.conn("0")
	go copyFromWebsocket(master, conn, false)
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		if c := s.controlConn(exited); c != nil {
			handleControl(c, proc, master)
		}
	}()
	out := &wsWriter{conn: conn}
	copied := make(chan struct{})
	go func() {
		_, _ = io.Copy(out, master) // ends with EIO once no process holds the terminal
		close(copied)
	}()
	ps, err := proc.Wait()
	if err != nil {
		return -1, fmt.Errorf("wait for command: %w", err)
	}
	select {
	case <-copied:
	case <-time.After(time.Second):
		master.SetReadDeadline(time.Now())
		<-copied
	}
	out.close()
	return exitCode(ps), nil
}

// openPty opens a new pseudo-terminal whose slave belongs to the
// container's root, so that the shell inside can use it as its own. With
// the container's devpts the terminal is created there; otherwise (no
// devpts fd) on the host's.
func openPty(devpts *os.File, uid, gid int) (master, slave *os.File, err error) {
	if devpts != nil {
		fd, err := unix.Openat(int(devpts.Fd()), "ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("open container pty: %w", err)
		}
		master = os.NewFile(uintptr(fd), "ptmx")
	} else if master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0); err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER opens the slave from the master, without a path that
	// would have to be looked up in the right devpts.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", errno)
	}
	slave = os.NewFile(sfd, "pts")
	if err := errors.Join(slave.Chown(uid, gid), slave.Chmod(0o620)); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("chown pty: %w", err)
	}
	return master, slave, nil
}

// execRecorded runs a command without websockets; with record-output its
// stdout and stderr are kept as log files of the instance.
func (d *Daemon) execRecorded(ctx context.Context, op *operations.Operation, name string, p liblxc.Process, record bool) error {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	p.Stdin, p.Stdout, p.Stderr = devnull, devnull, devnull
	output := map[string]string{}
	if record {
		dir := filepath.Join(d.runtime.LogDir, name, "exec-output")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for fd, suffix := range map[string]string{"1": "stdout", "2": "stderr"} {
			file := "exec_" + op.ID() + "." + suffix
			f, err := os.Create(filepath.Join(dir, file))
			if err != nil {
				return err
			}
			defer f.Close()
			if fd == "1" {
				p.Stdout = f
			} else {
				p.Stderr = f
			}
			output[fd] = instanceURL(name) + "/logs/exec-output/" + file
		}
	}
	proc, err := d.runtime.Exec(name, p)
	if err != nil {
		return err
	}
	ps, err := proc.Wait()
	if err != nil {
		return fmt.Errorf("wait for command: %w", err)
	}
	md := map[string]any{"return": exitCode(ps)}
	if record {
		md["output"] = output
	}
	op.SetMetadata(md)
	return nil
}
