// Package cache owns conversation and run state: the transcript of each
// consortium conversation (the user's turns and the syntheses the user
// received), found again by conversation id or by a hash of the
// transcript, the record of each run, and the Responses API's stored
// responses (see Response). Conversations places a turn in
// its conversation (a continuation by id, a transcript match, a fork) and
// saves it; NewID mints the ids. Everything is kept per tenant and expires
// after the configured TTL. Two backends satisfy Store: an in-memory LRU
// (the default) and Redis, which replicas share through a client the
// caller opens and closes. It knows nothing of HTTP, providers or the
// engine: it stores what it is given.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// ErrNotFound is a conversation or run the tenant does not have (whether
// or not another tenant has one of that id).
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps a failure of the store itself (Redis down or too
// slow); callers tell it from ErrNotFound to answer 503 rather than 404.
var ErrUnavailable = errors.New("the conversation store is unavailable")

// Message is one turn of a transcript, as text.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Turn is a conversation after one consortium turn.
type Turn struct {
	// Conversation is the conversation's id, "conv_…".
	Conversation string `json:"conversation_id"`
	// Consortium is the consortium that answered.
	Consortium string `json:"consortium"`
	// Transcript is the whole conversation the user saw, this turn's
	// synthesis last: user and assistant turns, no system messages.
	Transcript []Message `json:"transcript"`
	// RunID is the run that wrote this turn's synthesis.
	RunID string    `json:"run_id"`
	Time  time.Time `json:"time"`
}

// Store keeps turns and runs per tenant. Every method bounds its own wait;
// a failure of the store itself is reported wrapping ErrUnavailable.
type Store interface {
	// Match returns the turn of tenant and consortium whose transcript
	// hashes to hash (see Hash), or ErrNotFound.
	Match(ctx context.Context, tenant, consortium, hash string) (*Turn, error)
	// Latest returns the latest turn stored under a conversation id, or
	// ErrNotFound.
	Latest(ctx context.Context, tenant, conversation string) (*Turn, error)
	// Save stores a turn (found again by the hash of its transcript and as
	// its conversation's latest) and its run's record (nil for none) under
	// turn.RunID, in one round trip; the run's summary joins the tenant's
	// index of recent runs as it is given.
	Save(ctx context.Context, tenant string, turn *Turn, run *RunRecord) error
	// Run returns a run record, or ErrNotFound.
	Run(ctx context.Context, tenant, id string) ([]byte, error)
	// Runs returns the summaries of tenant's recent runs, newest first, at
	// most limit (RunsPerTenant if limit is zero), none for a tenant
	// without any.
	Runs(ctx context.Context, tenant string, limit int) ([]RunSummary, error)
	// SaveResponse stores a Responses API response record under its id
	// ("resp_…"), with the same TTL as turns.
	SaveResponse(ctx context.Context, tenant, id string, record []byte) error
	// Response returns a response record, or ErrNotFound.
	Response(ctx context.Context, tenant, id string) ([]byte, error)
	// DeleteResponse removes a response record, or returns ErrNotFound
	// when the tenant has none of that id.
	DeleteResponse(ctx context.Context, tenant, id string) error
	// Ping says whether the store answers.
	Ping(ctx context.Context) error
}

// Hash identifies a transcript of a consortium: every turn counts, not
// only the latest, so two conversations that end alike do not match.
func Hash(consortium string, transcript []Message) string {
	h := sha256.New()
	var n [20]byte
	write := func(s string) {
		h.Write(strconv.AppendInt(n[:0], int64(len(s)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	write(consortium)
	for _, m := range transcript {
		write(m.Role)
		write(m.Content)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// tenantKey writes a tenant's name into a key unambiguously, whatever it
// holds: its length, then the name.
func tenantKey(tenant string) string {
	return strconv.Itoa(len(tenant)) + ":" + tenant
}

// The keys of each kind of record. The tenant is part of every key, so
// no tenant can address another's data.
func turnKey(tenant, consortium, hash string) string {
	return "consortium:turn:" + tenantKey(tenant) + ":" + tenantKey(consortium) + ":" + hash
}

func convKey(tenant, conversation string) string {
	return "consortium:conv:" + tenantKey(tenant) + ":" + conversation
}

func runKey(tenant, id string) string {
	return "consortium:run:" + tenantKey(tenant) + ":" + id
}
