package tlsutil

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func keyPair(t *testing.T, client bool) (tls.Certificate, []byte) {
	t.Helper()
	dir := t.TempDir()
	pair, certPEM, err := KeyPair(filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"), client)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "a.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	return pair, certPEM
}

// serve accepts one TLS connection on loopback and completes its handshake.
func serve(t *testing.T, conf *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestServerRefusesOldTLSAndWeakCiphers(t *testing.T) {
	pair, _ := keyPair(t, false)
	addr := serve(t, ServerConfig(pair))
	for name, conf := range map[string]*tls.Config{
		"TLS 1.1": {InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10},
		"CBC":     {InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}},
	} {
		c, err := tls.Dial("tcp", addr, conf)
		if err == nil {
			c.Close()
			t.Errorf("%s: handshake succeeded", name)
		}
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 with AEAD: %v", err)
	}
	c.Close()
}

func TestPinning(t *testing.T) {
	pair, certPEM := keyPair(t, false)
	addr := serve(t, ServerConfig(pair))
	_, otherPEM := keyPair(t, false)
	want, _ := ParseCertPEM(certPEM)
	other, _ := ParseCertPEM(otherPEM)

	c, err := tls.Dial("tcp", addr, ClientConfig(nil, want))
	if err != nil {
		t.Fatalf("pinned certificate refused: %v", err)
	}
	c.Close()
	_, err = tls.Dial("tcp", addr, ClientConfig(nil, other))
	var mismatch *MismatchError
	if !errors.As(err, &mismatch) || mismatch.Pinned != Fingerprint(other) || mismatch.Presented != Fingerprint(want) {
		t.Fatalf("another certificate: err = %v", err)
	}
	got, err := FetchCertificate(t.Context(), addr)
	if err != nil || Fingerprint(got) != Fingerprint(want) {
		t.Fatalf("FetchCertificate: %v", err)
	}
}
