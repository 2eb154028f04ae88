package daemon

import (
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"

	"github.com/go-chi/chi/v5"

	"cell/shared/api"
	"cell/shared/tlsutil"
)

// errNotAuthorized is LXD's answer to an untrusted client.
const errNotAuthorized = "not authorized"

// trusted tells whether a request comes from a trusted client: anything on
// the unix socket (reaching it takes root or the socket's group), and on
// HTTPS a client whose certificate is in the trust store.
func (d *Daemon) trusted(r *http.Request) bool {
	if r.TLS == nil {
		return true
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	fp := tlsutil.Fingerprint(r.TLS.PeerCertificates[0])
	d.tls.trustMu.RLock()
	_, ok := d.tls.trusted[fp]
	d.tls.trustMu.RUnlock()
	// A restricted certificate is limited to projects; with the default
	// project the only one, it reaches all of it.
	return ok
}

// authenticate lets trusted clients through and gives untrusted ones what
// LXD gives them: the API root, the reduced server info, adding
// themselves to the trust store, and public images and their aliases.
// /internal stays on the unix socket.
func (d *Daemon) authenticate(next http.Handler) http.Handler {
	return &authHandler{d: d, next: next}
}

type authHandler struct {
	d    *Daemon
	next http.Handler
}

func (a *authHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		a.next.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/internal") {
		writeError(w, http.StatusForbidden, errNotAuthorized)
		return
	}
	if a.d.trusted(r) {
		a.next.ServeHTTP(w, r)
		return
	}
	if h := a.d.untrustedHandler(r, a.next); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	writeError(w, http.StatusForbidden, errNotAuthorized)
}

// untrustedHandler returns what serves an untrusted request, or nil when
// it is not allowed. The path must be clean: "/1.0/images/../instances"
// could route elsewhere than it looks.
func (d *Daemon) untrustedHandler(r *http.Request, next http.Handler) http.Handler {
	p := r.URL.Path
	if p != "/1.0/" && path.Clean(p) != p {
		return nil
	}
	p = strings.TrimSuffix(p, "/")
	switch r.Method {
	case http.MethodGet:
		switch {
		case p == "":
			return next
		case p == "/1.0":
			return handlerFunc(d.getServerUntrusted)
		case p == "/1.0/images":
			return handlerFunc(d.listPublicImages)
		case p == "/1.0/images/aliases":
			return handlerFunc(d.listPublicImageAliases)
		case strings.HasPrefix(p, "/1.0/images/aliases/"):
			return d.ifPublicAlias(strings.TrimPrefix(p, "/1.0/images/aliases/"), next)
		case strings.HasPrefix(p, "/1.0/images/"):
			fp, rest, _ := strings.Cut(strings.TrimPrefix(p, "/1.0/images/"), "/")
			if rest == "" || rest == "export" {
				return d.ifPublicOrSecretImage(r, fp, rest, next)
			}
		case strings.HasPrefix(p, "/1.0/operations/") && strings.HasSuffix(p, "/websocket") && r.URL.Query().Get("secret") != "":
			// As LXD: an operation's websocket secret is the credential,
			// which is how a migration target (not trusted by the source)
			// reaches the source's websockets. The handler checks it.
			return next
		}
	case http.MethodPost:
		if p == "/1.0/certificates" {
			return next
		}
	}
	return nil
}

func (d *Daemon) getServerUntrusted(w http.ResponseWriter, r *http.Request) error {
	return syncResponse(w, api.ServerUntrusted{
		APIExtensions: apiExtensions, APIStatus: "stable", APIVersion: "1.0",
		Auth: "untrusted", Public: false, AuthMethods: []string{"tls"},
	})
}

// ifPublicImage serves next when the image is public; a private image is
// "not found", as if it were not there.
func (d *Daemon) ifPublicImage(prefix string, next http.Handler) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		img, err := d.db.Image(r.Context(), prefix)
		if err != nil || !img.Public {
			return notFound("image %q not found", prefix)
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

func (d *Daemon) ifPublicAlias(name string, next http.Handler) http.Handler {
	return handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if a, err := d.db.ImageAlias(r.Context(), name); err == nil {
			if img, err := d.db.Image(r.Context(), a.Fingerprint); err == nil && img.Public {
				next.ServeHTTP(w, r)
				return nil
			}
		}
		return notFound("image alias %q not found", name)
	})
}

func (d *Daemon) listPublicImages(w http.ResponseWriter, r *http.Request) error {
	list, err := d.db.Images(r.Context())
	if err != nil {
		return err
	}
	urls, out := []string{}, []api.Image{}
	for _, i := range list {
		if !i.Public {
			continue
		}
		urls = append(urls, "/1.0/images/"+i.Fingerprint)
		out = append(out, apiImage(i))
	}
	if recursion(r) == 0 {
		return syncResponse(w, urls)
	}
	return syncResponse(w, out)
}

func (d *Daemon) listPublicImageAliases(w http.ResponseWriter, r *http.Request) error {
	images, err := d.db.Images(r.Context())
	if err != nil {
		return err
	}
	public := map[string]bool{}
	for _, i := range images {
		public[i.Fingerprint] = i.Public
	}
	list, err := d.db.ImageAliases(r.Context())
	if err != nil {
		return err
	}
	urls, out := []string{}, []api.ImageAliasesEntry{}
	for _, a := range list {
		if public[a.Fingerprint] {
			urls = append(urls, "/1.0/images/aliases/"+url.PathEscape(a.Name))
			out = append(out, apiAlias(a))
		}
	}
	if recursion(r) == 0 {
		return syncResponse(w, urls)
	}
	return syncResponse(w, out)
}

// Routes lists every route of the API as "METHOD /pattern", sorted: the
// route walk of the access tests goes through all of them.
func Routes() []string {
	var out []string
	d := &Daemon{}
	auth, ok := d.router().(*authHandler)
	if !ok {
		return nil
	}
	mux, ok := auth.next.(chi.Routes)
	if !ok {
		return nil
	}
	_ = chi.Walk(mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, method+" "+strings.TrimSuffix(route, "/"))
		return nil
	})
	sort.Strings(out)
	return out
}
