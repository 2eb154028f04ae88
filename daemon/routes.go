package daemon

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// apiExtensions lists only what celld really implements: LXD clients look
// at this list before using a feature.
var apiExtensions = []string{
	"storage",
	"file_delete",
	"file_append",
	"file_symlinks",
	"directory_manipulation",
	"container_exec_recording",
	"container_exec_signal_handling",
	"container_user_group_cwd",
	"container_full",
	// Backups in LXD's tarball layout (not optimized storage yet).
	"container_backup",
	"backup_compression",
	"container_backup_override_pool",
	"backup_override_name",
	"event_lifecycle",
	"api_filtering",
	"operation_wait",
	"image_create_aliases",
	"image_compression_algorithm",
	"instances",
	"snapshot_expiry",
	"snapshot_expiry_creation",
	// Local copy: --instance-only and --refresh.
	"container_only_migration",
	"container_incremental_copy",
	// Migration between servers in push mode (migrate_source.go).
	"container_push",
	"container_push_target",
	"resources",
	"resources_v2",
	"metrics",
	// Managed bridges (api_networks.go).
	"network",
	"network_leases",
	"network_state",
	"network_dhcp_expiry",
	// The HTTPS API's trust store: join tokens (`lxc config trust add`
	// checks for it) and the restricted flag.
	"certificate_token",
	"certificate_update",
	"remote_token_expiry",
	// Custom volume snapshots and restore; volume copy between pools.
	"storage_api_volume_snapshots",
	"storage_api_local_volume_handling",
}

func (d *Daemon) router() http.Handler {
	r := chi.NewRouter()
	r.Method("GET", "/", handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return syncResponse(w, []string{"/1.0"})
	}))
	r.Route("/1.0", func(r chi.Router) {
		r.Method("GET", "/", handlerFunc(d.getServer))
		r.Method("PUT", "/", handlerFunc(d.putServer))
		r.Method("PATCH", "/", handlerFunc(d.patchServer))

		// /1.0/containers is what older clients (pylxd 2.2) use.
		for _, base := range []string{"/instances", "/containers"} {
			r.Route(base, func(r chi.Router) {
				r.Method("GET", "/", handlerFunc(d.listInstances))
				r.Method("POST", "/", handlerFunc(d.createInstance))
				r.Route("/{name}", func(r chi.Router) {
					r.Method("GET", "/", handlerFunc(d.getInstance))
					r.Method("PUT", "/", handlerFunc(d.putInstance))
					r.Method("PATCH", "/", handlerFunc(d.patchInstance))
					r.Method("DELETE", "/", handlerFunc(d.deleteInstance))
					r.Method("POST", "/", handlerFunc(d.postInstance))
					r.Method("GET", "/state", handlerFunc(d.getInstanceState))
					r.Method("GET", "/diff", handlerFunc(d.getInstanceDiff))
					r.Method("PUT", "/state", handlerFunc(d.putInstanceState))
					r.Method("POST", "/exec", handlerFunc(d.execInstance))
					r.Method("GET", "/files", handlerFunc(d.getInstanceFile))
					r.Method("HEAD", "/files", handlerFunc(d.getInstanceFile))
					r.Method("POST", "/files", handlerFunc(d.postInstanceFile))
					r.Method("DELETE", "/files", handlerFunc(d.deleteInstanceFile))
					r.Method("GET", "/logs", handlerFunc(d.listInstanceLogs))
					r.Method("GET", "/logs/*", handlerFunc(d.getInstanceLog))
					r.Method("DELETE", "/logs/*", handlerFunc(d.deleteInstanceLog))
					r.Method("GET", "/snapshots", handlerFunc(d.listInstanceSnapshots))
					r.Method("POST", "/snapshots", handlerFunc(d.createInstanceSnapshot))
					r.Method("GET", "/snapshots/{snap}", handlerFunc(d.getInstanceSnapshot))
					r.Method("PUT", "/snapshots/{snap}", handlerFunc(d.putInstanceSnapshot))
					r.Method("DELETE", "/snapshots/{snap}", handlerFunc(d.deleteInstanceSnapshot))
					r.Method("POST", "/snapshots/{snap}", handlerFunc(d.postInstanceSnapshot))
					r.Method("GET", "/backups", handlerFunc(d.listBackups))
					r.Method("POST", "/backups", handlerFunc(d.createBackup))
					r.Method("GET", "/backups/{backup}", handlerFunc(d.getBackup))
					r.Method("DELETE", "/backups/{backup}", handlerFunc(d.deleteBackup))
					r.Method("GET", "/backups/{backup}/export", handlerFunc(d.exportBackup))
				})
			})
		}

		r.Method("GET", "/operations", handlerFunc(d.listOperations))
		r.Method("GET", "/operations/{id}", handlerFunc(d.getOperation))
		r.Method("DELETE", "/operations/{id}", handlerFunc(d.cancelOperation))
		r.Method("GET", "/operations/{id}/wait", handlerFunc(d.waitOperation))
		r.Method("GET", "/operations/{id}/websocket", handlerFunc(d.operationWebsocket))
		r.Method("GET", "/events", handlerFunc(d.getEvents))
		r.Method("GET", "/resources", handlerFunc(d.getResources))
		r.Method("GET", "/metrics", handlerFunc(d.getMetrics))

		r.Method("GET", "/images", handlerFunc(d.listImages))
		r.Method("POST", "/images", handlerFunc(d.createImage))
		r.Method("GET", "/images/aliases", handlerFunc(d.listImageAliases))
		r.Method("POST", "/images/aliases", handlerFunc(d.createImageAlias))
		// Alias names may contain slashes (debian/12).
		r.Method("GET", "/images/aliases/*", handlerFunc(d.getImageAlias))
		r.Method("PUT", "/images/aliases/*", handlerFunc(d.putImageAlias))
		r.Method("PATCH", "/images/aliases/*", handlerFunc(d.patchImageAlias))
		r.Method("POST", "/images/aliases/*", handlerFunc(d.renameImageAlias))
		r.Method("DELETE", "/images/aliases/*", handlerFunc(d.deleteImageAlias))
		r.Method("GET", "/images/{fingerprint}", handlerFunc(d.getImage))
		r.Method("PUT", "/images/{fingerprint}", handlerFunc(d.putImage))
		r.Method("PATCH", "/images/{fingerprint}", handlerFunc(d.patchImage))
		r.Method("DELETE", "/images/{fingerprint}", handlerFunc(d.deleteImage))
		r.Method("GET", "/images/{fingerprint}/export", handlerFunc(d.exportImage))
		r.Method("POST", "/images/{fingerprint}/refresh", handlerFunc(d.refreshImageHandler))
		r.Method("POST", "/images/{fingerprint}/secret", handlerFunc(d.createImageSecret))

		r.Method("GET", "/profiles", handlerFunc(d.listProfiles))
		r.Method("POST", "/profiles", handlerFunc(d.createProfile))
		r.Method("GET", "/profiles/{name}", handlerFunc(d.getProfile))
		r.Method("PUT", "/profiles/{name}", handlerFunc(d.putProfile))
		r.Method("PATCH", "/profiles/{name}", handlerFunc(d.patchProfile))
		r.Method("POST", "/profiles/{name}", handlerFunc(d.renameProfile))
		r.Method("DELETE", "/profiles/{name}", handlerFunc(d.deleteProfile))

		r.Method("GET", "/networks", handlerFunc(d.listNetworks))
		r.Method("POST", "/networks", handlerFunc(d.createNetworkHandler))
		r.Method("GET", "/networks/{name}", handlerFunc(d.getNetwork))
		r.Method("PUT", "/networks/{name}", handlerFunc(d.putNetwork))
		r.Method("PATCH", "/networks/{name}", handlerFunc(d.patchNetwork))
		r.Method("DELETE", "/networks/{name}", handlerFunc(d.deleteNetworkHandler))
		r.Method("POST", "/networks/{name}", handlerFunc(d.renameNetwork))
		r.Method("GET", "/networks/{name}/leases", handlerFunc(d.getNetworkLeases))
		r.Method("GET", "/networks/{name}/state", handlerFunc(d.getNetworkState))

		r.Method("GET", "/storage-pools", handlerFunc(d.listStoragePools))
		r.Method("POST", "/storage-pools", handlerFunc(d.createStoragePool))
		r.Method("GET", "/storage-pools/{name}", handlerFunc(d.getStoragePool))
		r.Method("PUT", "/storage-pools/{name}", handlerFunc(d.putStoragePool))
		r.Method("PATCH", "/storage-pools/{name}", handlerFunc(d.patchStoragePool))
		r.Method("DELETE", "/storage-pools/{name}", handlerFunc(d.deleteStoragePool))
		r.Method("GET", "/storage-pools/{name}/resources", handlerFunc(d.getStoragePoolResources))
		r.Method("GET", "/storage-pools/{name}/volumes", handlerFunc(d.listStorageVolumes))
		r.Method("POST", "/storage-pools/{name}/volumes", handlerFunc(d.createStorageVolume))
		r.Method("GET", "/storage-pools/{name}/volumes/{type}", handlerFunc(d.listStorageVolumes))
		r.Method("POST", "/storage-pools/{name}/volumes/{type}", handlerFunc(d.createStorageVolume))
		r.Method("GET", "/storage-pools/{name}/volumes/{type}/{volume}", handlerFunc(d.getStorageVolume))
		r.Method("PUT", "/storage-pools/{name}/volumes/{type}/{volume}", handlerFunc(d.putStorageVolume))
		r.Method("PATCH", "/storage-pools/{name}/volumes/{type}/{volume}", handlerFunc(d.patchStorageVolume))
		r.Method("POST", "/storage-pools/{name}/volumes/{type}/{volume}", handlerFunc(d.renameStorageVolume))
		r.Method("DELETE", "/storage-pools/{name}/volumes/{type}/{volume}", handlerFunc(d.deleteStorageVolume))
		r.Method("GET", "/storage-pools/{name}/volumes/{type}/{volume}/snapshots", handlerFunc(d.listVolumeSnapshots))
		r.Method("POST", "/storage-pools/{name}/volumes/{type}/{volume}/snapshots", handlerFunc(d.createVolumeSnapshot))
		r.Method("GET", "/storage-pools/{name}/volumes/{type}/{volume}/snapshots/{snap}", handlerFunc(d.getVolumeSnapshot))
		r.Method("DELETE", "/storage-pools/{name}/volumes/{type}/{volume}/snapshots/{snap}", handlerFunc(d.deleteVolumeSnapshot))

		// The trust store of the HTTPS API (api_certificates.go).
		r.Method("GET", "/certificates", handlerFunc(d.listCertificates))
		r.Method("POST", "/certificates", handlerFunc(d.createCertificate))
		r.Method("GET", "/certificates/{fingerprint}", handlerFunc(d.getCertificate))
		r.Method("PUT", "/certificates/{fingerprint}", handlerFunc(d.putCertificate))
		r.Method("PATCH", "/certificates/{fingerprint}", handlerFunc(d.patchCertificate))
		r.Method("DELETE", "/certificates/{fingerprint}", handlerFunc(d.deleteCertificate))
	})
	// Only local root reaches the unix socket; `celld shutdown` uses this.
	r.Method("PUT", "/internal/shutdown", handlerFunc(d.internalShutdown))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
	})
	// HTTPS clients get only what their certificate allows (auth.go).
	return d.authenticate(r)
}
