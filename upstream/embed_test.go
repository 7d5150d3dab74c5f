package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/consortium-dev/consortium/upstream"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func TestEmbed(t *testing.T) {
	fake := upstreamtest.NewServer()
	defer fake.Close()
	p, err := upstream.New(upstream.Config{Name: "fake", BaseURL: fake.URL, MaxRetries: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vecs, usage, err := p.Embed(context.Background(), "e", []string{"one", "two words", "one"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 3 || len(vecs[0]) == 0 || len(vecs[0]) != len(vecs[1]) {
		t.Fatalf("vectors %v", vecs)
	}
	for k := range vecs[0] {
		if vecs[0][k] != vecs[2][k] {
			t.Fatalf("equal inputs, different vectors: %v, %v", vecs[0], vecs[2])
		}
	}
	if usage == nil || usage.PromptTokens != 4 {
		t.Errorf("usage %+v", usage)
	}
	if r := fake.Requests(); len(r) != 1 || r[0].Path != "/v1/embeddings" {
		t.Errorf("requests %+v", r)
	}

	// Retried as any call: a 503 first, then the answer.
	fake.Script("e", upstreamtest.Reply{Status: http.StatusServiceUnavailable}, upstreamtest.Reply{})
	if _, _, err := p.Embed(context.Background(), "e", []string{"x"}); err != nil {
		t.Errorf("after a 503: %v", err)
	}

	fake.Script("e", upstreamtest.Reply{Body: `{"data":[{"index":0,"embedding":"!!"}]}`})
	if _, _, err := p.Embed(context.Background(), "e", []string{"x"}); !errors.Is(err, upstream.ErrMalformed) {
		t.Errorf("bad base64: %v", err)
	}
}

func TestEmbedAnthropic(t *testing.T) {
	p, err := upstream.New(upstream.Config{Name: "claude", Type: "anthropic", BaseURL: "http://127.0.0.1:9", APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = p.Embed(context.Background(), "m", []string{"x"})
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Status != http.StatusNotFound {
		t.Errorf("err %v; want a 404 *Error before any call", err)
	}
}
