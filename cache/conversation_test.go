package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/internal/redistest"
	"github.com/consortium-dev/consortium/openai"
)

// msgs builds messages from "role: text" lines.
func msgs(lines ...string) []openai.Message {
	out := make([]openai.Message, len(lines))
	for i, l := range lines {
		role, text, _ := strings.Cut(l, ": ")
		out[i] = openai.Message{Role: role, Content: openai.TextContent(text)}
	}
	return out
}

// lines writes messages back as "role: text" lines.
func lines(ms []openai.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Role + ": " + m.Content.String()
	}
	return out
}

// seed stores alice's conversation conv_1 of consortium council: q1, S1,
// then q2, S2 (its latest turn).
func seed(t *testing.T, c *Conversations) {
	t.Helper()
	ctx := context.Background()
	first := &Placement{ID: "conv_1", Consortium: "council", Messages: msgs("system: be kind", "user: q1")}
	if err := c.Save(ctx, "alice", first, "S1", "run_1", &RunRecord{JSON: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	second := &Placement{ID: "conv_1", Consortium: "council", Messages: msgs("user: q1", "assistant: S1", "user: q2")}
	if err := c.Save(ctx, "alice", second, "S2", "run_2", nil); err != nil {
		t.Fatal(err)
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name       string
		tenant     string
		consortium string // "" is council
		id         string // the X-Consortium-Conversation header
		messages   []string
		wantID     string // "new": a new conv_ id
		want       []string
		wantErr    error
	}{
		{name: "first turn", messages: []string{"system: hi", "user: q"}, wantID: "new", want: []string{"system: hi", "user: q"}},
		{name: "transcript of the latest turn", messages: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"},
			wantID: "conv_1", want: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"}},
		{name: "transcript of an earlier turn forks", messages: []string{"user: q1", "assistant: S1", "user: q2 again"},
			wantID: "conv_1", want: []string{"user: q1", "assistant: S1", "user: q2 again"}},
		{name: "system messages do not count in a match", messages: []string{"system: other", "user: q1", "assistant: S1", "user: more"},
			wantID: "conv_1", want: []string{"system: other", "user: q1", "assistant: S1", "user: more"}},
		{name: "a transcript not stored begins a conversation", messages: []string{"user: q1", "assistant: not S1", "user: q2"},
			wantID: "new", want: []string{"user: q1", "assistant: not S1", "user: q2"}},
		{name: "a transcript ending in an assistant turn is matched before it", messages: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2"},
			wantID: "conv_1", want: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2"}},
		{name: "another consortium's transcript", consortium: "other", messages: []string{"user: q1", "assistant: S1", "user: q2"},
			wantID: "new", want: []string{"user: q1", "assistant: S1", "user: q2"}},
		{name: "another tenant's transcript", tenant: "bob", messages: []string{"user: q1", "assistant: S1", "user: q2"},
			wantID: "new", want: []string{"user: q1", "assistant: S1", "user: q2"}},

		{name: "header: system first, then the stored transcript", id: "conv_1", messages: []string{"system: be brief", "user: q3"},
			wantID: "conv_1", want: []string{"system: be brief", "user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"}},
		{name: "header: a resent transcript is not repeated", id: "conv_1", messages: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"},
			wantID: "conv_1", want: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"}},
		{name: "header: nothing new", id: "conv_1", messages: []string{"user: q1", "assistant: S1", "user: q2", "assistant: S2"}, wantErr: ErrNoNewMessage},
		{name: "header: unknown id", id: "conv_nothing", messages: []string{"user: q"}, wantErr: ErrNotFound},
		{name: "header: another tenant's id", tenant: "bob", id: "conv_1", messages: []string{"user: q"}, wantErr: ErrNotFound},
	}
	backends(t, func(t *testing.T, s Store) {
		c := NewConversations(s)
		seed(t, c)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tenant, consortium := tt.tenant, tt.consortium
				if tenant == "" {
					tenant = "alice"
				}
				if consortium == "" {
					consortium = "council"
				}
				p, err := c.Place(context.Background(), tenant, consortium, tt.id, msgs(tt.messages...))
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.wantID == "new" && (p.ID == "conv_1" || !strings.HasPrefix(p.ID, "conv_")):
					t.Errorf("id %q, want a new conversation", p.ID)
				case tt.wantID != "new" && p.ID != tt.wantID:
					t.Errorf("id %q, want %q", p.ID, tt.wantID)
				}
				if p.Unsaved != nil || p.Consortium != consortium {
					t.Errorf("placement %+v", p)
				}
				if got := lines(p.Messages); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("messages\n got %q\nwant %q", got, tt.want)
				}
			})
		}
	})
}

// TestFork saves a turn forked from an earlier one: the conversation's
// latest turn is the fork, and the other branch can still be continued.
func TestFork(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		c := NewConversations(s)
		seed(t, c)
		ctx := context.Background()
		fork, err := c.Place(ctx, "alice", "council", "", msgs("user: q1", "assistant: S1", "user: q2-fork"))
		if err != nil || fork.ID != "conv_1" {
			t.Fatalf("fork: %+v, %v", fork, err)
		}
		if err := c.Save(ctx, "alice", fork, "S2-fork", "run_3", nil); err != nil {
			t.Fatal(err)
		}
		next, err := c.Place(ctx, "alice", "council", "conv_1", msgs("user: q3"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(lines(next.Messages), "|"); got != "user: q1|assistant: S1|user: q2-fork|assistant: S2-fork|user: q3" {
			t.Errorf("the header did not follow the fork: %s", got)
		}
		main, err := c.Place(ctx, "alice", "council", "", msgs("user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3"))
		if err != nil || main.ID != "conv_1" {
			t.Errorf("the other branch was lost: %+v, %v", main, err)
		}
		// What was saved is the user's turns and syntheses: no system
		// message, the synthesis last.
		turn, err := s.Latest(ctx, "alice", "conv_1")
		if err != nil || turn.RunID != "run_3" || len(turn.Transcript) != 4 || turn.Transcript[3] != (Message{Role: "assistant", Content: "S2-fork"}) {
			t.Errorf("saved turn %+v, %v", turn, err)
		}
	})
}

// TestPlaceWithRedisDown checks that a turn that needs stored state fails
// as unavailable, and that one carrying its whole history is placed
// without an id, saying why, so nothing unsaved is announced.
func TestPlaceWithRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	c := NewConversations(NewRedis(srv.Client(200*time.Millisecond), RedisConfig{Timeout: 200 * time.Millisecond}))
	ctx := context.Background()
	srv.Stop()
	if _, err := c.Place(ctx, "alice", "council", "conv_1", msgs("user: q")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("header continuation: %v", err)
	}
	for _, history := range [][]string{{"user: q"}, {"user: q1", "assistant: S1", "user: q2"}} {
		p, err := c.Place(ctx, "alice", "council", "", msgs(history...))
		if err != nil || p.ID != "" || !errors.Is(p.Unsaved, ErrUnavailable) || len(p.Messages) != len(history) {
			t.Fatalf("%q: placement %+v, %v", history, p, err)
		}
		if err := c.Save(ctx, "alice", p, "S", "run_x", nil); !errors.Is(err, ErrUnavailable) {
			t.Errorf("saving an unsaved placement: %v", err)
		}
	}
}

// TestSaveOutlivesTheRequest checks that a turn whose client went away is
// saved all the same.
func TestSaveOutlivesTheRequest(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		c := NewConversations(s)
		ctx, cancel := context.WithCancel(context.Background())
		p, err := c.Place(ctx, "alice", "council", "", msgs("user: q"))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := c.Save(ctx, "alice", p, "S", "run_1", &RunRecord{JSON: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Run(context.Background(), "alice", "run_1"); err != nil {
			t.Fatalf("run: %v", err)
		}
	})
}

func TestNewID(t *testing.T) {
	a, b := NewID("run_"), NewID("run_")
	if a == b || len(a) != len("run_")+24 || !strings.HasPrefix(a, "run_") {
		t.Fatalf("ids %q and %q", a, b)
	}
}
