// Package client is a Go client for celld's REST API 1.0, the API that LXD
// speaks. It talks to a local server over its unix socket; the transport is
// kept behind a small seam (an http.Client, a websocket dialer and a base URL)
// so that an HTTPS transport can be added without touching the API methods.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"cell/shared/api"
	"cell/shared/tlsutil"
)

// DefaultDir is the server's data directory when CELL_DIR is not set.
const DefaultDir = "/var/lib/cell"

// UserAgent is sent with every request.
var UserAgent = "cell-client/1.0"

// Client is a connection to one server. It is safe for concurrent use.
type Client struct {
	http    *http.Client
	dialer  *websocket.Dialer
	baseURL string // scheme and host of HTTP requests, e.g. "http://unix.socket"
	wsURL   string // scheme and host of websocket requests, e.g. "ws://unix.socket"
	desc    string // where the server is, for error messages
	remote  string // the remote's name, for error messages (SetRemoteName)
}

// DefaultSocketPath is $CELL_DIR/unix.socket, with CELL_DIR defaulting to
// /var/lib/cell.
func DefaultSocketPath() string {
	dir := os.Getenv("CELL_DIR")
	if dir == "" {
		dir = DefaultDir
	}
	return filepath.Join(dir, "unix.socket")
}

// ConnectUnix returns a client for the server listening on the unix socket
// at socketPath (DefaultSocketPath when empty). It does not contact the
// server: the first request does, and reports an unreachable server then.
func ConnectUnix(socketPath string) *Client {
	if socketPath == "" {
		socketPath = DefaultSocketPath()
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}
	transport := &http.Transport{
		DialContext:     dial,
		MaxIdleConns:    4,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{
		http: &http.Client{Transport: transport},
		dialer: &websocket.Dialer{
			NetDialContext:   dial,
			HandshakeTimeout: 30 * time.Second,
		},
		// The host part is ignored by the dialer; LXD's clients use the same
		// placeholder, so server logs look alike.
		baseURL: "http://unix.socket",
		wsURL:   "ws://unix.socket",
		desc:    socketPath,
	}
}

// ConnectHTTPS returns a client for the server at addr ("https://host:port"
// or "host:port") that authenticates with the client key pair (PEM) and
// accepts exactly the server certificate serverCertPEM: servers use
// self-signed certificates, so the certificate is pinned rather than
// validated against a CA. Like ConnectUnix it does not contact the server.
func ConnectHTTPS(addr string, clientCertPEM, clientKeyPEM, serverCertPEM []byte) (*Client, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "https://"), "/")
	if host == "" || strings.ContainsAny(host, "/?#") {
		return nil, fmt.Errorf("invalid server address %q: want https://host:port", addr)
	}
	var pair *tls.Certificate
	if clientCertPEM != nil {
		p, err := tls.X509KeyPair(clientCertPEM, clientKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("load the client certificate: %w", err)
		}
		pair = &p
	}
	var pinned *x509.Certificate
	if serverCertPEM != nil {
		cert, err := tlsutil.ParseCertPEM(serverCertPEM)
		if err != nil {
			return nil, fmt.Errorf("the server certificate for %s: %w", addr, err)
		}
		pinned = cert
	}
	conf := tlsutil.ClientConfig(pair, pinned)
	transport := &http.Transport{
		TLSClientConfig:     conf,
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		TLSHandshakeTimeout: 30 * time.Second,
	}
	return &Client{
		http:    &http.Client{Transport: transport},
		dialer:  &websocket.Dialer{TLSClientConfig: conf, HandshakeTimeout: 30 * time.Second, Proxy: http.ProxyFromEnvironment},
		baseURL: "https://" + host,
		wsURL:   "wss://" + host,
		desc:    "https://" + host,
	}, nil
}

// SetRemoteName names the remote this client talks to, so that a server
// presenting another certificate than the pinned one is reported as such.
func (c *Client) SetRemoteName(name string) { c.remote = name }

// transportError explains a failed connection.
func (c *Client) transportError(err error) error {
	var mismatch *tlsutil.MismatchError
	if errors.As(err, &mismatch) {
		name := c.remote
		if name == "" {
			name = c.desc
		}
		return fmt.Errorf("the server's certificate changed since it was added as remote %s: its fingerprint was %s, is now %s", name, mismatch.Pinned, mismatch.Presented)
	}
	return fmt.Errorf("cannot reach the server at %s: %w", c.desc, err)
}

// Error is an error answer of the server. Message is the server's text
// verbatim, StatusCode the HTTP status (404, 409, ...).
type Error struct {
	StatusCode int
	Message    string
}

func (e *Error) Error() string { return e.Message }

// StatusCode returns the HTTP status of a server error found in err's chain,
// or 0 when err did not come from a server answer.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is the server saying 404.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// request describes one API call.
type request struct {
	method  string
	path    string     // "/1.0/..." already escaped
	query   url.Values // may be nil
	body    any        // nil, an io.Reader sent as is, or a value sent as JSON
	etag    string     // sent as If-Match when not empty
	headers http.Header
	// length is the body's size when body is a reader of known size
	// (-1 or 0 when unknown), so that servers see a Content-Length.
	length int64
}

// rawDo sends a request and returns the HTTP response unread. The caller
// closes its body.
func (c *Client) rawDo(ctx context.Context, r request) (*http.Response, error) {
	u := c.baseURL + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}

	var body io.Reader
	contentType := ""
	switch b := r.body.(type) {
	case nil:
	case io.Reader:
		body = b
		contentType = "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode request to %s: %w", r.path, err)
		}
		body = bytes.NewReader(data)
		r.length = int64(len(data))
		contentType = "application/json"
	}

	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s %s: %w", r.method, r.path, err)
	}
	if r.length > 0 {
		req.ContentLength = r.length
	}
	req.Header.Set("User-Agent", UserAgent)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.etag != "" {
		req.Header.Set("If-Match", r.etag)
	}
	for k, vs := range r.headers {
		req.Header[k] = vs
	}

	slog.Debug("api request", "method", r.method, "path", r.path, "query", r.query.Encode())
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The URL in a *url.Error is a placeholder for unix sockets: say
		// where the server really is instead.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, c.transportError(err)
	}
	slog.Debug("api response", "method", r.method, "path", r.path, "status", resp.StatusCode)
	return resp, nil
}

// do sends a request and decodes the response envelope. Error answers come
// back as *Error. The second result is the ETag header.
func (c *Client) do(ctx context.Context, r request) (*api.Response, string, error) {
	resp, err := c.rawDo(ctx, r)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	env, err := decodeEnvelope(resp)
	if err != nil {
		return nil, "", err
	}
	return env, resp.Header.Get("ETag"), nil
}

// decodeEnvelope reads a JSON response envelope and turns error answers into
// *Error values.
func decodeEnvelope(resp *http.Response) (*api.Response, error) {
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	var env api.Response
	if err := json.Unmarshal(data, &env); err != nil {
		// Not an API answer at all: keep the HTTP status so callers can
		// still tell a 404 from the rest.
		msg := strings.TrimSpace(string(data))
		if msg == "" || len(msg) > 200 {
			msg = resp.Status
		}
		return nil, &Error{StatusCode: resp.StatusCode, Message: msg}
	}
	if env.Type == api.ErrorResponse || resp.StatusCode >= 400 {
		code := env.ErrorCode
		if code == 0 {
			code = resp.StatusCode
		}
		msg := env.Error
		if msg == "" {
			msg = resp.Status
		}
		return nil, &Error{StatusCode: code, Message: msg}
	}
	return &env, nil
}

// get fetches path and decodes the metadata into out. It returns the ETag.
func (c *Client) get(ctx context.Context, p string, query url.Values, out any) (string, error) {
	env, etag, err := c.do(ctx, request{method: http.MethodGet, path: p, query: query})
	if err != nil {
		return "", err
	}
	if out != nil {
		if err := decodeMetadata(env, out); err != nil {
			return "", fmt.Errorf("GET %s: %w", p, err)
		}
	}
	return etag, nil
}

// sync sends a request that the server answers synchronously.
func (c *Client) sync(ctx context.Context, method, p string, body any, etag string) error {
	_, _, err := c.do(ctx, request{method: method, path: p, body: body, etag: etag})
	return err
}

func decodeMetadata(env *api.Response, out any) error {
	if len(env.Metadata) == 0 {
		return nil
	}
	if err := json.Unmarshal(env.Metadata, out); err != nil {
		return fmt.Errorf("decode response metadata: %w", err)
	}
	return nil
}

// recursion returns the query selecting a recursion level.
func recursion(level int) url.Values {
	return url.Values{"recursion": {fmt.Sprint(level)}}
}

// namesFromURLs turns a list of resource URLs ("/1.0/instances/c1") into
// names ("c1").
func namesFromURLs(urls []string) []string {
	names := make([]string, 0, len(urls))
	for _, u := range urls {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i] // e.g. "?project=default"
		}
		name := path.Base(u)
		if unescaped, err := url.PathUnescape(name); err == nil {
			name = unescaped
		}
		names = append(names, name)
	}
	return names
}

// urlPath joins escaped path segments onto /1.0.
func urlPath(segments ...string) string {
	var b strings.Builder
	b.WriteString("/1.0")
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// RawResponse is the answer to a raw query.
type RawResponse struct {
	StatusCode  int
	ContentType string
	ETag        string
	// Envelope is the decoded API envelope when the answer was JSON.
	Envelope *api.Response
	// Body is the answer as received when it was not a JSON envelope (a
	// file, an image tarball).
	Body []byte
}

// RawQuery sends any request to the API, for tools like `c query`. path
// starts with "/1.0" and may carry a query string; body is sent as JSON
// unless it is an io.Reader. Error answers come back as *Error.
func (c *Client) RawQuery(ctx context.Context, method, p string, body any, etag string) (*RawResponse, error) {
	r := request{method: method, path: p, body: body, etag: etag}
	if i := strings.IndexByte(p, '?'); i >= 0 {
		q, err := url.ParseQuery(p[i+1:])
		if err != nil {
			return nil, fmt.Errorf("bad query string in %q: %w", p, err)
		}
		r.path, r.query = p[:i], q
	}
	resp, err := c.rawDo(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()

	out := &RawResponse{
		StatusCode:  resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
		ETag:        resp.Header.Get("ETag"),
	}
	mediaType, _, _ := mime.ParseMediaType(out.ContentType)
	if mediaType == "application/json" || resp.StatusCode >= 400 {
		env, err := decodeEnvelope(resp)
		if err != nil {
			return nil, err
		}
		out.Envelope = env
		return out, nil
	}
	out.Body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return out, nil
}

// websocket opens the websocket at path (already escaped, with its query).
func (c *Client) websocket(ctx context.Context, p string, query url.Values) (*websocket.Conn, error) {
	u := c.wsURL + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	header := http.Header{"User-Agent": {UserAgent}}
	conn, resp, err := c.dialer.DialContext(ctx, u, header)
	if err != nil {
		// A refused upgrade still carries the server's error envelope.
		if resp != nil && resp.Body != nil {
			defer resp.Body.Close()
			if _, apiErr := decodeEnvelope(resp); apiErr != nil {
				return nil, apiErr
			}
		}
		var mismatch *tlsutil.MismatchError
		if errors.As(err, &mismatch) {
			return nil, c.transportError(err)
		}
		return nil, fmt.Errorf("websocket %s: %w", p, err)
	}
	return conn, nil
}
