package daemon

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"cell/shared/api"
)

func (d *Daemon) apiPools(r *http.Request) ([]api.StoragePool, error) {
	list, err := d.db.StoragePools(r.Context())
	if err != nil {
		return nil, err
	}
	out := []api.StoragePool{}
	for _, p := range list {
		users, err := d.db.InstancesInPool(r.Context(), p.Name)
		if err != nil {
			return nil, err
		}
		usedBy := []string{}
		for _, u := range users {
			usedBy = append(usedBy, instanceURL(u))
		}
		out = append(out, api.StoragePool{Name: p.Name, Driver: p.Driver, UsedBy: usedBy, Status: "Created",
			Locations: []string{"none"}, StoragePoolPut: api.StoragePoolPut{Config: p.Config, Description: p.Description}})
	}
	return out, nil
}

func (d *Daemon) listStoragePools(w http.ResponseWriter, r *http.Request) error {
	pools, err := d.apiPools(r)
	if err != nil {
		return err
	}
	if recursion(r) > 0 {
		return syncResponse(w, pools)
	}
	urls := []string{}
	for _, p := range pools {
		urls = append(urls, "/1.0/storage-pools/"+p.Name)
	}
	return syncResponse(w, urls)
}

func (d *Daemon) getStoragePool(w http.ResponseWriter, r *http.Request) error {
	pools, err := d.apiPools(r)
	if err != nil {
		return err
	}
	name := chi.URLParam(r, "name")
	for _, p := range pools {
		if p.Name == name {
			return syncResponse(w, p)
		}
	}
	return notFound("storage pool %q not found", name)
}
