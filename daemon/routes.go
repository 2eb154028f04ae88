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
	// Listing only (always empty): `lxc info NAME` needs it. Creating a
	// backup answers 501.
	"container_backup",
	"event_lifecycle",
	"api_filtering",
	"operation_wait",
	"image_create_aliases",
	"instances",
	"snapshot_expiry",
	"snapshot_expiry_creation",
	// Local copy: --instance-only and --refresh.
	"container_only_migration",
	"container_incremental_copy",
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
					r.Method("GET", "/backups", handlerFunc(d.listInstanceBackups))
					r.Method("POST", "/backups", handlerFunc(d.createInstanceBackup))
				})
			})
		}

		r.Method("GET", "/operations", handlerFunc(d.listOperations))
		r.Method("GET", "/operations/{id}", handlerFunc(d.getOperation))
		r.Method("DELETE", "/operations/{id}", handlerFunc(d.cancelOperation))
		r.Method("GET", "/operations/{id}/wait", handlerFunc(d.waitOperation))
		r.Method("GET", "/operations/{id}/websocket", handlerFunc(d.operationWebsocket))
		r.Method("GET", "/events", handlerFunc(d.getEvents))

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

		r.Method("GET", "/profiles", handlerFunc(d.listProfiles))
		r.Method("POST", "/profiles", handlerFunc(d.createProfile))
		r.Method("GET", "/profiles/{name}", handlerFunc(d.getProfile))
		r.Method("PUT", "/profiles/{name}", handlerFunc(d.putProfile))
		r.Method("PATCH", "/profiles/{name}", handlerFunc(d.patchProfile))
		r.Method("POST", "/profiles/{name}", handlerFunc(d.renameProfile))
		r.Method("DELETE", "/profiles/{name}", handlerFunc(d.deleteProfile))

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
	})
	// Only local root reaches the unix socket; `celld shutdown` uses this.
	r.Method("PUT", "/internal/shutdown", handlerFunc(d.internalShutdown))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
	})
	return r
}
