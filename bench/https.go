package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"cell/shared/tlsutil"
)

var (
	flagHTTPSDuration = flag.Duration("https-duration", 2*time.Second, "length of each sample of the HTTPS request rate workload (0: skip it)")
	flagHTTPSClients  = flag.Int("https-clients", 4, "concurrent connections of the HTTPS request rate workload")
)

// httpsClient makes the daemon listen on a free loopback port, trusts a
// new client certificate on it (through the unix socket) and returns an
// HTTPS client that uses it and pins the daemon's certificate.
func (b *bench) httpsClient(ctx context.Context, s *server) (*http.Client, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	addr := l.Addr().String()
	l.Close()
	if err := s.sync(ctx, "PATCH", "/1.0", map[string]any{"config": map[string]string{"core.https_address": addr}}, nil); err != nil {
		return nil, "", err
	}
	certPath, keyPath := filepath.Join(b.work, s.kind+"-client.crt"), filepath.Join(b.work, s.kind+"-client.key")
	pair, certPEM, err := tlsutil.KeyPair(certPath, keyPath, true)
	if err != nil {
		return nil, "", err
	}
	cert, err := tlsutil.ParseCertPEM(certPEM)
	if err != nil {
		return nil, "", err
	}
	req := map[string]any{"type": "client", "name": "bench", "certificate": base64.StdEncoding.EncodeToString(cert.Raw)}
	if err := s.sync(ctx, "POST", "/1.0/certificates", req, nil); err != nil {
		return nil, "", err
	}
	serverPEM, err := os.ReadFile(filepath.Join(s.dir, "server.crt"))
	if err != nil {
		return nil, "", fmt.Errorf("%s: server certificate: %w", s.kind, err)
	}
	pinned, err := tlsutil.ParseCertPEM(serverPEM)
	if err != nil {
		return nil, "", err
	}
	transport := &http.Transport{
		TLSClientConfig:     tlsutil.ClientConfig(&pair, pinned),
		MaxIdleConnsPerHost: *flagHTTPSClients,
	}
	return &http.Client{Transport: transport}, "https://" + addr, nil
}

// httpsRate measures API requests per second for GET
// /1.0/instances?recursion=1 over HTTPS with n instances, from
// -https-clients concurrent keep-alive connections of a trusted client:
// one sample of -https-duration per round and daemon, interleaved.
func (b *bench) httpsRate(ctx context.Context, n int) error {
	if *flagHTTPSDuration <= 0 {
		return nil
	}
	logf("HTTPS request rate with %d instances", n)
	clients := map[*server]*http.Client{}
	urls := map[*server]string{}
	for _, s := range b.servers() {
		c, base, err := b.httpsClient(ctx, s)
		if err != nil {
			return fmt.Errorf("set up HTTPS on %s: %w", s.kind, err)
		}
		defer c.CloseIdleConnections()
		clients[s], urls[s] = c, base+"/1.0/instances?recursion=1"
		// The answer must really list the instances (a refused client
		// would answer fast, and wrongly).
		var env envelope
		if err := getJSON(ctx, c, urls[s], &env); err != nil {
			return fmt.Errorf("%s: %w", s.kind, err)
		}
		var list []json.RawMessage
		if err := json.Unmarshal(env.Metadata, &list); err != nil || len(list) != n {
			return fmt.Errorf("%s: GET /1.0/instances?recursion=1 over HTTPS lists %d instances, want %d (%v)", s.kind, len(list), n, err)
		}
	}
	for r := 0; r < *flagRounds; r++ {
		for _, s := range b.servers() {
			rate, err := requestRate(ctx, clients[s], urls[s], *flagHTTPSClients, *flagHTTPSDuration)
			if err != nil {
				return fmt.Errorf("%s: https_rps: %w", s.kind, err)
			}
			b.res.add("https_rps", s.kind, rate)
		}
	}
	return nil
}

func getJSON(ctx context.Context, c *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, data)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// requestRate runs workers that GET url back to back for d and returns
// the completed requests per second. Each answer is read whole.
func requestRate(ctx context.Context, c *http.Client, url string, workers int, d time.Duration) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
				if err == nil {
					var resp *http.Response
					if resp, err = c.Do(req); err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil && resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("HTTP %d", resp.StatusCode)
						}
					}
				}
				if err != nil {
					errs <- err
					cancel()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(done.Load()) / elapsed.Seconds(), nil
}
