package daemon

import (
	"testing"
	"time"
)

func TestParseExpiry(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "1S": time.Second, "1d 12H": 36 * time.Hour, "2w": 14 * 24 * time.Hour, "90m": 90 * time.Minute,
	} {
		if got, err := parseExpiry(in); err != nil || got != want {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "0S", "-1H", "5x"} {
		if _, err := parseExpiry(bad); err == nil {
			t.Errorf("parseExpiry(%q) accepted", bad)
		}
	}
}

func TestNormalizeHTTPSAddress(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:9443": "127.0.0.1:9443", "10.0.0.1": "10.0.0.1:8443", ":8443": ":8443",
		"[::1]": "[::1]:8443", "::1": "[::1]:8443", "[::]:443": "[::]:443",
	} {
		if got, err := normalizeHTTPSAddress(in); err != nil || got != want {
			t.Errorf("normalizeHTTPSAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"1.2.3.4:0", "1.2.3.4:99999", "host:port", "a b:1"} {
		if _, err := normalizeHTTPSAddress(bad); err == nil {
			t.Errorf("normalizeHTTPSAddress(%q) accepted", bad)
		}
	}
}

func TestTrustPassword(t *testing.T) {
	h := hashPassword("s3cret")
	if !checkPassword(h, "s3cret") || checkPassword(h, "s3creT") || checkPassword("s3cret", "s3cret") {
		t.Fatal("password check is wrong")
	}
	if hashPassword("s3cret") == h {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}
