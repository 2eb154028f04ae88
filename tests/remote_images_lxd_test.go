package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cell/client"
	"cell/tests/harness"
)

// Server-to-server images: daemon A downloads images from daemon B over
// HTTPS (protocol "lxd"), as an untrusted client of B pinned to B's
// certificate, driven by A's `c` which has B as a remote added with a
// token. Public images copy by alias and by fingerprint, unified and
// split, and launch; a private image is refused without a download secret
// (with a message that says why), and copies with the one-time secret `c`
// gets from B.
func TestRemoteImagesLXD(t *testing.T) {
	a := harness.StartDaemon(t)
	b := harness.StartDaemon(t)
	addrB := b.EnableHTTPS()

	// B: a public unified image, a public split image, a private image.
	pub := b.ImportImage(harness.BusyboxImage(t), "pubimg")
	meta, rootfs := imagesSplit(t, harness.BusyboxImage(t))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, part := range []struct {
		field string
		data  []byte
	}{{"metadata", meta}, {"rootfs", rootfs}} {
		w, err := mw.CreateFormFile(part.field, part.field+".tar")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(part.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, split := imagesUpload(t, b, &body, mw.FormDataContentType(), nil)
	if split == "" {
		t.Fatal("split image upload gave no fingerprint")
	}
	for _, fp := range []string{pub, split} {
		if status, env := b.API("PATCH", "/1.0/images/"+fp, map[string]any{"public": true}); status != 200 {
			t.Fatalf("make %s public: %s", fp, env.Error)
		}
	}
	// A private image (images are private unless made public).
	privOp := b.MustSucceed("POST", "/1.0/images", bytes.NewReader(tinyImage(t, "secret")))
	privFP, _ := privOp.Metadata["fingerprint"].(string)
	if status, env := b.API("POST", "/1.0/images/aliases", map[string]string{"name": "privimg", "target": privFP}); status != 201 {
		t.Fatalf("alias privimg: %s", env.Error)
	}

	token := strings.TrimSpace(b.MustC("config", "trust", "add", "--name", "hostA", "-q"))
	if out, errOut, code := a.C("remote", "add", "b", "https://"+addrB, "--token", token); code != 0 {
		t.Fatalf("remote add b: %s%s", out, errOut)
	}
	// A's user is trusted by B and sees B's images, private ones too.
	list := a.MustC("image", "list", "b:", "--format", "csv")
	mustContain(t, "image list b:", list, "pubimg")
	mustContain(t, "image list b:", list, "privimg")

	// Launch straight from B: A downloads the image and boots it.
	a.MustC("launch", "b:pubimg", "C1")
	mustContain(t, "exec in C1", a.MustC("exec", "C1", "--", "cat", "/etc/hostname"), "C1")
	mustContain(t, "A's images after launch", a.MustC("image", "list", "--format", "csv", "-c", "F"), pub[:12])

	// Copy by alias, with a new alias on A.
	out := a.MustC("image", "copy", "b:pubimg", "local:", "--alias", "x")
	mustContain(t, "image copy by alias", out, "Image copied successfully!")
	if got := imageFingerprintOf(t, a, "x"); got != pub {
		t.Fatalf("alias x on A points at %s, want B's %s", got, pub)
	}

	// Copy the split image by fingerprint prefix; it keeps its fingerprint
	// and comes as two files.
	a.MustC("image", "copy", "b:"+split[:16], "local:", "--alias", "s")
	if got := imageFingerprintOf(t, a, "s"); got != split {
		t.Fatalf("alias s on A points at %s, want B's split %s", got, split)
	}
	a.MustC("launch", "s", "C2")
	mustContain(t, "exec in C2", a.MustC("exec", "C2", "--", "cat", "/etc/hostname"), "C2")

	// B's private image is hidden from A, an untrusted client of B: a pull
	// without a download secret is refused, by alias and by fingerprint,
	// with a message that says why, and nothing of it is stored on A.
	certB, err := os.ReadFile(filepath.Join(b.Dir, "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []map[string]string{{"alias": "privimg"}, {"fingerprint": privFP}} {
		src["type"], src["mode"], src["server"], src["protocol"], src["certificate"] = "image", "pull", "https://"+addrB, "lxd", string(certB)
		status, env := a.API("POST", "/1.0/images", map[string]any{"source": src})
		if status != 404 || !strings.Contains(env.Error, "private") {
			t.Fatalf("pull of a private image without a secret: %d %q", status, env.Error)
		}
	}
	if strings.Contains(a.MustC("image", "list", "--format", "csv", "-c", "F"), privFP[:12]) {
		t.Fatal("a refused private image is in A's store")
	}

	// `c`, trusted by B, gets a one-time download secret for it from B and
	// hands it to A, which then copies it.
	a.MustC("image", "copy", "b:privimg", "local:", "--alias", "p")
	if got := imageFingerprintOf(t, a, "p"); got != privFP {
		t.Fatalf("alias p on A points at %s, want B's private %s", got, privFP)
	}

	// A secret opens its image for one export only, and a wrong one none.
	status, env := b.API("POST", "/1.0/images/"+privFP+"/secret", nil)
	if status != 202 {
		t.Fatalf("image secret: %d %s", status, env.Error)
	}
	var op struct {
		Metadata struct {
			Secret string `json:"secret"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(env.Metadata, &op); err != nil || op.Metadata.Secret == "" {
		t.Fatalf("image secret operation: %s, %v", env.Metadata, err)
	}
	untrusted := untrustedClient(t, b, addrB)
	ctx := context.Background()
	if _, err := untrusted.ExportPrivateImage(ctx, privFP, strings.Repeat("0", 64), io.Discard, io.Discard, nil); !client.IsNotFound(err) {
		t.Fatalf("export with a wrong secret: %v, want not found", err)
	}
	if _, err := untrusted.ExportPrivateImage(ctx, privFP, op.Metadata.Secret, io.Discard, io.Discard, nil); err != nil {
		t.Fatalf("export with the secret: %v", err)
	}
	if _, err := untrusted.ExportPrivateImage(ctx, privFP, op.Metadata.Secret, io.Discard, io.Discard, nil); !client.IsNotFound(err) {
		t.Fatalf("second export with a used secret: %v, want not found", err)
	}
}

// imageFingerprintOf is the fingerprint an alias points at, on d.
func imageFingerprintOf(t *testing.T, d *harness.Daemon, alias string) string {
	t.Helper()
	status, env := d.API("GET", "/1.0/images/aliases/"+alias, nil)
	if status != 200 {
		t.Fatalf("alias %s: %d %s", alias, status, env.Error)
	}
	var entry struct {
		Target string `json:"target"`
	}
	if err := json.Unmarshal(env.Metadata, &entry); err != nil {
		t.Fatal(err)
	}
	return entry.Target
}

// An LXD-protocol server whose export does not hash to the fingerprint it
// announced: the pull fails saying so, and nothing of it is left on A.
func TestRemoteImagesLXDCorruptTransfer(t *testing.T) {
	a := harness.StartDaemon(t)
	good := tinyImage(t, "corrupt-me")
	sum := sha256.Sum256(good)
	fp := hex.EncodeToString(sum[:])
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff

	sync := func(w http.ResponseWriter, md any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "sync", "status": "Success", "status_code": 200, "metadata": md})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /1.0/images/aliases/tiny", func(w http.ResponseWriter, r *http.Request) {
		sync(w, map[string]any{"name": "tiny", "target": fp, "type": "container"})
	})
	mux.HandleFunc("GET /1.0/images/"+fp, func(w http.ResponseWriter, r *http.Request) {
		sync(w, map[string]any{"fingerprint": fp, "architecture": "x86_64", "type": "container", "public": true,
			"size": len(good), "filename": "tiny.tar.gz", "aliases": []map[string]string{{"name": "tiny"}}})
	})
	mux.HandleFunc("GET /1.0/images/"+fp+"/export", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bad)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	status, env := a.API("POST", "/1.0/images", map[string]any{"source": map[string]string{
		"type": "image", "mode": "pull", "server": srv.URL, "protocol": "lxd", "certificate": string(certPEM), "alias": "tiny"}})
	if status != http.StatusAccepted {
		t.Fatalf("pull: %d %s", status, env.Error)
	}
	op := a.Wait(env)
	t.Logf("refused: %s", op.Err)
	if op.StatusCode == 200 || !strings.Contains(op.Err, fp) {
		t.Fatalf("pull of a corrupted image: %s %q, want a failure naming the fingerprint", op.Status, op.Err)
	}
	if status, _ := a.API("GET", "/1.0/images/"+fp, nil); status != http.StatusNotFound {
		t.Fatalf("the corrupted image is listed on A: %d", status)
	}
	assertNoPartialDownload(t, a, fp)
}

// LXD's own client copies images between two celld the way it does
// between two LXD: the target pulls from the source, with a secret for a
// private image.
func TestRemoteImagesLXDWithLXCClient(t *testing.T) {
	if _, err := exec.LookPath("lxc"); err != nil {
		t.Skip("lxc (lxd-client) is not installed")
	}
	a := harness.StartDaemon(t)
	b := harness.StartDaemon(t)
	a.EnableHTTPS()
	b.EnableHTTPS()
	pubOp := b.MustSucceed("POST", "/1.0/images", bytes.NewReader(tinyImage(t, "lxc-public")))
	pub, _ := pubOp.Metadata["fingerprint"].(string)
	if status, env := b.API("PATCH", "/1.0/images/"+pub, map[string]any{"public": true}); status != 200 {
		t.Fatalf("make public: %s", env.Error)
	}
	if status, env := b.API("POST", "/1.0/images/aliases", map[string]string{"name": "pubimg", "target": pub}); status != 201 {
		t.Fatalf("alias: %s", env.Error)
	}
	privOp := b.MustSucceed("POST", "/1.0/images", bytes.NewReader(tinyImage(t, "lxc-private")))
	priv, _ := privOp.Metadata["fingerprint"].(string)

	conf := t.TempDir()
	lxc := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("lxc", args...)
		cmd.Env = append(os.Environ(), "LXD_CONF="+conf, "HOME="+conf)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("lxc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for name, d := range map[string]*harness.Daemon{"a": a, "b": b} {
		token := strings.TrimSpace(d.MustC("config", "trust", "add", "--name", "lxc", "-q"))
		lxc("remote", "add", name, token)
	}
	lxc("image", "copy", "b:pubimg", "a:", "--alias", "x")
	if got := imageFingerprintOf(t, a, "x"); got != pub {
		t.Fatalf("alias x on A points at %s, want %s", got, pub)
	}
	lxc("image", "copy", "b:"+priv[:12], "a:", "--alias", "p")
	if got := imageFingerprintOf(t, a, "p"); got != priv {
		t.Fatalf("alias p on A points at %s, want %s", got, priv)
	}
}
