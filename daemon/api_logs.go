package daemon

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-chi/chi/v5"
)

// logFile resolves a log name of an instance to its path; names are plain
// file names (or exec-output/NAME), never anything that leaves the dir.
func (d *Daemon) logFile(r *http.Request) (string, error) {
	name := chi.URLParam(r, "name")
	if _, err := d.loadInstance(r.Context(), name); err != nil {
		return "", err
	}
	file := chi.URLParam(r, "*")
	dir, base := filepath.Split(file)
	if base == "" || base == "." || base == ".." || strings.Contains(base, "/") || (dir != "" && dir != "exec-output/") {
		return "", badRequest("invalid log file name %q", file)
	}
	return filepath.Join(d.runtime.LogDir, name, dir, base), nil
}

func (d *Daemon) listInstanceLogs(w http.ResponseWriter, r *http.Request) error {
	name := chi.URLParam(r, "name")
	if _, err := d.loadInstance(r.Context(), name); err != nil {
		return err
	}
	entries, _ := os.ReadDir(filepath.Join(d.runtime.LogDir, name))
	out := []string{}
	for _, e := range entries {
		if !e.IsDir() {
			out = append(out, instanceURL(name)+"/logs/"+e.Name())
		}
	}
	return syncResponse(w, out)
}

func (d *Daemon) getInstanceLog(w http.ResponseWriter, r *http.Request) error {
	path, err := d.logFile(r)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return notFound("log file not found")
	}
	if err != nil {
		return err
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.Copy(w, f)
	return nil
}

func (d *Daemon) deleteInstanceLog(w http.ResponseWriter, r *http.Request) error {
	path, err := d.logFile(r)
	if err != nil {
		return err
	}
	if filepath.Base(path) == "lxc.log" {
		return badRequest("the lxc log cannot be deleted")
	}
	if err := os.Remove(path); err != nil {
		return notFound("log file not found")
	}
	return syncResponse(w, nil)
}
