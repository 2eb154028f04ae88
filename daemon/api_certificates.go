package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/shared/api"
	"cell/shared/tlsutil"
)

func apiCertificate(c db.Certificate) api.Certificate {
	return api.Certificate{Fingerprint: c.Fingerprint, CertificatePut: api.CertificatePut{
		Name: c.Name, Type: c.Type, Restricted: c.Restricted, Projects: []string{}, Certificate: c.Certificate}}
}

func (d *Daemon) listCertificates(w http.ResponseWriter, r *http.Request) error {
	certs, err := d.db.Certificates(r.Context())
	if err != nil {
		return err
	}
	if recursion(r) == 0 {
		urls := []string{}
		for _, c := range certs {
			urls = append(urls, "/1.0/certificates/"+c.Fingerprint)
		}
		return syncResponse(w, urls)
	}
	out := []api.Certificate{}
	for _, c := range certs {
		out = append(out, apiCertificate(c))
	}
	return syncResponse(w, out)
}

// findCertificate finds a trusted certificate by fingerprint or a prefix.
func (d *Daemon) findCertificate(ctx context.Context, prefix string) (db.Certificate, error) {
	c, err := d.db.Certificate(ctx, prefix)
	switch {
	case errors.Is(err, db.ErrAmbiguous):
		return c, badRequest("fingerprint prefix %q matches more than one certificate", prefix)
	case errors.Is(err, db.ErrNotFound):
		return c, notFound("certificate %q not found", prefix)
	}
	return c, err
}

func (d *Daemon) getCertificate(w http.ResponseWriter, r *http.Request) error {
	c, err := d.findCertificate(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	return syncResponse(w, apiCertificate(c))
}

// parseCertificate reads a certificate sent in a request: base64 DER (as
// LXD's clients send it) or PEM.
func parseCertificate(s string) (*x509.Certificate, error) {
	if strings.Contains(s, "-----BEGIN") {
		return tlsutil.ParseCertPEM([]byte(s))
	}
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, badRequest("certificate is neither PEM nor base64 DER: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, badRequest("invalid certificate: %v", err)
	}
	return cert, nil
}

func validCertificateName(name string) error {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, "-") || strings.ContainsAny(name, "/\n\r\t\x00") {
		return badRequest("certificate name %q is not allowed: it must be 1-255 characters, not start with a dash, without slashes or control characters", name)
	}
	return nil
}

func checkCertificateType(t string) (string, error) {
	switch t {
	case "", api.CertificateTypeClient:
		return api.CertificateTypeClient, nil
	}
	return "", badRequest("certificate type %q is not supported: only %q", t, api.CertificateTypeClient)
}

func checkProjects(projects []string) error {
	for _, p := range projects {
		if p != "default" {
			return badRequest("project %q does not exist: the only project is \"default\"", p)
		}
	}
	return nil
}

// createCertificate is POST /1.0/certificates: a trusted client adds a
// certificate (or asks for a join token); an untrusted one adds the
// certificate it connected with, given the trust password or a token.
func (d *Daemon) createCertificate(w http.ResponseWriter, r *http.Request) error {
	var req api.CertificatesPost
	if err := readJSON(r, &req); err != nil {
		return err
	}
	typ, err := checkCertificateType(req.Type)
	if err != nil {
		return err
	}
	if err := checkProjects(req.Projects); err != nil {
		return err
	}
	trusted := d.trusted(r)
	if req.Token {
		if !trusted {
			return forbidden(errNotAuthorized)
		}
		return d.createCertificateToken(w, r, req)
	}

	var cert *x509.Certificate
	switch {
	case trusted && req.Certificate != "":
		if cert, err = parseCertificate(req.Certificate); err != nil {
			return err
		}
	case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
		cert = r.TLS.PeerCertificates[0]
	default:
		return badRequest("no certificate given: send one in \"certificate\" (base64 DER or PEM)")
	}
	row := db.Certificate{Fingerprint: tlsutil.Fingerprint(cert), Type: typ, Name: req.Name,
		Certificate: string(tlsutil.EncodeCertPEM(cert)), Restricted: req.Restricted, CreatedAt: time.Now().UTC()}
	if row.Name == "" {
		row.Name = cert.Subject.CommonName
	}

	if trusted {
		if err := validCertificateName(row.Name); err != nil {
			return err
		}
		if err := d.db.CreateCertificate(r.Context(), row); errors.Is(err, db.ErrExists) {
			return conflict("certificate %s is already trusted", row.Fingerprint)
		} else if err != nil {
			return err
		}
		return d.certificateAdded(w, r, row)
	}

	secret := req.TrustToken
	if secret == "" {
		secret = req.Password
	}
	if secret == "" {
		return forbidden("%s: send the trust password or a join token", errNotAuthorized)
	}
	cfg, err := d.db.ServerConfig(r.Context())
	if err != nil {
		return err
	}
	if req.TrustToken == "" && cfg[keyTrustPassword] != "" && checkPassword(cfg[keyTrustPassword], req.Password) {
		if err := validCertificateName(row.Name); err != nil {
			return err
		}
		if err := d.db.CreateCertificate(r.Context(), row); err != nil && !errors.Is(err, db.ErrExists) {
			return err
		}
		return d.certificateAdded(w, r, row)
	}
	token, terr := api.DecodeCertificateAddToken(secret)
	if terr != nil {
		if cfg[keyTrustPassword] == "" {
			return forbidden("%s: the server has no trust password set, and this is not a join token", errNotAuthorized)
		}
		return forbidden("%s: wrong trust password", errNotAuthorized)
	}
	used, err := d.db.UseCertificateToken(r.Context(), hashSecret(token.Secret), time.Now(), row)
	switch {
	case errors.Is(err, db.ErrExpired):
		d.tokenDone(used.ID)
		return forbidden("%s: %v", errNotAuthorized, err)
	case errors.Is(err, db.ErrNotFound):
		return forbidden("%s: the join token is not valid here: it was already used, revoked, or not issued by this server", errNotAuthorized)
	case errors.Is(err, db.ErrExists):
		return conflict("certificate %s is already trusted", row.Fingerprint)
	case err != nil:
		return err
	}
	d.tokenDone(used.ID)
	row.Name, row.Restricted = used.Name, used.Restricted
	return d.certificateAdded(w, r, row)
}

func (d *Daemon) certificateAdded(w http.ResponseWriter, r *http.Request, c db.Certificate) error {
	if err := d.reloadTrust(r.Context()); err != nil {
		return err
	}
	slog.Info("certificate trusted", "name", c.Name, "fingerprint", c.Fingerprint)
	return createdResponse(w, "/1.0/certificates/"+c.Fingerprint)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// createCertificateToken makes a join token: its hashed secret goes into
// the database (it survives restarts), and an operation of class "token"
// carries the token to the client, lists it and revokes it (DELETE), as
// LXD 5.0 does.
func (d *Daemon) createCertificateToken(w http.ResponseWriter, r *http.Request, req api.CertificatesPost) error {
	if err := validCertificateName(req.Name); err != nil {
		return err
	}
	if len(d.httpsAddresses()) == 0 {
		return badRequest("a join token needs the server on the network: set %s first", keyHTTPSAddress)
	}
	cfg, err := d.db.ServerConfig(r.Context())
	if err != nil {
		return err
	}
	expiry, err := parseExpiry(cfg[keyRemoteTokenExpiry])
	if err != nil {
		return err
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return err
	}
	secret := hex.EncodeToString(buf)
	now := time.Now().UTC()
	t := db.CertificateToken{Name: req.Name, SecretHash: hashSecret(secret), Restricted: req.Restricted, CreatedAt: now}
	if expiry > 0 {
		t.ExpiresAt = now.Add(expiry)
	}
	if t.ID, err = d.db.CreateCertificateToken(r.Context(), t); err != nil {
		return err
	}
	return asyncResponse(w, d.startTokenOp(t, secret))
}

// startTokenOp starts the operation standing for a pending token. It runs
// until the token is used, revoked (cancelled), expires, or the daemon
// stops (the token stays in the database for the next start).
func (d *Daemon) startTokenOp(t db.CertificateToken, secret string) *operations.Operation {
	used := make(chan struct{})
	d.tls.tokensMu.Lock()
	d.tls.tokens[t.ID] = used
	d.tls.tokensMu.Unlock()
	meta := map[string]any{
		"request": map[string]any{"name": t.Name, "type": api.CertificateTypeClient, "restricted": t.Restricted,
			"projects": []string{}, "certificate": "", "password": "", "token": true},
		"fingerprint": d.tls.fingerprint,
		"addresses":   d.httpsAddresses(),
		"secret":      secret,
	}
	if !t.ExpiresAt.IsZero() {
		meta["expiresAt"] = t.ExpiresAt.Format(time.RFC3339Nano)
	}
	return d.ops.Start(d.ctx, operations.Spec{
		Class: api.OperationClassToken, Description: "Certificate add token",
		Resources: map[string][]string{}, Metadata: meta, MayCancel: true,
		Run: func(ctx context.Context, op *operations.Operation) error {
			var expired <-chan time.Time
			if !t.ExpiresAt.IsZero() {
				timer := time.NewTimer(time.Until(t.ExpiresAt))
				defer timer.Stop()
				expired = timer.C
			}
			select {
			case <-used:
				return nil
			case <-d.ctx.Done():
				return nil
			case <-ctx.Done():
				d.dropToken(t.ID)
				return ctx.Err()
			case <-expired:
				d.dropToken(t.ID)
				return errors.New("the token expired")
			}
		},
	})
}

// dropToken removes a revoked or expired token.
func (d *Daemon) dropToken(id int64) {
	d.tls.tokensMu.Lock()
	delete(d.tls.tokens, id)
	d.tls.tokensMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.db.DeleteCertificateToken(ctx, id); err != nil {
		slog.Error("remove join token", "err", err)
	}
}

// tokenDone ends the operation of a token that was used (or found expired).
func (d *Daemon) tokenDone(id int64) {
	d.tls.tokensMu.Lock()
	if ch, ok := d.tls.tokens[id]; ok {
		close(ch)
		delete(d.tls.tokens, id)
	}
	d.tls.tokensMu.Unlock()
}

func (d *Daemon) putCertificate(w http.ResponseWriter, r *http.Request) error {
	return d.updateCertificate(w, r, false)
}

func (d *Daemon) patchCertificate(w http.ResponseWriter, r *http.Request) error {
	return d.updateCertificate(w, r, true)
}

func (d *Daemon) updateCertificate(w http.ResponseWriter, r *http.Request, patch bool) error {
	c, err := d.findCertificate(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	// PATCH starts from the stored values so that absent fields stay.
	put := apiCertificate(c).CertificatePut
	if !patch {
		put = api.CertificatePut{}
	}
	if err := readJSON(r, &put); err != nil {
		return err
	}
	if put.Certificate != "" {
		cert, err := parseCertificate(put.Certificate)
		if err != nil {
			return err
		}
		if tlsutil.Fingerprint(cert) != c.Fingerprint {
			return badRequest("the certificate itself cannot be changed: add the new one and remove this one")
		}
	}
	if put.Name == "" && patch {
		put.Name = c.Name
	}
	if err := validCertificateName(put.Name); err != nil {
		return err
	}
	if c.Type, err = checkCertificateType(put.Type); err != nil {
		return err
	}
	if err := checkProjects(put.Projects); err != nil {
		return err
	}
	c.Name, c.Restricted = put.Name, put.Restricted
	if err := d.db.UpdateCertificate(r.Context(), c); err != nil {
		return err
	}
	if err := d.reloadTrust(r.Context()); err != nil {
		return err
	}
	return syncResponse(w, nil)
}

func (d *Daemon) deleteCertificate(w http.ResponseWriter, r *http.Request) error {
	c, err := d.findCertificate(r.Context(), chi.URLParam(r, "fingerprint"))
	if err != nil {
		return err
	}
	if err := d.db.DeleteCertificate(r.Context(), c.Fingerprint); err != nil {
		return err
	}
	if err := d.reloadTrust(r.Context()); err != nil {
		return err
	}
	slog.Info("certificate removed from the trust store", "name", c.Name, "fingerprint", c.Fingerprint)
	return syncResponse(w, nil)
}
