package api

import "encoding/json"

// ResponseType is the "type" field of every API response.
type ResponseType string

// The three kinds of response envelope.
const (
	SyncResponse  ResponseType = "sync"
	AsyncResponse ResponseType = "async"
	ErrorResponse ResponseType = "error"
)

// Response is the envelope around every answer of the API.
type Response struct {
	Type       ResponseType    `json:"type"`
	Status     string          `json:"status"`
	StatusCode int             `json:"status_code"`
	Operation  string          `json:"operation"`
	ErrorCode  int             `json:"error_code"`
	Error      string          `json:"error"`
	Metadata   json.RawMessage `json:"metadata"`
}

// StatusCode is LXD's numeric status of operations and instances.
type StatusCode int

// Status codes, as LXD numbers them.
const (
	OperationCreated StatusCode = 100
	Started          StatusCode = 101
	Stopped          StatusCode = 102
	Running          StatusCode = 103
	Cancelling       StatusCode = 104
	Pending          StatusCode = 105
	Starting         StatusCode = 106
	Stopping         StatusCode = 107
	Aborting         StatusCode = 108
	Freezing         StatusCode = 109
	Frozen           StatusCode = 110
	Thawed           StatusCode = 111
	Error            StatusCode = 112
	Ready            StatusCode = 113
	Success          StatusCode = 200
	Failure          StatusCode = 400
	Cancelled        StatusCode = 401
)

var statusNames = map[StatusCode]string{
	OperationCreated: "Operation created",
	Started:          "Started",
	Stopped:          "Stopped",
	Running:          "Running",
	Cancelling:       "Cancelling",
	Pending:          "Pending",
	Starting:         "Starting",
	Stopping:         "Stopping",
	Aborting:         "Aborting",
	Freezing:         "Freezing",
	Frozen:           "Frozen",
	Thawed:           "Thawed",
	Error:            "Error",
	Ready:            "Ready",
	Success:          "Success",
	Failure:          "Failure",
	Cancelled:        "Cancelled",
}

// String returns the name LXD gives the status ("Running", "Success", ...).
func (s StatusCode) String() string { return statusNames[s] }

// IsFinal reports whether an operation in this status has ended.
func (s StatusCode) IsFinal() bool { return s >= Success }
