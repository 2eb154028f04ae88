package daemon

import (
	"net/http"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"cell/daemon/liblxc"
	"cell/shared/api"
)

// serverConfigKeys are the server config keys celld knows so far.
var serverConfigKeys = map[string]bool{
	// Image auto-update and cache expiry (image_update.go).
	keyImagesAutoUpdateInterval: true, keyImagesAutoUpdateCached: true, keyImagesRemoteCacheExpiry: true,
	// The HTTPS API (https.go).
	keyHTTPSAddress: true, keyTrustPassword: true, keyRemoteTokenExpiry: true,
}

func utsField(b [65]byte) string { return strings.TrimRight(string(b[:]), "\x00") }

func (d *Daemon) getServer(w http.ResponseWriter, r *http.Request) error {
	cfg, err := d.db.ServerConfig(r.Context())
	if err != nil {
		return err
	}
	config := map[string]any{}
	for k, v := range cfg {
		config[k] = v
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	host, _ := os.Hostname()
	arch := utsField(uts.Machine)
	srv := api.Server{
		ServerPut: api.ServerPut{Config: config},
		ServerUntrusted: api.ServerUntrusted{
			APIExtensions: apiExtensions, APIStatus: "stable", APIVersion: "1.0",
			Auth: "trusted", Public: false, AuthMethods: []string{"tls"},
		},
		Environment: api.ServerEnvironment{
			Addresses: []string{}, Architectures: []string{arch},
			Driver: "lxc", DriverVersion: liblxc.Version(),
			Kernel: utsField(uts.Sysname), KernelArchitecture: arch, KernelVersion: utsField(uts.Release),
			KernelFeatures: map[string]string{}, LXCFeatures: map[string]string{},
			OSName: "Cell", OSVersion: runtime.Version(), Project: "default",
			Server: "cell", ServerName: host, ServerPid: os.Getpid(), ServerVersion: Version,
			ServerEventMode: "full-mesh", Storage: "dir", StorageVersion: "1",
			StorageSupportedDrivers: []api.ServerStorageDriverInfo{{Name: "dir", Version: "1"}},
		},
	}
	d.fillServerTLS(&srv)
	return syncResponse(w, srv)
}

func (d *Daemon) putServer(w http.ResponseWriter, r *http.Request) error {
	return d.updateServer(w, r, false)
}

func (d *Daemon) patchServer(w http.ResponseWriter, r *http.Request) error {
	return d.updateServer(w, r, true)
}

func (d *Daemon) updateServer(w http.ResponseWriter, r *http.Request, patch bool) error {
	var req api.ServerPut
	if err := readJSON(r, &req); err != nil {
		return err
	}
	cfg := map[string]string{}
	if patch {
		old, err := d.db.ServerConfig(r.Context())
		if err != nil {
			return err
		}
		cfg = old
	}
	for k, v := range req.Config {
		if !serverConfigKeys[k] {
			return badRequest("unknown server config key %q", k)
		}
		s, ok := v.(string)
		if !ok {
			return badRequest("server config key %q: value must be a string", k)
		}
		if err := validateImagesConfig(k, s); err != nil {
			return err
		}
		if s == "" {
			delete(cfg, k)
		} else {
			cfg[k] = s
		}
	}
	commitTLS, err := d.prepareServerConfig(r.Context(), cfg)
	if err != nil {
		return err
	}
	if err := d.db.ReplaceServerConfig(r.Context(), cfg); err != nil {
		commitTLS(false)
		return err
	}
	commitTLS(true)
	return syncResponse(w, nil)
}
