package tests

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"cell/tests/harness"
)

// execOp is a started exec operation with wait-for-websocket.
type execOp struct {
	t     *testing.T
	d     *harness.Daemon
	url   string
	conns map[string]*websocket.Conn
}

// startExec posts an exec request and connects every websocket it offers
// (control first, as LXD's client does).
func startExec(t *testing.T, d *harness.Daemon, name string, req map[string]any) *execOp {
	t.Helper()
	req["wait-for-websocket"] = true
	status, env := d.API("POST", "/1.0/instances/"+name+"/exec", req)
	if status != http.StatusAccepted {
		t.Fatalf("exec: status %d: %s", status, env.Error)
	}
	var op struct {
		ID       string `json:"id"`
		Metadata struct {
			FDs map[string]string `json:"fds"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(env.Metadata, &op); err != nil {
		t.Fatalf("decode exec operation: %v", err)
	}
	want := []string{"control", "0", "1", "2"}
	if req["interactive"] == true {
		want = []string{"control", "0"}
	}
	if len(op.Metadata.FDs) != len(want) {
		t.Fatalf("exec fds %v, want %v", op.Metadata.FDs, want)
	}
	e := &execOp{t: t, d: d, url: env.Operation, conns: map[string]*websocket.Conn{}}
	for _, fd := range want {
		secret := op.Metadata.FDs[fd]
		if secret == "" {
			t.Fatalf("exec fds %v lack %q", op.Metadata.FDs, fd)
		}
		e.conns[fd] = dialWebsocket(t, d, "/1.0/operations/"+op.ID+"/websocket?secret="+secret)
	}
	return e
}

// readAll collects the binary messages of a websocket until it closes.
func readAll(conn *websocket.Conn) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		for {
			mt, data, err := conn.ReadMessage()
			if err != nil {
				break
			}
			if mt == websocket.BinaryMessage {
				buf.Write(data)
			}
		}
		out <- buf.Bytes()
	}()
	return out
}

// closeStdin ends the command's input as LXD's protocol says: a text
// message on the stdin websocket.
func (e *execOp) closeStdin() {
	if err := e.conns["0"].WriteMessage(websocket.TextMessage, []byte{}); err != nil {
		e.t.Fatalf("close stdin: %v", err)
	}
}

func (e *execOp) control(msg map[string]any) {
	if err := e.conns["control"].WriteJSON(msg); err != nil {
		e.t.Fatalf("control message: %v", err)
	}
}

// wait waits for the operation and returns its exit code.
func (e *execOp) wait() int {
	e.t.Helper()
	code, err := e.waitCode()
	if err != nil {
		e.t.Fatal(err)
	}
	return code
}

// waitCode is wait for a goroutine other than the test's: it returns the
// error instead of failing the test.
func (e *execOp) waitCode() (int, error) {
	resp, err := e.d.HTTP().Get("http://celld" + e.url + "/wait?timeout=60")
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	var env harness.Response
	var op harness.Operation
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return -1, fmt.Errorf("decode operation: %w", err)
	}
	if err := json.Unmarshal(env.Metadata, &op); err != nil {
		return -1, fmt.Errorf("decode operation: %w", err)
	}
	if op.StatusCode != 200 {
		return -1, fmt.Errorf("exec operation %s: %s", op.Status, op.Err)
	}
	code, ok := op.Metadata["return"].(float64)
	if !ok {
		return -1, fmt.Errorf("exec operation has no return code: %v", op.Metadata)
	}
	return int(code), nil
}

// waitWithin waits for the exit code for at most timeout.
func (e *execOp) waitWithin(timeout time.Duration, what string) int {
	e.t.Helper()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := e.waitCode()
		done <- result{code, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			e.t.Fatal(r.err)
		}
		return r.code
	case <-time.After(timeout):
		e.t.Fatalf("%s: still running after %s", what, timeout)
		return -1
	}
}

// execWS runs a non-interactive command over websockets, with stdin fed
// and then closed.
func execWS(t *testing.T, d *harness.Daemon, name string, req map[string]any, stdin []byte) (stdout, stderr string, code int) {
	t.Helper()
	e := startExec(t, d, name, req)
	outC, errC := readAll(e.conns["1"]), readAll(e.conns["2"])
	if len(stdin) > 0 {
		if err := e.conns["0"].WriteMessage(websocket.BinaryMessage, stdin); err != nil {
			t.Fatalf("write stdin: %v", err)
		}
	}
	e.closeStdin()
	code = e.wait()
	return string(<-outC), string(<-errC), code
}

// execCommand runs a command and returns its stdout and exit code.
func execCommand(t *testing.T, d *harness.Daemon, name string, args ...string) (string, int) {
	t.Helper()
	out, errOut, code := execWS(t, d, name, map[string]any{"command": args}, nil)
	if errOut != "" {
		t.Logf("%s: stderr: %s", strings.Join(args, " "), errOut)
	}
	return out, code
}

// TestExec checks the exec API over raw websockets, as LXD clients use it.
func TestExec(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "x", map[string]string{"environment.FROM_CONFIG": "config-value"})

	t.Run("stdout stderr and exit code", func(t *testing.T) {
		out, errOut, code := execWS(t, d, "x", map[string]any{
			"command": []string{"sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"}}, nil)
		if out != "to-stdout\n" || errOut != "to-stderr\n" || code != 7 {
			t.Errorf("got stdout %q stderr %q code %d, want %q %q 7", out, errOut, code, "to-stdout\n", "to-stderr\n")
		}
	})

	t.Run("stdin streamed until EOF", func(t *testing.T) {
		// 1 MiB in 64 KiB messages: more than any pipe buffer, so stdin and
		// stdout must flow at the same time.
		data := make([]byte, 1<<20)
		_, _ = rand.Read(data)
		e := startExec(t, d, "x", map[string]any{"command": []string{"sh", "-c", "cat; echo END >&2"}})
		outC, errC := readAll(e.conns["1"]), readAll(e.conns["2"])
		for off := 0; off < len(data); off += 64 << 10 {
			if err := e.conns["0"].WriteMessage(websocket.BinaryMessage, data[off:off+64<<10]); err != nil {
				t.Fatalf("write stdin: %v", err)
			}
		}
		e.closeStdin()
		if code := e.waitWithin(30*time.Second, "cat after the end of its input (the text message must close stdin)"); code != 0 {
			t.Errorf("exit code %d", code)
		}
		if out := <-outC; !bytes.Equal(out, data) {
			t.Errorf("stdout: %d bytes back of %d sent, equal=%v", len(out), len(data), bytes.Equal(out, data))
		}
		if errOut := <-errC; string(errOut) != "END\n" {
			t.Errorf("stderr %q, want END", errOut)
		}
	})

	t.Run("command not found", func(t *testing.T) {
		out, errOut, code := execWS(t, d, "x", map[string]any{"command": []string{"/no/such/command"}}, nil)
		if code == 0 {
			t.Errorf("a missing command exited 0 (stdout %q, stderr %q)", out, errOut)
		}
		t.Logf("exit code of a missing command: %d", code)
	})

	t.Run("environment", func(t *testing.T) {
		out, _, code := execWS(t, d, "x", map[string]any{
			"command":     []string{"sh", "-c", `echo "$FROM_REQUEST|$FROM_CONFIG|$HOME|$PATH"`},
			"environment": map[string]string{"FROM_REQUEST": "request value"}}, nil)
		want := "request value|config-value|/root|"
		if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "/bin") {
			t.Errorf("got %q (exit %d), want prefix %q and a PATH with /bin", out, code, want)
		}
		// The request wins over the instance's config.
		out, _, _ = execWS(t, d, "x", map[string]any{
			"command":     []string{"sh", "-c", `echo "$FROM_CONFIG"`},
			"environment": map[string]string{"FROM_CONFIG": "override"}}, nil)
		if out != "override\n" {
			t.Errorf("request environment did not override environment.FROM_CONFIG: %q", out)
		}
	})

	t.Run("cwd user group", func(t *testing.T) {
		out, errOut, code := execWS(t, d, "x", map[string]any{
			"command": []string{"sh", "-c", "pwd; id -u; id -g; touch f && stat -c %u:%g f; rm f"},
			"cwd":     "/tmp", "user": 65534, "group": 65534}, nil)
		if want := "/tmp\n65534\n65534\n65534:65534\n"; out != want || code != 0 {
			t.Errorf("got %q (stderr %q, exit %d), want %q", out, errOut, code, want)
		}
	})

	t.Run("record output", func(t *testing.T) {
		status, env := d.API("POST", "/1.0/instances/x/exec", map[string]any{
			"command":            []string{"sh", "-c", "echo recorded-out; echo recorded-err >&2; exit 4"},
			"wait-for-websocket": false, "record-output": true})
		if status != http.StatusAccepted {
			t.Fatalf("exec: %d %s", status, env.Error)
		}
		op := d.Wait(env)
		if op.StatusCode != 200 {
			t.Fatalf("exec operation failed: %s", op.Err)
		}
		if code, _ := op.Metadata["return"].(float64); code != 4 {
			t.Errorf("return %v, want 4", op.Metadata["return"])
		}
		output, _ := op.Metadata["output"].(map[string]any)
		for fd, want := range map[string]string{"1": "recorded-out\n", "2": "recorded-err\n"} {
			url, _ := output[fd].(string)
			if !strings.HasPrefix(url, "/1.0/instances/x/logs/exec-output/") {
				t.Errorf("output[%s] = %q, want a log under /1.0/instances/x/logs/exec-output/", fd, url)
				continue
			}
			resp, err := d.HTTP().Get("http://celld" + url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("GET %s: %d %q, want %q", url, resp.StatusCode, body, want)
			}
		}
	})

	t.Run("interactive tty", func(t *testing.T) {
		e := startExec(t, d, "x", map[string]any{"command": []string{"tty"}, "interactive": true, "width": 80, "height": 24})
		outC := readAll(e.conns["0"])
		code := e.wait()
		out := strings.TrimSpace(string(<-outC))
		if code != 0 || !regexp.MustCompile(`^/dev/pts/[0-9]+$`).MatchString(out) {
			t.Errorf("tty printed %q (exit %d), want /dev/pts/N", out, code)
		}
	})

	t.Run("interactive window resize", func(t *testing.T) {
		e := startExec(t, d, "x", map[string]any{
			"command":     []string{"sh", "-c", "stty size; while read x; do stty size; done"},
			"interactive": true, "width": 80, "height": 24})
		var mu sync.Mutex
		var out bytes.Buffer
		go func() {
			for {
				_, data, err := e.conns["0"].ReadMessage()
				if err != nil {
					return
				}
				mu.Lock()
				out.Write(data)
				mu.Unlock()
			}
		}()
		seen := func(s string) bool {
			mu.Lock()
			defer mu.Unlock()
			return strings.Contains(out.String(), s)
		}
		waitUntil(t, 10*time.Second, "initial size 24 80", func() bool { return seen("24 80") })
		e.control(map[string]any{"command": "window-resize", "args": map[string]string{"width": "132", "height": "43"}})
		// Control and input travel on different websockets: ask again until
		// the new size shows.
		waitUntil(t, 10*time.Second, "new size 43 132", func() bool {
			_ = e.conns["0"].WriteMessage(websocket.BinaryMessage, []byte("\n"))
			time.Sleep(100 * time.Millisecond)
			return seen("43 132")
		})
		_ = e.conns["0"].WriteMessage(websocket.BinaryMessage, []byte{4}) // ^D: end of input
		if code := e.wait(); code != 0 {
			mu.Lock()
			t.Errorf("exit %d; output %q", code, out.String())
			mu.Unlock()
		}
	})

	for _, interactive := range []bool{false, true} {
		t.Run(fmt.Sprintf("signal interactive=%v", interactive), func(t *testing.T) {
			e := startExec(t, d, "x", map[string]any{"command": []string{"sleep", "100"}, "interactive": interactive})
			// At once: a client that forwards ^C right away must not lose it.
			e.control(map[string]any{"command": "signal", "signal": 15})
			if code := e.waitWithin(30*time.Second, "sleep 100 after SIGTERM over the control websocket"); code != 143 {
				t.Errorf("exit code %d after SIGTERM, want 143", code)
			}
		})
	}

	t.Run("without control websocket", func(t *testing.T) {
		// pylxd connects only 0, 1 and 2: the command must run anyway.
		status, env := d.API("POST", "/1.0/instances/x/exec", map[string]any{
			"command": []string{"echo", "no-control"}, "wait-for-websocket": true})
		if status != http.StatusAccepted {
			t.Fatalf("exec: %d %s", status, env.Error)
		}
		var op struct {
			ID       string `json:"id"`
			Metadata struct {
				FDs map[string]string `json:"fds"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(env.Metadata, &op)
		e := &execOp{t: t, d: d, url: env.Operation, conns: map[string]*websocket.Conn{}}
		for _, fd := range []string{"0", "1", "2"} {
			e.conns[fd] = dialWebsocket(t, d, "/1.0/operations/"+op.ID+"/websocket?secret="+op.Metadata.FDs[fd])
		}
		outC := readAll(e.conns["1"])
		e.closeStdin()
		code := e.waitWithin(40*time.Second, "a command without a control websocket")
		if out := string(<-outC); code != 0 || out != "no-control\n" {
			t.Errorf("got %q exit %d", out, code)
		}
	})

	t.Run("c exec", func(t *testing.T) {
		if _, _, code := d.C("exec", "--help"); code != 0 {
			t.Skip("the c client has no working exec command yet")
		}
		out, errOut, code := d.C("exec", "x", "--", "sh", "-c", "echo c-out; echo c-err >&2; exit 5")
		if out != "c-out\n" || errOut != "c-err\n" || code != 5 {
			t.Errorf("c exec: stdout %q stderr %q exit %d, want c-out, c-err, 5", out, errOut, code)
		}
	})
}
