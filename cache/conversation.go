package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

// NewID returns prefix followed by 24 random hex digits. It is the one
// function that mints the project's ids: conversations ("conv_"), runs
// ("run_") and the proxy's request ids ("req_").
func NewID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// ErrNoNewMessage is a continuation by conversation id whose messages,
// once the stored transcript is put before them, hold no new user turn.
var ErrNoNewMessage = errors.New("a continuation needs a new user message after the stored transcript")

// saveTimeout bounds a save that outlives its request: the client may be
// gone when its answer is ready, and the turn is saved all the same.
const saveTimeout = 2 * time.Second

// Conversations places consortium turns in their conversations and saves
// them, over a Store. It is safe for concurrent use.
type Conversations struct {
	store Store
}

// NewConversations returns the conversations kept in store.
func NewConversations(store Store) *Conversations {
	return &Conversations{store: store}
}

// Placement is a consortium turn placed in its conversation.
type Placement struct {
	// ID is the conversation's id, "conv_…"; "" when the store could not
	// be reached, so the turn is served but not saved.
	ID string
	// Unsaved, when ID is "", is the store's failure that keeps the turn
	// from being saved.
	Unsaved error
	// Consortium is the consortium that answers the turn.
	Consortium string
	// Messages are what the consortium sees: the whole conversation, the
	// request's own system messages first.
	Messages []openai.Message
}

// Place finds the conversation a consortium request of tenant continues
// and returns the whole conversation the members and the arbiter must see.
//
// With an id (the request's X-Consortium-Conversation), the latest turn
// stored under it is continued: the request's system messages, then the
// stored transcript, then the request's other messages, without repeating
// a transcript the client sent again. An id the tenant does not have is
// ErrNotFound, a store that fails wraps ErrUnavailable, and no new user
// message is ErrNoNewMessage.
//
// Without an id, the messages before the last user turn may be a stored
// transcript of the same tenant and consortium: then the turn continues
// (or, matching an earlier turn, forks) that conversation. Only the id is
// taken; the request's own messages are what the consortium sees, so no
// stored text the client did not send is injected. Otherwise the turn
// begins a new conversation. A store that fails here does not fail the
// turn, which carries its whole history: the placement has no id and
// Unsaved says why.
func (c *Conversations) Place(ctx context.Context, tenant, consortium, id string, msgs []openai.Message) (*Placement, error) {
	system, rest := splitSystem(msgs)
	if id != "" {
		latest, err := c.store.Latest(ctx, tenant, id)
		if err != nil {
			return nil, err
		}
		stored := fromTranscript(latest.Transcript)
		if hasPrefix(rest, stored) {
			rest = rest[len(stored):]
		}
		if lastUserIndex(rest) == len(rest) {
			return nil, ErrNoNewMessage
		}
		whole := make([]openai.Message, 0, len(system)+len(stored)+len(rest))
		whole = append(append(append(whole, system...), stored...), rest...)
		return &Placement{ID: id, Consortium: consortium, Messages: whole}, nil
	}

	p := &Placement{ID: NewID("conv_"), Consortium: consortium, Messages: msgs}
	var err error
	if prior := rest[:lastUserIndex(rest)]; len(prior) > 0 {
		var match *Turn
		match, err = c.store.Match(ctx, tenant, consortium, Hash(consortium, toTranscript(prior)))
		switch {
		case err == nil:
			p.ID = match.Conversation
		case errors.Is(err, ErrNotFound):
			err = nil
		}
	} else {
		// Nothing to match, but a new conversation is announced only if
		// it can be saved: asking the store now keeps a stream, whose
		// headers leave before the answer, from announcing an id that a
		// later continuation would not find.
		err = c.store.Ping(ctx)
	}
	if err != nil {
		p.ID, p.Unsaved = "", err
	}
	return p, nil
}

// Save stores a placed turn, its synthesis last, and its run's record and
// summary (nil for none), so that a continuation sent right after it finds
// it from any replica. It is bounded by its own timeout and goes on when
// ctx is cancelled: the client may be gone, the turn is saved all the
// same. A placement without an id returns its Unsaved error.
func (c *Conversations) Save(ctx context.Context, tenant string, p *Placement, synthesis, runID string, run *RunRecord) error {
	if p.ID == "" {
		return p.Unsaved
	}
	_, rest := splitSystem(p.Messages)
	transcript := append(toTranscript(rest), Message{Role: "assistant", Content: synthesis})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	return c.store.Save(ctx, tenant, &Turn{
		Conversation: p.ID,
		Consortium:   p.Consortium,
		Transcript:   transcript,
		RunID:        runID,
		Time:         time.Now().UTC(),
	}, run)
}

// Run returns a run record of tenant, or ErrNotFound.
func (c *Conversations) Run(ctx context.Context, tenant, id string) ([]byte, error) {
	return c.store.Run(ctx, tenant, id)
}

// Ping says whether the store answers.
func (c *Conversations) Ping(ctx context.Context) error { return c.store.Ping(ctx) }

// splitSystem separates system and developer messages from the others.
func splitSystem(msgs []openai.Message) (system, rest []openai.Message) {
	for _, m := range msgs {
		if m.Role == "system" || m.Role == "developer" {
			system = append(system, m)
		} else {
			rest = append(rest, m)
		}
	}
	return system, rest
}

// lastUserIndex returns the index of the last user message, or len(msgs).
func lastUserIndex(msgs []openai.Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return i
		}
	}
	return len(msgs)
}

func toTranscript(msgs []openai.Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = Message{Role: m.Role, Content: m.Content.String()}
	}
	return out
}

func fromTranscript(t []Message) []openai.Message {
	out := make([]openai.Message, len(t))
	for i, m := range t {
		out[i] = openai.Message{Role: m.Role, Content: openai.TextContent(m.Content)}
	}
	return out
}

// hasPrefix reports whether msgs begin with prefix, by role and text.
func hasPrefix(msgs, prefix []openai.Message) bool {
	if len(prefix) == 0 || len(msgs) < len(prefix) {
		return false
	}
	for i, p := range prefix {
		if msgs[i].Role != p.Role || msgs[i].Content.String() != p.Content.String() {
			return false
		}
	}
	return true
}
