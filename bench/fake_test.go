package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"text/template"

	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// ask posts a JSON chat completion of prompt to url and returns the answer.
func ask(t *testing.T, url, prompt string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": prompt}}})
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var cc openai.ChatCompletion
	if err := json.Unmarshal(data, &cc); err != nil || len(cc.Choices) != 1 || cc.Choices[0].Message.Content == nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	return *cc.Choices[0].Message.Content
}

// judgePrompt is the default judge prompt showing labels in order.
func judgePrompt(t *testing.T, labels ...string) string {
	t.Helper()
	d := consortia.JudgeData{Request: "Say something.", RankingExample: "B > A"}
	for _, l := range labels {
		d.Responses = append(d.Responses, consortia.Response{Label: l, Text: FakeContent(0)})
	}
	var b strings.Builder
	if err := template.Must(template.New("judge").Parse(consortia.DefaultJudgePrompt)).Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestFakeRanksTheLabelsOfAJudgePrompt(t *testing.T) {
	srv := httptest.NewServer(&Fake{Rank: true})
	defer srv.Close()
	for _, c := range []struct {
		shown []string
		want  string
	}{
		{[]string{"A", "B", "C"}, "A > B > C"},
		{[]string{"C", "A", "B"}, "C > A > B"},
		{[]string{"A", "B"}, "A > B"},
		{[]string{"Z", "AA", "AB"}, "Z > AA > AB"},
		{[]string{"A", "B", "A"}, "A > B"}, // each label once
	} {
		got := ask(t, srv.URL, judgePrompt(t, c.shown...))
		if !strings.HasPrefix(got, "<critique>") || !strings.HasSuffix(got, "<ranking>"+c.want+"</ranking>") {
			t.Errorf("labels %v: the fake answered %q, want a critique then <ranking>%s</ranking>", c.shown, got, c.want)
		}
	}
	// Any other request gets the usual answer.
	if got := ask(t, srv.URL, "Say something."); got != FakeContent(0) {
		t.Errorf("a member's request: %q", got)
	}
	// Without Rank a judge prompt is answered like any other.
	plain := httptest.NewServer(&Fake{})
	defer plain.Close()
	if got := ask(t, plain.URL, judgePrompt(t, "A", "B")); got != FakeContent(0) {
		t.Errorf("without Rank: %q", got)
	}
}

// TestFakeBurstSendsTheSameStream: a Burst fake's stream is the
// frame-by-frame fake's, byte for byte.
func TestFakeBurstSendsTheSameStream(t *testing.T) {
	stream := func(f *Fake) string {
		srv := httptest.NewServer(f)
		defer srv.Close()
		resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	frames, burst := stream(&Fake{Chunks: 5}), stream(&Fake{Chunks: 5, Burst: true})
	if burst != frames {
		t.Errorf("burst:\n%s\nframe by frame:\n%s", burst, frames)
	}
	if !strings.HasSuffix(burst, "data: [DONE]\n\n") || strings.Count(burst, "data: ") != 5+4 {
		t.Errorf("the stream is not 5 deltas, role, finish, usage and [DONE]:\n%s", burst)
	}
}
