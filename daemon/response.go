package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"cell/daemon/db"
	"cell/daemon/operations"
	"cell/shared/api"
)

// apiError is an error with the HTTP status the API answers it with.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// Errors that handlers return; the message tells the user what was wrong.
func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &apiError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &apiError{http.StatusConflict, fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &apiError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

// statusOf maps an error to the HTTP status of its answer.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, db.ErrNotFound), errors.Is(err, operations.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, db.ErrExists):
		return http.StatusConflict
	case errors.Is(err, operations.ErrForbidden):
		return http.StatusForbidden
	default:
		return http.StatusInternalServerError
	}
}

// handlerFunc is an API handler: it writes its own success answer, or
// returns an error that becomes an error envelope.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h(w, r); err != nil {
		status := statusOf(err)
		if status >= 500 {
			slog.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, status, err.Error())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{
		"type": api.ErrorResponse, "error": msg, "error_code": status, "metadata": nil,
		"status": "", "status_code": 0, "operation": "",
	})
}

// syncResponse answers 200 with metadata.
func syncResponse(w http.ResponseWriter, metadata any) error {
	writeJSON(w, http.StatusOK, map[string]any{
		"type": api.SyncResponse, "status": api.Success.String(), "status_code": api.Success,
		"operation": "", "error_code": 0, "error": "", "metadata": metadata,
	})
	return nil
}

// createdResponse answers 201 with the new object's URL in Location.
func createdResponse(w http.ResponseWriter, location string) error {
	w.Header().Set("Location", location)
	writeJSON(w, http.StatusCreated, map[string]any{
		"type": api.SyncResponse, "status": api.Success.String(), "status_code": api.Success,
		"operation": "", "error_code": 0, "error": "", "metadata": map[string]any{},
	})
	return nil
}

// asyncResponse answers 202 with a running operation.
func asyncResponse(w http.ResponseWriter, op *operations.Operation) error {
	w.Header().Set("Location", op.URL())
	writeJSON(w, http.StatusAccepted, map[string]any{
		"type": api.AsyncResponse, "status": api.OperationCreated.String(), "status_code": api.OperationCreated,
		"operation": op.URL(), "error_code": 0, "error": "", "metadata": op.Get(),
	})
	return nil
}

// maxJSONBody bounds every JSON request body: configs are small, and an
// endless body must not exhaust memory.
const maxJSONBody = 16 << 20

// readJSON decodes a JSON request body into v.
func readJSON(r *http.Request, v any) error {
	body := io.LimitReader(r.Body, maxJSONBody+1)
	data, err := io.ReadAll(body)
	if err != nil {
		return badRequest("read request body: %v", err)
	}
	if len(data) > maxJSONBody {
		return &apiError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxJSONBody)}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badRequest("invalid JSON in request body: %v", err)
	}
	return nil
}
