// Package tlsutil holds the TLS pieces celld and its clients share: key and
// certificate generation, fingerprints, and the TLS configurations of the
// HTTPS API (server side) and of certificate-pinning clients.
package tlsutil

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"time"
)

// Fingerprint is the SHA-256 of a certificate's DER bytes, in hex: the
// name LXD gives a certificate in its trust store and in `lxc remote add`.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// ParseCertPEM reads the first certificate of a PEM block.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// EncodeCertPEM turns a certificate into PEM.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// KeyPair loads certPath and keyPath, generating both first when the
// certificate does not exist yet (ECDSA P-384, self-signed, as LXD's). It
// returns the pair and the certificate's PEM. client selects a client
// certificate (extended key usage client auth) rather than a server one.
func KeyPair(certPath, keyPath string, client bool) (tls.Certificate, []byte, error) {
	if _, err := os.Stat(certPath); errors.Is(err, fs.ErrNotExist) {
		if err := Generate(certPath, keyPath, client); err != nil {
			return tls.Certificate{}, nil, err
		}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("read key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("load key pair %s: %w", certPath, err)
	}
	return pair, certPEM, nil
}

// Exists tells whether a certificate file is there.
func Exists(certPath string) bool {
	_, err := os.Stat(certPath)
	return err == nil
}

// Generate writes a new self-signed key pair: the key with mode 0600 (it is
// written before the certificate, so a certificate on disk always has its
// key), both through a temporary file renamed into place.
func Generate(certPath, keyPath string, client bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("generate serial number: %w", err)
	}
	host, _ := os.Hostname()
	username := "root"
	if u, err := user.Current(); err == nil {
		username = u.Username
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Cell"}, CommonName: username + "@" + host},
		NotBefore:             now.Add(-time.Hour), // clocks of peers differ a little
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.DNSNames = []string{host, "localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(certPath), err)
	}
	if err := writeAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// cipherSuites are the TLS 1.2 suites allowed: ECDHE key exchange with an
// AEAD cipher only (TLS 1.3 suites are not configurable and all AEAD).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig is the HTTPS API's TLS configuration. Client certificates
// are requested but neither required nor verified against a CA here: the
// API decides per request whether a certificate is in the trust store, and
// untrusted clients must still reach GET /1.0 to add themselves.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		ClientAuth:   tls.RequestClientCert,
		NextProtos:   []string{"http/1.1"},
	}
}

// MismatchError is a server presenting another certificate than the
// pinned one.
type MismatchError struct {
	Pinned, Presented string // fingerprints
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("the server's certificate does not match the pinned one: fingerprint was %s, is now %s", e.Pinned, e.Presented)
}

// ClientConfig is the TLS configuration of a client. clientCert may be nil
// (no client authentication). With a pinned server certificate the server
// must present exactly that certificate (self-signed certificates are the
// rule, so there is no CA to validate against); without one, the
// connection is accepted as is, which only fetching the certificate to
// show it to the user should do.
func ClientConfig(clientCert *tls.Certificate, pinned *x509.Certificate) *tls.Config {
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites,
		// Verification is the pinning below.
		InsecureSkipVerify: true, //nolint:gosec
		NextProtos:         []string{"http/1.1"},
	}
	if clientCert != nil {
		conf.Certificates = []tls.Certificate{*clientCert}
	}
	if pinned != nil {
		want := Fingerprint(pinned)
		conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the server presented no certificate")
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("parse the server's certificate: %w", err)
			}
			if got := Fingerprint(cert); got != want {
				return &MismatchError{Pinned: want, Presented: got}
			}
			return nil
		}
	}
	return conf
}

// FetchCertificate connects to addr (host:port) and returns the
// certificate the server presents, without trusting it: the caller shows
// its fingerprint to the user or compares it with a known one.
func FetchCertificate(ctx context.Context, addr string) (*x509.Certificate, error) {
	d := tls.Dialer{Config: ClientConfig(nil, nil)}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s presented no certificate", addr)
	}
	return certs[0], nil
}
