package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"cell/client"
	"cell/daemon"
	"cell/shared/api"
	"cell/shared/tlsutil"
	"cell/tests/harness"
)

// runC runs `c` with its own client configuration dir (a client machine
// of its own) and the daemon's environment otherwise.
func runC(t *testing.T, d *harness.Daemon, conf string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(d.Bin, "c"), args...)
	cmd.Env = append(os.Environ(), "CELL_DIR="+d.Dir, "CELL_CONF="+conf, "HOME="+conf)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run c: %v", err)
	}
	return out.String(), errb.String(), code
}

// untrustedClient connects to addr with a fresh client certificate that no
// server trusts.
func untrustedClient(t *testing.T, d *harness.Daemon, addr string) *client.Client {
	t.Helper()
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := tlsutil.Generate(certPath, keyPath, true); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certPath)
	keyPEM, _ := os.ReadFile(keyPath)
	serverPEM, err := os.ReadFile(filepath.Join(d.Dir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.ConnectHTTPS("https://"+addr, certPEM, keyPEM, serverPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Fatalf("%s: want %q in:\n%s", what, want, got)
	}
}

// Two daemons add each other as remotes, one with a join token and one
// with the trust password, and drive each other's containers; every way
// of getting it wrong is refused with a message that says why.
func TestRemoteAccessTwoDaemons(t *testing.T) {
	a := harness.StartDaemon(t)
	b := harness.StartDaemon(t)
	addrA, addrB := a.EnableHTTPS(), b.EnableHTTPS()
	b.ImportImage(harness.BusyboxImage(t), "busybox")
	b.Launch("busybox", "X", nil)

	// The server's key pair was made on first start; the key is private.
	if st, err := os.Stat(filepath.Join(b.Dir, "server.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("server.key: %v, mode %v", err, st.Mode())
	}

	// a's user adds b with a token made on b.
	token := strings.TrimSpace(b.MustC("config", "trust", "add", "--name", "hostA", "-q"))
	tok, err := api.DecodeCertificateAddToken(token)
	if err != nil || tok.ClientName != "hostA" || len(tok.Addresses) != 1 || tok.Addresses[0] != addrB {
		t.Fatalf("token %q: %+v, %v", token, tok, err)
	}
	mustContain(t, "list-tokens", b.MustC("config", "trust", "list-tokens"), "hostA")
	out, errOut, code := a.C("remote", "add", "b", "https://"+addrB, "--token", token)
	if code != 0 {
		t.Fatalf("remote add with a token: %s%s", out, errOut)
	}
	mustContain(t, "remote add", out, "Client certificate now trusted by server: b")
	mustContain(t, "first use", errOut, "Generating a client certificate")
	if _, err := os.Stat(filepath.Join(a.Conf, "servercerts", "b.crt")); err != nil {
		t.Fatalf("server certificate not pinned: %v", err)
	}
	if strings.Contains(b.MustC("config", "trust", "list-tokens"), "hostA") {
		t.Fatal("a used token is still listed")
	}
	mustContain(t, "trust list", b.MustC("config", "trust", "list"), "hostA")

	mustContain(t, "list b:", a.MustC("list", "b:"), "X")
	mustContain(t, "exec b:X", a.MustC("exec", "b:X", "--", "echo", "across"), "across")
	pulled := t.TempDir()
	a.MustC("file", "pull", "b:X/etc/hostname", pulled)
	if data, err := os.ReadFile(filepath.Join(pulled, "hostname")); err != nil || !strings.Contains(string(data), "X") {
		t.Fatalf("pulled hostname: %q, %v", data, err)
	}

	// The token is single-use: another client cannot join with it again.
	other := t.TempDir()
	out, errOut, code = runC(t, a, other, "", "remote", "add", "b2", token)
	if code == 0 {
		t.Fatalf("a reused token was accepted: %s", out)
	}
	mustContain(t, "reused token", errOut, "already used")
	// A made-up token (right server, wrong secret) is refused too.
	fake := api.CertificateAddToken{ClientName: "x", Fingerprint: tok.Fingerprint, Addresses: tok.Addresses, Secret: strings.Repeat("ab", 32)}
	_, errOut, code = runC(t, a, other, "", "remote", "add", "b2", fake.String())
	if code == 0 {
		t.Fatal("a made-up token was accepted")
	}
	mustContain(t, "made-up token", errOut, "not valid")
	// A revoked token is gone.
	b.MustC("config", "trust", "add", "--name", "revokeme", "-q")
	b.MustC("config", "trust", "revoke-token", "revokeme")
	if strings.Contains(b.MustC("config", "trust", "list-tokens"), "revokeme") {
		t.Fatal("a revoked token is still listed")
	}

	// b's user adds a with the trust password; a wrong one is refused.
	a.MustC("config", "set", "core.trust_password", "s3cret")
	if got := strings.TrimSpace(a.MustC("config", "get", "core.trust_password")); got != "true" {
		t.Fatalf("the trust password shows as %q, want \"true\"", got)
	}
	_, errOut, code = b.C("remote", "add", "a", addrA, "--accept-certificate", "--password", "wrong")
	if code == 0 {
		t.Fatal("a wrong password was accepted")
	}
	mustContain(t, "wrong password", errOut, "wrong trust password")
	if _, err := os.Stat(filepath.Join(b.Conf, "servercerts", "a.crt")); err == nil {
		t.Fatal("a failed remote add left its pinned certificate")
	}
	// Without --accept-certificate the fingerprint is asked for.
	out, errOut, code = runC(t, b, b.Conf, "y\n", "remote", "add", "a", addrA, "--password", "s3cret")
	if code != 0 {
		t.Fatalf("remote add with the password: %s%s", out, errOut)
	}
	mustContain(t, "fingerprint prompt", out, "Certificate fingerprint: ")
	mustContain(t, "remote list", b.MustC("remote", "list"), "https://"+addrA)
	mustContain(t, "list a:", b.MustC("list", "a:"), "NAME")

	// A client whose certificate is not trusted gets "not authorized".
	c := untrustedClient(t, b, addrB)
	if _, err := c.GetInstances(context.Background()); client.StatusCode(err) != http.StatusForbidden || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("untrusted client listing instances: %v", err)
	}
	srv, _, err := c.GetServer(context.Background())
	if err != nil || srv.Auth != "untrusted" {
		t.Fatalf("untrusted GET /1.0: %+v, %v", srv, err)
	}

	// Renaming the remote keeps its pinned certificate with it.
	a.MustC("remote", "rename", "b", "bee")
	mustContain(t, "renamed remote", a.MustC("list", "bee:"), "X")

	// b gets a new certificate: a refuses to talk to it.
	if err := b.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.crt", "server.key"} {
		if err := os.Remove(filepath.Join(b.Dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	b.Start()
	_, errOut, code = a.C("list", "bee:")
	if code == 0 {
		t.Fatal("a server whose certificate changed was trusted")
	}
	mustContain(t, "changed certificate", errOut, "the server's certificate changed since it was added as remote bee")
	a.MustC("remote", "remove", "bee")
	if _, err := os.Stat(filepath.Join(a.Conf, "servercerts", "bee.crt")); err == nil {
		t.Fatal("remote remove left the pinned certificate")
	}
}

// A join token survives a daemon restart (only its hash is stored) and an
// HTTPS address that cannot be used is refused and not stored.
func TestRemoteAccessTokenRestartAndBadAddress(t *testing.T) {
	d := harness.StartDaemon(t)
	addr := d.EnableHTTPS()
	token := strings.TrimSpace(d.MustC("config", "trust", "add", "--name", "later", "-q"))
	tok, _ := api.DecodeCertificateAddToken(token)
	data, err := os.ReadFile(filepath.Join(d.Dir, "cell.db"))
	if err == nil && bytes.Contains(data, []byte(tok.Secret)) {
		t.Fatal("the token's secret is stored in the database")
	}
	if err := d.Signal(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d.Start()
	mustContain(t, "list-tokens after restart", d.MustC("config", "trust", "list-tokens"), "later")
	out, errOut, code := runC(t, d, t.TempDir(), "", "remote", "add", "srv", token)
	if code != 0 {
		t.Fatalf("token after restart: %s%s", out, errOut)
	}

	// The restricted flag is kept and can be changed.
	var certs []api.Certificate
	_, env := d.API("GET", "/1.0/certificates?recursion=1", nil)
	if err := json.Unmarshal(env.Metadata, &certs); err != nil || len(certs) != 1 || certs[0].Name != "later" {
		t.Fatalf("trust store: %v %s", err, env.Metadata)
	}
	if status, env := d.API("PATCH", "/1.0/certificates/"+certs[0].Fingerprint, map[string]any{"restricted": true}); status != 200 {
		t.Fatalf("patch certificate: %d %s", status, env.Error)
	}
	_, env = d.API("GET", "/1.0/certificates/"+certs[0].Fingerprint[:12], nil)
	var cert api.Certificate
	if err := json.Unmarshal(env.Metadata, &cert); err != nil || !cert.Restricted || cert.Name != "later" {
		t.Fatalf("certificate after patch: %+v %v", cert, err)
	}

	// With core.remote_token_expiry, a token not used in time is refused.
	if status, env := d.API("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.remote_token_expiry": "soon"}}); status != 400 {
		t.Fatalf("core.remote_token_expiry=soon: %d %s", status, env.Error)
	}
	d.MustC("config", "set", "core.remote_token_expiry", "1S")
	token = strings.TrimSpace(d.MustC("config", "trust", "add", "--name", "slow", "-q"))
	if tok, err := api.DecodeCertificateAddToken(token); err != nil || tok.ExpiresAt.IsZero() {
		t.Fatalf("token with an expiry: %+v %v", tok, err)
	}
	time.Sleep(2 * time.Second)
	_, errOut, code = runC(t, d, t.TempDir(), "", "remote", "add", "srv", token)
	if code == 0 || !(strings.Contains(errOut, "expired") || strings.Contains(errOut, "not valid")) {
		t.Fatalf("expired token: %d %s", code, errOut)
	}

	for _, bad := range []string{"127.0.0.1:99999", "192.0.2.1:8443", "not an address"} {
		status, env := d.API("PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": bad}})
		if status != http.StatusBadRequest || !strings.Contains(env.Error, "core.https_address") {
			t.Fatalf("core.https_address=%q: status %d: %s", bad, status, env.Error)
		}
	}
	if got := strings.TrimSpace(d.MustC("config", "get", "core.https_address")); got != addr {
		t.Fatalf("core.https_address is %q after refused changes, want %q", got, addr)
	}
	// Unset: the listener closes.
	d.MustC("config", "unset", "core.https_address")
	if _, err := tlsutil.FetchCertificate(context.Background(), addr); err == nil {
		t.Fatal("the HTTPS listener is still open after core.https_address was unset")
	}
}

// tinyImage is a unified image tarball with one file, distinct per name.
func tinyImage(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	meta := fmt.Sprintf("architecture: x86_64\ncreation_date: %d\nproperties:\n  description: %s\n", time.Now().Unix(), name)
	files := []struct{ name, body string }{{"metadata.yaml", meta}, {"rootfs/", ""}, {"rootfs/name", name}}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An untrusted client sees public images and their aliases only.
func TestRemoteAccessPublicImages(t *testing.T) {
	d := harness.StartDaemon(t)
	addr := d.EnableHTTPS()
	fps := map[string]string{}
	for _, name := range []string{"pub", "priv"} {
		op := d.MustSucceed("POST", "/1.0/images", bytes.NewReader(tinyImage(t, name)))
		fps[name], _ = op.Metadata["fingerprint"].(string)
		if status, env := d.API("POST", "/1.0/images/aliases", map[string]string{"name": name, "target": fps[name]}); status != 201 {
			t.Fatalf("alias %s: %s", name, env.Error)
		}
	}
	if status, env := d.API("PATCH", "/1.0/images/"+fps["pub"], map[string]any{"public": true}); status != 200 {
		t.Fatalf("make pub public: %s", env.Error)
	}
	c := untrustedClient(t, d, addr)
	ctx := context.Background()
	get := func(path string) (int, string) {
		res, err := c.RawQuery(ctx, "GET", path, nil, "")
		if err != nil {
			return client.StatusCode(err), err.Error()
		}
		if res.Envelope != nil {
			return res.StatusCode, string(res.Envelope.Metadata)
		}
		return res.StatusCode, ""
	}
	if status, body := get("/1.0/images"); status != 200 || !strings.Contains(body, fps["pub"]) || strings.Contains(body, fps["priv"]) {
		t.Fatalf("untrusted image list: %d %s", status, body)
	}
	if status, body := get("/1.0/images?recursion=1"); status != 200 || !strings.Contains(body, fps["pub"]) || strings.Contains(body, fps["priv"]) {
		t.Fatalf("untrusted image list: %d %s", status, body)
	}
	if status, body := get("/1.0/images/aliases"); status != 200 || !strings.Contains(body, "pub") || strings.Contains(body, "priv") {
		t.Fatalf("untrusted alias list: %d %s", status, body)
	}
	for path, want := range map[string]int{
		"/1.0/images/" + fps["pub"]:              200,
		"/1.0/images/" + fps["pub"] + "/export":  200,
		"/1.0/images/aliases/pub":                200,
		"/1.0/images/" + fps["priv"]:             404,
		"/1.0/images/" + fps["priv"] + "/export": 404,
		"/1.0/images/aliases/priv":               404,
	} {
		if status, body := get(path); status != want {
			t.Errorf("untrusted GET %s: status %d, want %d (%s)", path, status, want, body)
		}
	}
}

// untrustedAllowed are the routes an untrusted HTTPS client may use, as
// with LXD.
var untrustedAllowed = map[string]bool{
	"GET /":                                true,
	"GET /1.0":                             true,
	"POST /1.0/certificates":               true,
	"GET /1.0/images":                      true,
	"GET /1.0/images/aliases":              true,
	"GET /1.0/images/aliases/*":            true,
	"GET /1.0/images/{fingerprint}":        true,
	"GET /1.0/images/{fingerprint}/export": true,
}

// Every route of the API, asked by an untrusted client over HTTPS: 403
// "not authorized" except the few LXD lets anyone use.
func TestRemoteAccessRouteWalk(t *testing.T) {
	d := harness.StartDaemon(t)
	addr := d.EnableHTTPS()
	c := untrustedClient(t, d, addr)
	params := regexp.MustCompile(`\{[^}]+\}|\*`)
	routes := daemon.Routes()
	if len(routes) < 50 {
		t.Fatalf("only %d routes found", len(routes))
	}
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		if pattern == "" {
			pattern = "/"
		}
		path := params.ReplaceAllString(pattern, "x")
		var body any
		if method == "POST" || method == "PUT" || method == "PATCH" {
			body = map[string]any{}
		}
		_, err := c.RawQuery(context.Background(), method, path, body, "")
		status := client.StatusCode(err)
		if untrustedAllowed[method+" "+pattern] {
			if status == http.StatusForbidden && strings.HasPrefix(err.Error(), "not authorized") && method == "GET" {
				t.Errorf("%s %s: an untrusted client is refused: %v", method, path, err)
			}
			continue
		}
		// HEAD answers carry no body: the status is all there is.
		if status != http.StatusForbidden || (method != "HEAD" && err.Error() != "not authorized") {
			t.Errorf("%s %s (%s): untrusted client got %d %v, want 403 not authorized", method, path, route, status, err)
		}
	}
	// Client certificates are asked for, not required: without one a
	// client still reads /1.0, but cannot add itself.
	serverPEM, _ := os.ReadFile(filepath.Join(d.Dir, "server.crt"))
	anon, err := client.ConnectHTTPS("https://"+addr, nil, nil, serverPEM)
	if err != nil {
		t.Fatal(err)
	}
	if srv, _, err := anon.GetServer(context.Background()); err != nil || srv.Auth != "untrusted" {
		t.Fatalf("GET /1.0 without a client certificate: %+v %v", srv, err)
	}
	d.MustC("config", "set", "core.trust_password", "pw")
	if err := anon.TrustMe(context.Background(), "pw", ""); client.StatusCode(err) != http.StatusBadRequest {
		t.Fatalf("adding no certificate: %v", err)
	}

	// /internal stays on the unix socket, even for a trusted client.
	token := strings.TrimSpace(d.MustC("config", "trust", "add", "--name", "t", "-q"))
	conf := t.TempDir()
	if out, errOut, code := runC(t, d, conf, "", "remote", "add", "srv", token); code != 0 {
		t.Fatalf("remote add: %s%s", out, errOut)
	}
	if _, errOut, code := runC(t, d, conf, "", "query", "-X", "PUT", "srv:/internal/shutdown"); code == 0 || !strings.Contains(errOut, "not authorized") {
		t.Fatalf("trusted HTTPS client reached /internal: %d %s", code, errOut)
	}
}

// LXD 5.0.2's own client adds celld as a remote with a token (printed by
// `c config trust add`) and with the trust password, then lists it.
func TestRemoteAccessLXDClient(t *testing.T) {
	if _, err := exec.LookPath("lxc"); err != nil {
		t.Skip("lxc (lxd-client) is not installed")
	}
	d := harness.StartDaemon(t)
	addr := d.EnableHTTPS()
	d.ImportImage(harness.BusyboxImage(t), "busybox")
	d.MustSucceed("POST", "/1.0/instances", map[string]any{"name": "L1", "source": map[string]string{"type": "image", "alias": "busybox"}})
	lxc := func(conf string, args ...string) (string, error) {
		cmd := exec.Command("lxc", args...)
		cmd.Env = append(os.Environ(), "LXD_CONF="+conf, "HOME="+conf)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	token := strings.TrimSpace(d.MustC("config", "trust", "add", "--name", "lxdclient", "-q"))
	conf := t.TempDir()
	if out, err := lxc(conf, "remote", "add", "cell", token); err != nil {
		t.Fatalf("lxc remote add with a token: %v\n%s", err, out)
	}
	if out, err := lxc(conf, "list", "cell:", "--format", "csv", "-c", "n"); err != nil || !strings.Contains(out, "L1") {
		t.Fatalf("lxc list cell: %v\n%s", err, out)
	}

	d.MustC("config", "set", "core.trust_password", "pw")
	conf2 := t.TempDir()
	if out, err := lxc(conf2, "remote", "add", "cell", "https://"+addr, "--accept-certificate", "--password", "nope"); err == nil {
		t.Fatalf("lxc remote add with a wrong password succeeded:\n%s", out)
	}
	if out, err := lxc(conf2, "remote", "add", "cellpw", "https://"+addr, "--accept-certificate", "--password", "pw"); err != nil {
		t.Fatalf("lxc remote add with the password: %v\n%s", err, out)
	}
	if out, err := lxc(conf2, "list", "cellpw:", "--format", "csv", "-c", "n"); err != nil || !strings.Contains(out, "L1") {
		t.Fatalf("lxc list cellpw: %v\n%s", err, out)
	}
	// The trust store lists both clients, as lxc shows it.
	out, err := lxc(conf2, "config", "trust", "list", "cellpw:", "--format", "csv")
	if err != nil || !strings.Contains(out, "lxdclient") {
		t.Fatalf("lxc config trust list: %v\n%s", err, out)
	}
	var certs []api.Certificate
	_, env := d.API("GET", "/1.0/certificates?recursion=1", nil)
	if err := json.Unmarshal(env.Metadata, &certs); err != nil || len(certs) != 2 {
		t.Fatalf("trust store: %v %s", err, env.Metadata)
	}
}
