package client

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"

	"cell/shared/api"
	"cell/shared/tlsutil"
)

// Certificates returns the server's trust store.
func (c *Client) Certificates(ctx context.Context) ([]api.Certificate, error) {
	var out []api.Certificate
	_, err := c.get(ctx, "/1.0/certificates", recursion(1), &out)
	return out, err
}

// Certificate returns one trusted certificate by fingerprint (or a prefix).
func (c *Client) Certificate(ctx context.Context, fingerprint string) (*api.Certificate, string, error) {
	var out api.Certificate
	etag, err := c.get(ctx, urlPath("certificates", fingerprint), nil, &out)
	if err != nil {
		return nil, "", err
	}
	return &out, etag, nil
}

// AddCertificate adds a certificate (PEM) to the trust store; the client
// must be trusted.
func (c *Client) AddCertificate(ctx context.Context, name, certPEM string, restricted bool) error {
	cert, err := tlsutil.ParseCertPEM([]byte(certPEM))
	if err != nil {
		return err
	}
	req := api.CertificatesPost{CertificatePut: api.CertificatePut{Name: name, Type: api.CertificateTypeClient,
		Restricted: restricted, Certificate: base64.StdEncoding.EncodeToString(cert.Raw)}}
	return c.sync(ctx, http.MethodPost, "/1.0/certificates", req, "")
}

// TrustMe asks the server to trust this client's own certificate, proven
// by the trust password or a join token (exactly one of them).
func (c *Client) TrustMe(ctx context.Context, password, token string) error {
	req := api.CertificatesPost{CertificatePut: api.CertificatePut{Type: api.CertificateTypeClient},
		Password: password, TrustToken: token}
	return c.sync(ctx, http.MethodPost, "/1.0/certificates", req, "")
}

// CreateCertificateToken asks for a join token for a client called name.
func (c *Client) CreateCertificateToken(ctx context.Context, name string, restricted bool) (*api.CertificateAddToken, error) {
	req := api.CertificatesPost{CertificatePut: api.CertificatePut{Name: name, Type: api.CertificateTypeClient,
		Restricted: restricted}, Token: true}
	env, _, err := c.do(ctx, request{method: http.MethodPost, path: "/1.0/certificates", body: req})
	if err != nil {
		return nil, err
	}
	var op api.Operation
	if err := decodeMetadata(env, &op); err != nil {
		return nil, fmt.Errorf("create join token: %w", err)
	}
	return api.TokenFromOperation(op)
}

// UpdateCertificate replaces a certificate's name, type and restricted flag.
func (c *Client) UpdateCertificate(ctx context.Context, fingerprint string, put api.CertificatePut, etag string) error {
	return c.sync(ctx, http.MethodPut, urlPath("certificates", fingerprint), put, etag)
}

// DeleteCertificate removes a certificate from the trust store.
func (c *Client) DeleteCertificate(ctx context.Context, fingerprint string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("certificates", fingerprint), nil, "")
}

// PendingToken is a join token not used yet, and the operation that
// stands for it on the server.
type PendingToken struct {
	OperationID string
	Token       api.CertificateAddToken
}

// CertificateTokens lists the pending join tokens: the running operations
// of class "token", as LXD 5.0 lists them.
func (c *Client) CertificateTokens(ctx context.Context) ([]PendingToken, error) {
	ops, err := c.GetOperations(ctx)
	if err != nil {
		return nil, err
	}
	var out []PendingToken
	for _, op := range ops {
		if op.Class != api.OperationClassToken || op.StatusCode != api.Running {
			continue
		}
		t, err := api.TokenFromOperation(op)
		if err != nil {
			continue // some other kind of token (a cluster join)
		}
		out = append(out, PendingToken{OperationID: op.ID, Token: *t})
	}
	return out, nil
}

// RevokeCertificateToken cancels the pending join token(s) of a client.
func (c *Client) RevokeCertificateToken(ctx context.Context, name string) error {
	tokens, err := c.CertificateTokens(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, t := range tokens {
		if t.Token.ClientName != name {
			continue
		}
		if err := c.DeleteOperation(ctx, t.OperationID); err != nil {
			return err
		}
		found = true
	}
	if !found {
		return fmt.Errorf("no pending join token for %q", name)
	}
	return nil
}
