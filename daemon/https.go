package daemon

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cell/daemon/db"
	"cell/shared/api"
	"cell/shared/tlsutil"
)

// Server config keys of the HTTPS API.
const (
	keyHTTPSAddress      = "core.https_address"
	keyTrustPassword     = "core.trust_password"
	keyRemoteTokenExpiry = "core.remote_token_expiry"
)

// defaultHTTPSPort is LXD's port, used when core.https_address has none.
const defaultHTTPSPort = "8443"

// tlsState is the daemon's HTTPS side: its key pair, the listener that
// core.https_address asks for, the trust store held in memory (every
// HTTPS request looks it up) and the pending join tokens.
type tlsState struct {
	cert        tls.Certificate
	certPEM     string
	fingerprint string

	// mu serialises listener changes (a config update holds it from
	// validation to commit).
	mu       sync.Mutex
	addr     string // as configured
	server   *http.Server
	listener net.Listener

	trustMu sync.RWMutex
	trusted map[string]db.Certificate // by fingerprint

	tokensMu sync.Mutex
	tokens   map[int64]chan struct{} // closed when the token is used
}

// initTLS loads the server's key pair ($CELL_DIR/server.crt and
// server.key, made on first start), the trust store and the pending join
// tokens.
func (d *Daemon) initTLS(ctx context.Context) error {
	cert, certPEM, err := tlsutil.KeyPair(filepath.Join(d.dir, "server.crt"), filepath.Join(d.dir, "server.key"), false)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := tlsutil.ParseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	d.tls = &tlsState{cert: cert, certPEM: string(certPEM), fingerprint: tlsutil.Fingerprint(leaf),
		tokens: map[int64]chan struct{}{}}
	if err := d.reloadTrust(ctx); err != nil {
		return err
	}
	tokens, err := d.db.CertificateTokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range tokens {
		// The secret itself is not kept: the operation lists the token
		// (to revoke it) without it.
		d.startTokenOp(t, "")
	}
	return nil
}

// reloadTrust reads the trust store into memory after a change.
func (d *Daemon) reloadTrust(ctx context.Context) error {
	certs, err := d.db.Certificates(ctx)
	if err != nil {
		return err
	}
	m := make(map[string]db.Certificate, len(certs))
	for _, c := range certs {
		m[c.Fingerprint] = c
	}
	d.tls.trustMu.Lock()
	d.tls.trusted = m
	d.tls.trustMu.Unlock()
	return nil
}

// startHTTPS opens the listener core.https_address names, at daemon start.
// A listener that cannot open is logged: the unix socket still works, and
// is how the address gets fixed.
func (d *Daemon) startHTTPS(ctx context.Context) {
	cfg, err := d.db.ServerConfig(ctx)
	if err != nil {
		slog.Error("read server config", "err", err)
		return
	}
	addr := cfg[keyHTTPSAddress]
	if addr == "" {
		return
	}
	d.tls.mu.Lock()
	defer d.tls.mu.Unlock()
	l, err := listenHTTPS(addr)
	if err != nil {
		slog.Error("HTTPS API unavailable", "address", addr, "err", err)
		return
	}
	d.serveHTTPS(addr, l)
}

// stopHTTPS closes the HTTPS listener when the daemon stops.
func (d *Daemon) stopHTTPS(ctx context.Context) {
	if d.tls == nil {
		return
	}
	d.tls.mu.Lock()
	defer d.tls.mu.Unlock()
	if d.tls.server != nil {
		_ = d.tls.server.Shutdown(ctx)
		d.tls.server, d.tls.listener, d.tls.addr = nil, nil, ""
	}
}

// normalizeHTTPSAddress adds LXD's default port to an address without one
// and checks the port.
func normalizeHTTPSAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// "10.0.0.1", "::1" or "[::1]": no port.
		host, port = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), defaultHTTPSPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("%q is not a host name or IP address", host)
	}
	return net.JoinHostPort(host, port), nil
}

func listenHTTPS(addr string) (net.Listener, error) {
	norm, err := normalizeHTTPSAddress(addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", norm)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", norm, err)
	}
	return l, nil
}

// serveHTTPS serves the API on l (already listening). Caller holds tls.mu.
func (d *Daemon) serveHTTPS(addr string, l net.Listener) {
	srv := &http.Server{
		Handler:           d.server.Handler,
		ReadHeaderTimeout: 30 * time.Second,
		// No HTTP/2: websockets (exec, events) need HTTP/1.1 upgrades.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	tl := tls.NewListener(l, tlsutil.ServerConfig(d.tls.cert))
	d.tls.server, d.tls.listener, d.tls.addr = srv, l, addr
	go func() {
		if err := srv.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("HTTPS API stopped", "address", addr, "err", err)
		}
	}()
	slog.Info("HTTPS API listening", "address", l.Addr().String())
}

// prepareServerConfig checks and completes the HTTPS keys of a server
// config about to be stored (cfg is the whole new config): it hashes a new
// trust password, checks the token expiry and opens the new listener when
// core.https_address changes, so that a bad address is refused before
// anything is stored. The caller must call commit with whether the config
// was stored: the new listener then replaces the old one, or is closed.
func (d *Daemon) prepareServerConfig(ctx context.Context, cfg map[string]string) (commit func(stored bool), err error) {
	old, err := d.db.ServerConfig(ctx)
	if err != nil {
		return nil, err
	}
	if v, ok := cfg[keyRemoteTokenExpiry]; ok {
		if _, err := parseExpiry(v); err != nil {
			return nil, badRequest("%s: %v", keyRemoteTokenExpiry, err)
		}
	}
	if v, ok := cfg[keyTrustPassword]; ok && v != old[keyTrustPassword] {
		// GET /1.0 shows a set password as "true"; a config sent back
		// unchanged keeps the password it had.
		if v == "true" && old[keyTrustPassword] != "" {
			cfg[keyTrustPassword] = old[keyTrustPassword]
		} else {
			cfg[keyTrustPassword] = hashPassword(v)
		}
	}

	d.tls.mu.Lock()
	newAddr := cfg[keyHTTPSAddress]
	if newAddr == d.tls.addr && (newAddr == "" || d.tls.listener != nil) {
		d.tls.mu.Unlock()
		return func(bool) {}, nil
	}
	var l net.Listener
	stoppedOld := false
	if newAddr != "" {
		l, err = listenHTTPS(newAddr)
		if err != nil && errors.Is(err, syscall.EADDRINUSE) && d.tls.server != nil {
			// The old listener may hold the port (":8443" to
			// "127.0.0.1:8443"): free it and try again.
			d.stopHTTPSLocked()
			stoppedOld = true
			l, err = listenHTTPS(newAddr)
		}
		if err != nil {
			if stoppedOld {
				d.restartHTTPSLocked(old[keyHTTPSAddress])
			}
			d.tls.mu.Unlock()
			return nil, badRequest("%s %q: %v", keyHTTPSAddress, newAddr, err)
		}
	}
	return func(stored bool) {
		defer d.tls.mu.Unlock()
		if !stored {
			if l != nil {
				l.Close()
			}
			if stoppedOld {
				d.restartHTTPSLocked(old[keyHTTPSAddress])
			}
			return
		}
		d.stopHTTPSLocked()
		if l != nil {
			d.serveHTTPS(newAddr, l)
		}
	}, nil
}

func (d *Daemon) stopHTTPSLocked() {
	if d.tls.server == nil {
		return
	}
	// Close, not Shutdown: the API is moving and clients reconnect.
	_ = d.tls.server.Close()
	d.tls.server, d.tls.listener, d.tls.addr = nil, nil, ""
}

func (d *Daemon) restartHTTPSLocked(addr string) {
	if addr == "" {
		return
	}
	if l, err := listenHTTPS(addr); err == nil {
		d.serveHTTPS(addr, l)
	} else {
		slog.Error("HTTPS API unavailable", "address", addr, "err", err)
	}
}

// httpsAddresses are the addresses clients can reach the HTTPS API at, as
// /1.0 and join tokens list them: the configured one, or every address of
// the host when it listens on all of them.
func (d *Daemon) httpsAddresses() []string {
	d.tls.mu.Lock()
	l := d.tls.listener
	d.tls.mu.Unlock()
	if l == nil {
		return []string{}
	}
	tcp, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return []string{l.Addr().String()}
	}
	port := strconv.Itoa(tcp.Port)
	if !tcp.IP.IsUnspecified() {
		return []string{net.JoinHostPort(tcp.IP.String(), port)}
	}
	out := []string{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLinkLocalUnicast() || ipnet.IP.IsLoopback() {
			continue
		}
		if tcp.IP.To4() != nil && ipnet.IP.To4() == nil {
			continue // listening on 0.0.0.0 only
		}
		out = append(out, net.JoinHostPort(ipnet.IP.String(), port))
	}
	return out
}

// fillServerTLS completes a trusted client's view of /1.0: the HTTPS
// addresses and the server's certificate (`lxc remote add` reads them),
// and a trust password shown as "true", never as its hash.
func (d *Daemon) fillServerTLS(srv *api.Server) {
	srv.Environment.Addresses = d.httpsAddresses()
	srv.Environment.Certificate = d.tls.certPEM
	srv.Environment.CertificateFingerprint = d.tls.fingerprint
	if _, ok := srv.Config[keyTrustPassword]; ok {
		srv.Config[keyTrustPassword] = "true"
	}
}

// Trust password hashing: PBKDF2-SHA512 with a random salt, stored as
// "pbkdf2-sha512$ITERATIONS$SALT$HASH" (hex).
const passwordIterations = 210000

func hashPassword(password string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key, err := pbkdf2.Key(sha512.New, password, salt, passwordIterations, 64)
	if err != nil {
		panic(fmt.Sprintf("pbkdf2: %v", err)) // only for impossible parameters
	}
	return fmt.Sprintf("pbkdf2-sha512$%d$%s$%s", passwordIterations, hex.EncodeToString(salt), hex.EncodeToString(key))
}

func checkPassword(stored, password string) bool {
	parts := strings.Split(stored, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha512" {
		return false
	}
	iter, err1 := strconv.Atoi(parts[1])
	salt, err2 := hex.DecodeString(parts[2])
	want, err3 := hex.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil || iter < 1 {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, password, salt, iter, len(want))
	return err == nil && subtle.ConstantTimeCompare(got, want) == 1
}

// parseExpiry reads core.remote_token_expiry: LXD's form, numbers with a
// unit (S seconds, M minutes, H hours, d days, w weeks, m months, y
// years) separated by spaces ("1d 12H"), or a Go duration ("90m"). Empty
// means tokens do not expire, as in LXD 5.0.
func parseExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	units := map[byte]time.Duration{'S': time.Second, 'M': time.Minute, 'H': time.Hour,
		'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'm': 30 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	var total time.Duration
	for _, f := range strings.Fields(s) {
		unit, ok := units[f[len(f)-1]]
		n, err := strconv.Atoi(f[:len(f)-1])
		if !ok || err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not an expiry: want numbers with a unit (S, M, H, d, w, m, y) like \"1d 12H\"", s)
		}
		total += time.Duration(n) * unit
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q is not an expiry: it must be more than zero", s)
	}
	return total, nil
}
