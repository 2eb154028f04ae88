package client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"

	"cell/shared/api"
)

func TestNamesFromURLs(t *testing.T) {
	got := namesFromURLs([]string{
		"/1.0/instances/c1",
		"/1.0/instances/web%20one",
		"/1.0/instances/c2?project=default",
	})
	want := []string{"c1", "web one", "c2"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("namesFromURLs = %q, want %q", got, want)
	}
}

func TestURLPathEscapes(t *testing.T) {
	if got := urlPath("images", "aliases", "a/b c"); got != "/1.0/images/aliases/a%2Fb%20c" {
		t.Fatalf("urlPath = %q", got)
	}
}

func TestOperationID(t *testing.T) {
	for in, want := range map[string]string{
		"/1.0/operations/abc-123":              "abc-123",
		"/1.0/operations/abc-123?project=prod": "abc-123",
		"abc":                                  "abc",
	} {
		if got := operationID(in); got != want {
			t.Errorf("operationID(%q) = %q, want %q", in, got, want)
		}
	}
}

func response(status int, contentType, body string) *http.Response {
	return &http.Response{
		StatusCode: status,
		Status:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header:     http.Header{"Content-Type": {contentType}},
		Body:       io.NopCloser(strings.NewReader(body)),
	}
}

func TestDecodeEnvelopeError(t *testing.T) {
	_, err := decodeEnvelope(response(404, "application/json",
		`{"type":"error","status":"","status_code":0,"operation":"","error_code":404,"error":"Instance not found","metadata":null}`))
	if err == nil || err.Error() != "Instance not found" {
		t.Fatalf("err = %v, want the server's message verbatim", err)
	}
	if !IsNotFound(err) || StatusCode(fmt.Errorf("wrapped: %w", err)) != 404 {
		t.Fatalf("status lost: %v", err)
	}
}

func TestDecodeEnvelopeNotJSON(t *testing.T) {
	_, err := decodeEnvelope(response(502, "text/plain", "bad gateway\n"))
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 502 || e.Message != "bad gateway" {
		t.Fatalf("err = %#v", err)
	}
}

func TestDecodeEnvelopeSync(t *testing.T) {
	env, err := decodeEnvelope(response(200, "application/json",
		`{"type":"sync","status":"Success","status_code":200,"metadata":["/1.0/profiles/default"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	if err := decodeMetadata(env, &urls); err != nil || len(urls) != 1 {
		t.Fatalf("metadata = %v, %v", urls, err)
	}
}

func TestExitCode(t *testing.T) {
	if code, err := ExitCode(map[string]any{"return": float64(7)}); err != nil || code != 7 {
		t.Fatalf("ExitCode = %d, %v", code, err)
	}
	if _, err := ExitCode(map[string]any{}); err == nil {
		t.Fatal("missing return code accepted")
	}
	if _, err := ExitCode(map[string]any{"return": "x"}); err == nil {
		t.Fatal("non-numeric return code accepted")
	}
}

func TestExecSecrets(t *testing.T) {
	fds, err := execSecrets(map[string]any{"fds": map[string]any{"0": "s0", "control": "sc"}})
	if err != nil || fds["0"] != "s0" || fds["control"] != "sc" {
		t.Fatalf("execSecrets = %v, %v", fds, err)
	}
	if _, err := execSecrets(map[string]any{}); err == nil {
		t.Fatal("missing fds accepted")
	}
}

func TestOperationDone(t *testing.T) {
	op := &Operation{Operation: api.Operation{StatusCode: api.Running}}
	if done, _ := op.done(); done {
		t.Fatal("running operation reported done")
	}
	op.StatusCode, op.Err = api.Failure, "Command not found"
	done, err := op.done()
	if !done || err == nil || err.Error() != "Command not found" {
		t.Fatalf("failed operation: done=%v err=%v", done, err)
	}
	op.StatusCode, op.Err = api.Success, ""
	if done, err := op.done(); !done || err != nil {
		t.Fatalf("successful operation: done=%v err=%v", done, err)
	}
}

func TestFileHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("X-LXD-uid", "1000")
	h.Set("X-LXD-gid", "100")
	h.Set("X-LXD-mode", "4755")
	h.Set("X-LXD-type", "file")
	f, err := fileHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	if f.UID != 1000 || f.GID != 100 || f.Type != "file" || f.Mode != 0o755|os.ModeSetuid {
		t.Fatalf("fileHeaders = %+v", f)
	}
	h.Set("X-LXD-mode", "rwx")
	if _, err := fileHeaders(h); err == nil {
		t.Fatal("bad mode accepted")
	}
}

func TestUnixModeRoundTrip(t *testing.T) {
	for _, bits := range []uint32{0o644, 0o755, 0o4755, 0o2750, 0o1777, 0} {
		if got := unixMode(goMode(bits)); got != bits {
			t.Errorf("unixMode(goMode(%o)) = %o", bits, got)
		}
	}
}

func TestInstanceNameFromOperation(t *testing.T) {
	op := &api.Operation{Resources: map[string][]string{"instances": {"/1.0/instances/happy-cat"}}}
	if got := InstanceNameFromOperation(op); got != "happy-cat" {
		t.Fatalf("InstanceNameFromOperation = %q", got)
	}
	if got := InstanceNameFromOperation(&api.Operation{}); got != "" {
		t.Fatalf("no resources gave %q", got)
	}
}

func TestDispositionFilename(t *testing.T) {
	if got := dispositionFilename(`attachment; filename="abc.tar.xz"`); got != "abc.tar.xz" {
		t.Fatalf("dispositionFilename = %q", got)
	}
}

func TestDefaultSocketPath(t *testing.T) {
	t.Setenv("CELL_DIR", "/tmp/x")
	if got := DefaultSocketPath(); got != "/tmp/x/unix.socket" {
		t.Fatalf("DefaultSocketPath = %q", got)
	}
	t.Setenv("CELL_DIR", "")
	if got := DefaultSocketPath(); got != "/var/lib/cell/unix.socket" {
		t.Fatalf("DefaultSocketPath = %q", got)
	}
}
