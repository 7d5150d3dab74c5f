package cache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/openai"
)

func TestResponses(t *testing.T) {
	backends(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		c := NewConversations(s)
		r := &Response{ID: "resp_1", Model: "council", History: []openai.Message{
			{Role: "user", Content: openai.TextContent("q1")},
			{Role: "assistant", Content: openai.TextContent("a1")},
		}, Object: []byte(`{"id":"resp_1"}`)}
		if err := c.SaveResponse(ctx, "alice", r); err != nil {
			t.Fatal(err)
		}
		got, err := c.Response(ctx, "alice", "resp_1")
		if err != nil || got.Model != "council" || len(got.History) != 2 || got.History[1].Content.String() != "a1" || string(got.Object) != `{"id":"resp_1"}` {
			t.Fatalf("response: %+v, %v", got, err)
		}
		// Another tenant neither reads nor deletes it.
		if _, err := c.Response(ctx, "bob", "resp_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob read alice's response: %v", err)
		}
		if err := c.DeleteResponse(ctx, "bob", "resp_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("bob deleted alice's response: %v", err)
		}
		if err := c.DeleteResponse(ctx, "alice", "resp_1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Response(ctx, "alice", "resp_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a deleted response was found: %v", err)
		}
		if err := c.DeleteResponse(ctx, "alice", "resp_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
	})
}

func TestResponseTTL(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		m := NewMemory(time.Minute, 10)
		now := time.Now()
		m.now = func() time.Time { return now }
		ctx := context.Background()
		if err := m.SaveResponse(ctx, "a", "resp_x", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		now = now.Add(2 * time.Minute)
		if _, err := m.Response(ctx, "a", "resp_x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("an expired response was found: %v", err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		backends(t, func(t *testing.T, s Store) {
			r, ok := s.(*Redis)
			if !ok {
				return
			}
			ctx := context.Background()
			if err := r.SaveResponse(ctx, "a", "resp_x", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			ttl, err := r.client.TTL(ctx, responseKey("a", "resp_x")).Result()
			if err != nil || ttl <= 0 || ttl > time.Hour {
				t.Errorf("ttl %v, %v", ttl, err)
			}
		})
	})
}

func TestItemID(t *testing.T) {
	id := NewID("resp_")
	item := ItemID(id)
	if item != "msg_"+id[len("resp_"):] {
		t.Fatalf("ItemID(%q) = %q", id, item)
	}
	if back, ok := ItemResponse(item); !ok || back != id {
		t.Errorf("ItemResponse(%q) = %q, %v", item, back, ok)
	}
	for _, bad := range []string{"", "msg_", "resp_1", "rs_1", "fc_1"} {
		if back, ok := ItemResponse(bad); ok {
			t.Errorf("ItemResponse(%q) = %q, true", bad, back)
		}
	}
}
