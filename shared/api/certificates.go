package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// CertificateTypeClient is the only certificate type celld trusts.
const CertificateTypeClient = "client"

// CertificatePut is the writable part of a trusted certificate.
type CertificatePut struct {
	Name       string   `json:"name" yaml:"name"`
	Type       string   `json:"type" yaml:"type"`
	Restricted bool     `json:"restricted" yaml:"restricted"`
	Projects   []string `json:"projects" yaml:"projects"`
	// Certificate is PEM in answers; requests may send PEM or, as LXD's
	// clients do, base64 DER.
	Certificate string `json:"certificate" yaml:"certificate"`
}

// Certificate is an entry of the trust store.
type Certificate struct {
	CertificatePut `yaml:",inline"`
	Fingerprint    string `json:"fingerprint" yaml:"fingerprint"`
}

// CertificatesPost adds a certificate to the trust store, or (with Token)
// asks for a join token.
type CertificatesPost struct {
	CertificatePut `yaml:",inline"`
	// Password is core.trust_password, or a join token (LXD 5.0 clients
	// send tokens there).
	Password   string `json:"password" yaml:"password"`
	TrustToken string `json:"trust_token,omitempty" yaml:"trust_token,omitempty"`
	Token      bool   `json:"token" yaml:"token"`
}

// CertificateAddToken is what a join token holds, encoded as base64 JSON
// like LXD's so that `lxc remote add NAME TOKEN` reads it.
type CertificateAddToken struct {
	ClientName  string    `json:"client_name"`
	Fingerprint string    `json:"fingerprint"`
	Addresses   []string  `json:"addresses"`
	Secret      string    `json:"secret"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// String encodes the token for the user to copy.
func (t CertificateAddToken) String() string {
	data, _ := json.Marshal(t)
	return base64.StdEncoding.EncodeToString(data)
}

// DecodeCertificateAddToken reads a token made by String.
func DecodeCertificateAddToken(s string) (*CertificateAddToken, error) {
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not a join token: %w", err)
	}
	var t CertificateAddToken
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("not a join token: %w", err)
	}
	if t.Secret == "" || t.Fingerprint == "" {
		return nil, fmt.Errorf("not a join token: secret or fingerprint missing")
	}
	return &t, nil
}

// TokenFromOperation reads the join token a token operation describes
// (its metadata holds the request, the server's fingerprint and
// addresses, the secret and the expiry, as with LXD).
func TokenFromOperation(op Operation) (*CertificateAddToken, error) {
	req, _ := op.Metadata["request"].(map[string]any)
	name, _ := req["name"].(string)
	t := &CertificateAddToken{ClientName: name}
	t.Secret, _ = op.Metadata["secret"].(string)
	t.Fingerprint, _ = op.Metadata["fingerprint"].(string)
	addrs, _ := op.Metadata["addresses"].([]any)
	for _, a := range addrs {
		if s, ok := a.(string); ok {
			t.Addresses = append(t.Addresses, s)
		}
	}
	if s, ok := op.Metadata["expiresAt"].(string); ok {
		t.ExpiresAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	if t.Fingerprint == "" {
		return nil, fmt.Errorf("operation %s is not a certificate token", op.ID)
	}
	return t, nil
}
