package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"cell/shared/api"
)

// Operation is a background task of the server, as returned by async calls.
// Its fields are refreshed by Wait and Refresh.
type Operation struct {
	api.Operation
	c *Client
}

// OperationError is an operation that ended in failure or was cancelled.
// Its message is the server's error text verbatim.
type OperationError struct {
	Op api.Operation
}

func (e *OperationError) Error() string {
	if e.Op.Err != "" {
		return e.Op.Err
	}
	return fmt.Sprintf("operation %s: %s", e.Op.ID, e.Op.Status)
}

// doOperation sends a request that normally answers 202 with an operation.
// A server that answers synchronously instead gets a finished operation, so
// callers can always Wait.
func (c *Client) doOperation(ctx context.Context, r request) (*Operation, error) {
	env, _, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	op := &Operation{c: c}
	if env.Type != api.AsyncResponse {
		op.Status = api.Success.String()
		op.StatusCode = api.Success
		var md map[string]any
		if json.Unmarshal(env.Metadata, &md) == nil {
			op.Metadata = md
		}
		return op, nil
	}
	if err := decodeMetadata(env, &op.Operation); err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	if op.ID == "" && env.Operation != "" {
		op.ID = operationID(env.Operation)
	}
	return op, nil
}

// operationID extracts the id from an operation URL.
func operationID(u string) string {
	u, _, _ = strings.Cut(u, "?")
	return u[strings.LastIndexByte(u, '/')+1:]
}

// done reports whether the operation has ended, and its error if it failed.
func (op *Operation) done() (bool, error) {
	if !op.StatusCode.IsFinal() {
		return false, nil
	}
	if op.StatusCode != api.Success {
		return true, &OperationError{Op: op.Operation}
	}
	return true, nil
}

// Wait blocks until the operation ends or ctx is done. It returns an
// *OperationError when the operation failed or was cancelled.
func (op *Operation) Wait(ctx context.Context) error {
	for {
		if finished, err := op.done(); finished {
			return err
		}
		// timeout=-1 waits as long as the operation runs; ctx still bounds
		// the request. The loop covers servers that cap the wait.
		var updated api.Operation
		_, err := op.c.get(ctx, urlPath("operations", op.ID, "wait"), url.Values{"timeout": {"-1"}}, &updated)
		if err != nil {
			return fmt.Errorf("wait for operation %s: %w", op.ID, err)
		}
		op.Operation = updated
	}
}

// Refresh reloads the operation's state.
func (op *Operation) Refresh(ctx context.Context) error {
	got, err := op.c.GetOperation(ctx, op.ID)
	if err != nil {
		return err
	}
	op.Operation = *got
	return nil
}

// Cancel asks the server to cancel the operation.
func (op *Operation) Cancel(ctx context.Context) error {
	return op.c.DeleteOperation(ctx, op.ID)
}

// GetOperationIDs lists the ids of the server's operations.
func (c *Client) GetOperationIDs(ctx context.Context) ([]string, error) {
	// The answer groups URLs by status: {"running": [...], "success": [...]}.
	var byStatus map[string][]string
	if _, err := c.get(ctx, "/1.0/operations", nil, &byStatus); err != nil {
		return nil, err
	}
	var ids []string
	for _, urls := range byStatus {
		for _, u := range urls {
			ids = append(ids, operationID(u))
		}
	}
	return ids, nil
}

// GetOperations lists the server's operations.
func (c *Client) GetOperations(ctx context.Context) ([]api.Operation, error) {
	var byStatus map[string][]api.Operation
	if _, err := c.get(ctx, "/1.0/operations", recursion(1), &byStatus); err != nil {
		return nil, err
	}
	var ops []api.Operation
	for _, list := range byStatus {
		ops = append(ops, list...)
	}
	return ops, nil
}

// GetOperation returns one operation.
func (c *Client) GetOperation(ctx context.Context, id string) (*api.Operation, error) {
	var op api.Operation
	if _, err := c.get(ctx, urlPath("operations", id), nil, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// WaitOperation waits up to timeoutSeconds (-1: no limit) for the operation
// to end and returns its state then, finished or not.
func (c *Client) WaitOperation(ctx context.Context, id string, timeoutSeconds int) (*api.Operation, error) {
	var op api.Operation
	q := url.Values{"timeout": {fmt.Sprint(timeoutSeconds)}}
	if _, err := c.get(ctx, urlPath("operations", id, "wait"), q, &op); err != nil {
		return nil, err
	}
	return &op, nil
}

// DeleteOperation cancels an operation.
func (c *Client) DeleteOperation(ctx context.Context, id string) error {
	return c.sync(ctx, http.MethodDelete, urlPath("operations", id), nil, "")
}
