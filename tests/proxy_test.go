package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet fetches url through client and returns the body, or the error.
func httpGet(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// TestProxy forwards host connections into a busybox container's network
// namespace (TCP and a host unix socket), and the reverse (bind=instance);
// the devices come and go live, a listen address in use is refused
// without saving the device, and a restarted celld listens again.
func TestProxy(t *testing.T) {
	d := busyboxDaemon(t)
	d.Launch("bb", "p1", nil)
	// A web server inside the container, on its own loopback: reachable
	// from the host only through the proxy.
	d.MustC("exec", "p1", "--", "sh", "-c", "mkdir -p /www && echo hello-from-p1 >/www/index.html && httpd -p 127.0.0.1:80 -h /www")
	client := &http.Client{Timeout: 30 * time.Second}

	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	d.MustC("config", "device", "add", "p1", "web", "proxy",
		fmt.Sprintf("listen=tcp:127.0.0.1:%d", port), "connect=tcp:127.0.0.1:80")
	if body, err := httpGet(client, url); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET %s through the proxy: %q, %v", url, body, err)
	}

	// A unix socket on the host, to the same server.
	sock := filepath.Join(t.TempDir(), "web.sock")
	d.MustC("config", "device", "add", "p1", "websock", "proxy", "listen=unix:"+sock, "connect=tcp:127.0.0.1:80")
	unixClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	if body, err := httpGet(unixClient, "http://p1/"); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET through the unix socket proxy: %q, %v", body, err)
	}

	// bind=instance: a port inside the container leads to a server on the
	// host's loopback.
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		_ = http.Serve(hostLn, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello-from-host") }))
	}()
	d.MustC("config", "device", "add", "p1", "back", "proxy", "bind=instance",
		"listen=tcp:127.0.0.1:8081", "connect=tcp:"+hostLn.Addr().String())
	if out := d.MustC("exec", "p1", "--", "wget", "-qO-", "http://127.0.0.1:8081/"); strings.TrimSpace(out) != "hello-from-host" {
		t.Fatalf("bind=instance proxy: wget inside got %q", out)
	}

	// UDP, bind=instance: the container's syslogd sends to a port inside,
	// which leads to a UDP socket of the test on the host.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	d.MustC("config", "device", "add", "p1", "syslog", "proxy", "bind=instance",
		"listen=udp:127.0.0.1:5514", "connect=udp:"+udp.LocalAddr().String())
	d.MustC("exec", "p1", "--", "syslogd", "-R", "127.0.0.1:5514")
	// syslogd daemonizes before it opens /dev/log, and logger drops a
	// message it cannot deliver: log again until one arrives (UDP may be
	// lost by design, so the test asks for one of several).
	buf := make([]byte, 2048)
	var got string
	var readErr error
	for i := 0; i < 20 && !strings.Contains(got, "hello-over-udp"); i++ {
		d.MustC("exec", "p1", "--", "logger", "hello-over-udp")
		_ = udp.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := udp.ReadFrom(buf)
		got, readErr = string(buf[:n]), err
	}
	if !strings.Contains(got, "hello-over-udp") {
		t.Errorf("UDP proxy: the host got %q, %v; want the container's syslog message", got, readErr)
	}

	// An address already in use: a clear error, and the device is not saved.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, errOut, code := d.C("config", "device", "add", "p1", "clash", "proxy", "listen=tcp:"+busy.Addr().String(), "connect=tcp:127.0.0.1:80")
	if code == 0 || !strings.Contains(errOut, "cannot listen") || !strings.Contains(errOut, "address already in use") {
		t.Errorf("proxy on a busy port: exit %d, %q; want a refusal naming the address in use", code, errOut)
	}
	// Also when the address is another proxy's: that one keeps working.
	_, errOut, code = d.C("config", "device", "add", "p1", "clash", "proxy", fmt.Sprintf("listen=tcp:127.0.0.1:%d", port), "connect=tcp:127.0.0.1:80")
	if code == 0 || !strings.Contains(errOut, "address already in use") {
		t.Errorf("proxy on another proxy's port: exit %d, %q; want a refusal naming the address in use", code, errOut)
	}
	if out := d.MustC("config", "device", "list", "p1"); strings.Contains(out, "clash") {
		t.Errorf("the refused proxy was saved: %s", out)
	}
	if body, err := httpGet(client, url); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET %s after a refused change: %q, %v", url, body, err)
	}

	// celld killed and restarted: the proxies of the running instance
	// listen again.
	d.Kill()
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		t.Errorf("the proxy still accepts connections while celld is down")
	}
	d.Start()
	if body, err := httpGet(client, url); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET %s after celld restarted: %q, %v", url, body, err)
	}
	// The killed celld left its unix socket behind; the new one replaced it.
	if body, err := httpGet(unixClient, "http://p1/"); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET through the unix socket proxy after celld restarted: %q, %v", body, err)
	}

	// Removed live: nothing listens any more.
	d.MustC("config", "device", "remove", "p1", "web")
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
		t.Errorf("port %d still accepts connections after the proxy was removed", port)
	}
	// Stopped with the instance: the unix socket is gone too.
	d.MustC("stop", "-f", "p1")
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("unix socket %s still exists after the instance stopped", sock)
	}
	// And back when the instance starts.
	d.MustC("config", "device", "add", "p1", "web", "proxy",
		fmt.Sprintf("listen=tcp:127.0.0.1:%d", port), "connect=tcp:127.0.0.1:80")
	d.MustC("start", "p1")
	d.MustC("exec", "p1", "--", "sh", "-c", "httpd -p 127.0.0.1:80 -h /www")
	if body, err := httpGet(client, url); err != nil || strings.TrimSpace(body) != "hello-from-p1" {
		t.Fatalf("GET %s after the instance restarted: %q, %v", url, body, err)
	}
}
