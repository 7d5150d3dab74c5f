package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/consortium-dev/consortium/openai"
)

// Response is a stored Responses API response: one turn that a later
// request names by previous_response_id to continue from it. Each keeps
// its whole history, so deleting one never breaks the turns after it.
type Response struct {
	// ID is the response's id, "resp_…".
	ID string `json:"id"`
	// Model is the model that answered (a consortium or provider/model).
	Model string `json:"model"`
	// History is the conversation up to and including this response's
	// answer: the earlier history, this request's input, then the
	// assistant's output. Instructions are not part of it: they do not
	// carry over to the next turn.
	History []openai.Message `json:"history"`
	// Object is the response object as the client received it, which
	// GET /v1/responses/{id} returns.
	Object json.RawMessage `json:"object"`
}

// ItemID returns the id of the output message item of the response id:
// "msg_X" for "resp_X", the same random part, so that an item reference
// finds its response without an index of its own (and is as unguessable).
func ItemID(responseID string) string {
	return "msg_" + strings.TrimPrefix(responseID, "resp_")
}

// ItemResponse returns the id of the response whose output message item
// is itemID, and false for an id that is not one ItemID makes.
func ItemResponse(itemID string) (string, bool) {
	rest, ok := strings.CutPrefix(itemID, "msg_")
	if !ok || rest == "" {
		return "", false
	}
	return "resp_" + rest, true
}

func responseKey(tenant, id string) string {
	return "consortium:resp:" + tenantKey(tenant) + ":" + id
}

// SaveResponse stores a response of tenant, as Save stores a turn: bounded
// by its own timeout, and done even if ctx is cancelled.
func (c *Conversations) SaveResponse(ctx context.Context, tenant string, r *Response) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	return c.store.SaveResponse(ctx, tenant, r.ID, data)
}

// Response returns a stored response of tenant, or ErrNotFound.
func (c *Conversations) Response(ctx context.Context, tenant, id string) (*Response, error) {
	data, err := c.store.Response(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	var r Response
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("a stored response does not decode: %w", err)
	}
	return &r, nil
}

// DeleteResponse removes a stored response of tenant, or returns
// ErrNotFound. Responses that continued from it keep their own history.
func (c *Conversations) DeleteResponse(ctx context.Context, tenant, id string) error {
	return c.store.DeleteResponse(ctx, tenant, id)
}
