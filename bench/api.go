package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// envelope is the API's response envelope.
type envelope struct {
	Type       string          `json:"type"`
	StatusCode int             `json:"status_code"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Operation  string          `json:"operation"`
	Metadata   json.RawMessage `json:"metadata"`
}

// operation is the part of an operation the benchmark reads.
type operation struct {
	ID         string         `json:"id"`
	Status     string         `json:"status"`
	StatusCode int            `json:"status_code"`
	Err        string         `json:"err"`
	Metadata   map[string]any `json:"metadata"`
}

// server is one daemon under test (celld or LXD), reached over its unix
// socket by a Go HTTP client (API-only figures) and by LXD's `lxc` client
// (CLI figures).
type server struct {
	kind   string // "celld" or "lxd"
	dir    string // CELL_DIR or LXD_DIR
	socket string
	prefix string // instance name prefix, unique per run and daemon
	cliEnv []string
	http   *http.Client

	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func newHTTPClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 4,
	}}
}

// pid is the daemon's process id (0 when not running).
func (s *server) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *server) alive() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// api sends a request; body is nil, an io.Reader (sent raw) or a value
// encoded as JSON.
func (s *server) api(ctx context.Context, method, path string, body any) (int, envelope, error) {
	var r io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, ctype = b, "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return 0, envelope{}, err
		}
		r, ctype = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://unix"+path, r)
	if err != nil {
		return 0, envelope{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, envelope{}, fmt.Errorf("%s: %s %s: %w", s.kind, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, envelope{}, fmt.Errorf("%s: %s %s: read answer: %w", s.kind, method, path, err)
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return resp.StatusCode, env, fmt.Errorf("%s: %s %s: not an API envelope (HTTP %d): %.200q", s.kind, method, path, resp.StatusCode, data)
	}
	if env.Type == "error" || resp.StatusCode >= 400 {
		return resp.StatusCode, env, fmt.Errorf("%s: %s %s: HTTP %d: %s", s.kind, method, path, resp.StatusCode, env.Error)
	}
	return resp.StatusCode, env, nil
}

// sync sends a request that must answer synchronously and decodes its
// metadata into out (when out is not nil).
func (s *server) sync(ctx context.Context, method, path string, body, out any) error {
	_, env, err := s.api(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(env.Metadata, out); err != nil {
			return fmt.Errorf("%s: %s %s: decode metadata: %w", s.kind, method, path, err)
		}
	}
	return nil
}

// async sends a request that starts an operation, waits for the operation
// and fails unless it succeeded.
func (s *server) async(ctx context.Context, method, path string, body any) (operation, error) {
	_, env, err := s.api(ctx, method, path, body)
	if err != nil {
		return operation{}, err
	}
	if env.Type != "async" || env.Operation == "" {
		return operation{}, fmt.Errorf("%s: %s %s: expected an async answer, got %q", s.kind, method, path, env.Type)
	}
	return s.wait(ctx, env.Operation, fmt.Sprintf("%s %s", method, path))
}

func (s *server) wait(ctx context.Context, opURL, what string) (operation, error) {
	var op operation
	if err := s.sync(ctx, "GET", opURL+"/wait?timeout=300", nil, &op); err != nil {
		return op, err
	}
	if op.StatusCode != 200 {
		return op, fmt.Errorf("%s: %s: operation %s: %s", s.kind, what, op.Status, op.Err)
	}
	return op, nil
}

func instPath(name string) string { return "/1.0/instances/" + url.PathEscape(name) }

func (s *server) create(ctx context.Context, name, alias string) error {
	_, err := s.async(ctx, "POST", "/1.0/instances", map[string]any{
		"name":   name,
		"type":   "container",
		"source": map[string]string{"type": "image", "alias": alias},
	})
	return err
}

func (s *server) state(ctx context.Context, name, action string, force bool) error {
	_, err := s.async(ctx, "PUT", instPath(name)+"/state", map[string]any{
		"action": action, "timeout": 30, "force": force,
	})
	return err
}

func (s *server) launch(ctx context.Context, name, alias string) error {
	if err := s.create(ctx, name, alias); err != nil {
		return err
	}
	return s.state(ctx, name, "start", false)
}

func (s *server) delete(ctx context.Context, name string) error {
	_, err := s.async(ctx, "DELETE", instPath(name), nil)
	return err
}

// execAPI runs a command with wait-for-websocket=false and waits for its
// operation: the API-only exec round trip.
func (s *server) execAPI(ctx context.Context, name string, command ...string) error {
	op, err := s.async(ctx, "POST", instPath(name)+"/exec", map[string]any{
		"command":            command,
		"environment":        map[string]string{},
		"wait-for-websocket": false,
		"record-output":      false,
		"interactive":        false,
	})
	if err != nil {
		return err
	}
	if rc, ok := op.Metadata["return"].(float64); !ok || rc != 0 {
		return fmt.Errorf("%s: exec %v in %s: return %v", s.kind, command, name, op.Metadata["return"])
	}
	return nil
}

// listNames returns the names of all instances.
func (s *server) listNames(ctx context.Context) ([]string, error) {
	var urls []string
	if err := s.sync(ctx, "GET", "/1.0/instances", nil, &urls); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(urls))
	for _, u := range urls {
		names = append(names, u[strings.LastIndex(u, "/")+1:])
	}
	return names, nil
}

// listFull is GET /1.0/instances?recursion=2; it returns the count.
func (s *server) listFull(ctx context.Context) (int, error) {
	var list []json.RawMessage
	if err := s.sync(ctx, "GET", "/1.0/instances?recursion=2", nil, &list); err != nil {
		return 0, err
	}
	return len(list), nil
}

// importImage uploads a unified image tarball and gives it an alias.
func (s *server) importImage(ctx context.Context, path, alias string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	op, err := s.async(ctx, "POST", "/1.0/images", f)
	if err != nil {
		return "", err
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	if fp == "" {
		return "", fmt.Errorf("%s: image upload returned no fingerprint: %+v", s.kind, op)
	}
	if err := s.sync(ctx, "POST", "/1.0/images/aliases", map[string]string{"name": alias, "target": fp}, nil); err != nil {
		return "", err
	}
	return fp, nil
}

// lxc runs LXD's `lxc` client against this daemon.
func (s *server) lxc(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "lxc", args...)
	cmd.Env = s.cliEnv
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: lxc %s: %w: %s", s.kind, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// vmRSS is the resident set size of a process in bytes, from /proc.
func vmRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS line")
}

// detached puts a child in its own process group: a Ctrl-C in the
// terminal then reaches the benchmark, which stops the daemons in order,
// rather than killing them under their containers.
func detached(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// runQuiet runs a command (outside the terminal's process group) with a
// time limit and returns its combined output.
func runQuiet(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	detached(cmd)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
