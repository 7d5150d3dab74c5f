package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/consortium-dev/consortium/internal/app"
	"github.com/consortium-dev/consortium/internal/redistest"
	wire "github.com/consortium-dev/consortium/openai"
	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// responseObject is the Responses API's response object as a client
// reads it.
type responseObject struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	CreatedAt int64  `json:"created_at"`
	Status    string `json:"status"`
	Model     string `json:"model"`
	Output    []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Status  string `json:"status"`
		Role    string `json:"role"`
		Content []struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			Annotations []any  `json:"annotations"`
		} `json:"content"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
	Metadata           map[string]string `json:"metadata"`
	PreviousResponseID *string           `json:"previous_response_id"`
	Instructions       *string           `json:"instructions"`
	Store              bool              `json:"store"`
	Error              *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Consortium *struct {
		summary
		ConversationID string `json:"conversation_id"`
	} `json:"consortium"`
}

// text is the response's output text, as the SDKs' output_text joins it.
func (r *responseObject) text() string {
	var b strings.Builder
	for _, it := range r.Output {
		for _, c := range it.Content {
			if c.Type == "output_text" {
				b.WriteString(c.Text)
			}
		}
	}
	return b.String()
}

// checkShape fails unless r is a finished response of model with one
// assistant message item.
func (r *responseObject) checkShape(t *testing.T, model string) {
	t.Helper()
	if !strings.HasPrefix(r.ID, "resp_") || r.Object != "response" || r.CreatedAt == 0 || r.Model != model || len(r.Output) != 1 {
		t.Fatalf("response %+v", r)
	}
	it := r.Output[0]
	if it.Type != "message" || !strings.HasPrefix(it.ID, "msg_") || it.Role != "assistant" || it.Status != r.Status ||
		len(it.Content) != 1 || it.Content[0].Type != "output_text" || it.Content[0].Annotations == nil {
		t.Fatalf("output item %+v", it)
	}
}

// createResponse posts a Responses request as key and decodes the
// response object of a 200.
func (e *env) createResponse(t *testing.T, key, body string) (*http.Response, *responseObject, []byte) {
	t.Helper()
	resp, raw := e.do(http.MethodPost, "/v1/responses", key, body)
	var r responseObject
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("response %s: %v", raw, err)
		}
	}
	return resp, &r, raw
}

// mustRespond is createResponse for a request that must succeed.
func (e *env) mustRespond(t *testing.T, key, body string) *responseObject {
	t.Helper()
	resp, r, raw := e.createResponse(t, key, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	return r
}

// responseEvent is one event of a Responses stream.
type responseEvent struct {
	Name     string          // the event: line
	Type     string          `json:"type"`
	Seq      *int            `json:"sequence_number"`
	Delta    string          `json:"delta"`
	Text     string          `json:"text"`
	Response *responseObject `json:"response"`
	Raw      string
}

// readResponseEvents parses a Responses stream: every event named, with
// its type as its name.
func readResponseEvents(t *testing.T, body []byte) []responseEvent {
	t.Helper()
	var events []responseEvent
	for _, block := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n\n") {
		var name, data string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data += strings.TrimPrefix(line, "data: ")
			}
		}
		if data == "" && name == "" {
			continue // a keep-alive comment, or the end
		}
		ev := responseEvent{Name: name, Raw: data}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v\n%s", block, err, body)
		}
		if ev.Name != ev.Type || ev.Seq == nil {
			t.Fatalf("event named %q of type %q, sequence %v", ev.Name, ev.Type, ev.Seq)
		}
		events = append(events, ev)
	}
	if strings.Contains(string(body), "[DONE]") {
		t.Errorf("a Responses stream has no [DONE]:\n%s", body)
	}
	return events
}

func eventTypes(events []responseEvent) []string {
	var out []string
	for _, ev := range events {
		out = append(out, ev.Type)
	}
	return out
}

// completedStream is the event sequence of a streamed answer of n deltas.
func completedStream(n int) []string {
	out := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for range n {
		out = append(out, "response.output_text.delta")
	}
	return append(out, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
}

// checkResponseStream checks a finished stream: its event order for the deltas
// given, sequence numbers from 0 up, and deltas that concatenate to the
// text of the done events and of the completed response, which it
// returns.
func checkResponseStream(t *testing.T, events []responseEvent, deltas int, want string) *responseObject {
	t.Helper()
	if got := eventTypes(events); !slices.Equal(got, completedStream(deltas)) {
		t.Fatalf("events\n got %q\nwant %q", got, completedStream(deltas))
	}
	var text strings.Builder
	for i, ev := range events {
		if *ev.Seq != i {
			t.Errorf("event %d (%s) has sequence_number %d", i, ev.Type, *ev.Seq)
		}
		if ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
	}
	done := events[len(events)-4]
	final := events[len(events)-1].Response
	if text.String() != want || done.Text != want || final == nil || final.text() != want || final.Status != "completed" {
		t.Fatalf("deltas %q, done %q, want %q; completed %s", text.String(), done.Text, want, events[len(events)-1].Raw)
	}
	if created := events[0].Response; created == nil || created.Status != "in_progress" || created.ID != final.ID {
		t.Errorf("response.created %s", events[0].Raw)
	}
	return final
}

func TestResponsesPassthrough(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "Hello there, friend.", Usage: &wire.Usage{PromptTokens: 7, CompletionTokens: 4, TotalTokens: 11}})
	r := e.mustRespond(t, "", `{"model":"fake/m1","input":"hi","instructions":"be brief","max_output_tokens":50,"temperature":0.5,"top_p":0.9,"metadata":{"k":"v"}}`)
	r.checkShape(t, "fake/m1")
	if r.text() != "Hello there, friend." || r.Status != "completed" || r.Usage == nil || *r.Usage != (struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}{7, 4, 11}) || r.Metadata["k"] != "v" || r.Instructions == nil || *r.Instructions != "be brief" || !r.Store || r.Consortium != nil {
		t.Fatalf("response %+v", r)
	}
	got := e.fake.RequestsFor("m1")[0].Chat
	if got == nil || len(got.Messages) != 2 || got.Messages[0].Role != "system" || got.Messages[0].Content.String() != "be brief" ||
		got.Messages[1].Role != "user" || got.Messages[1].Content.String() != "hi" || got.Stream ||
		*got.MaxTokens != 50 || *got.Temperature != 0.5 || *got.TopP != 0.9 {
		t.Fatalf("the provider got %+v", got)
	}

	// Streamed, through a provider that streams word by word.
	resp, raw := e.post("/v1/responses", `{"model":"fake/m1","input":"hi","stream":true}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	final := checkResponseStream(t, readResponseEvents(t, raw), 3, "Hello there, friend.")
	if final.Usage == nil || final.Usage.TotalTokens != 11 {
		t.Errorf("streamed usage %+v", final.Usage)
	}
	if reqs := e.fake.RequestsFor("m1"); !reqs[1].Stream || !strings.Contains(string(reqs[1].Body), `"include_usage":true`) {
		t.Errorf("the provider's stream request %s", reqs[1].Body)
	}
}

func TestResponsesConsortium(t *testing.T) {
	e := startCouncil(t, councilYAML)
	usage := scriptCouncil(e.fake, "forty-two, all agree")
	resp, r, raw := e.createResponse(t, "", `{"model":"council","input":[{"role":"user","content":[{"type":"input_text","text":"what is the answer?"},`+
		`{"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	r.checkShape(t, "council")
	if r.text() != "forty-two, all agree" || r.Usage.TotalTokens != usage.TotalTokens || r.Usage.InputTokens != usage.PromptTokens ||
		r.Consortium == nil || r.Consortium.RunID == "" || resp.Header.Get("X-Consortium-Run-Id") != r.Consortium.RunID ||
		!strings.HasPrefix(resp.Header.Get("X-Consortium-Conversation"), "conv_") {
		t.Fatalf("response %s, headers %v", raw, resp.Header)
	}
	// The fields SDKs read without checking are there, empty rather than
	// missing.
	for _, field := range []string{`"object":"response"`, `"status":"completed"`, `"error":null`, `"incomplete_details":null`,
		`"annotations":[]`, `"tools":[]`, `"metadata":{}`, `"previous_response_id":null`, `"text":{"format":{"type":"text"}}`} {
		if !strings.Contains(string(raw), field) {
			t.Errorf("no %s in %s", field, raw)
		}
	}
	// The members got the image as an image_url part.
	m := e.fake.RequestsFor("alpha")[0].Chat.Messages
	if last := m[len(m)-1]; len(last.Content.Parts) != 2 || last.Content.Parts[1].ImageURL == nil || last.Content.Parts[1].ImageURL.URL != "data:image/png;base64,AAAA" {
		t.Errorf("a member got %+v", last)
	}

	// Streamed: the synthesis as the arbiter writes it.
	resp, raw = e.post("/v1/responses", `{"model":"council","input":"what is the answer?","stream":true}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Consortium-Run-Id") == "" {
		t.Fatalf("stream: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
	final := checkResponseStream(t, readResponseEvents(t, raw), 3, "forty-two, all agree")
	if final.Consortium == nil || final.Consortium.RunID != resp.Header.Get("X-Consortium-Run-Id") || final.Usage == nil || final.Usage.TotalTokens != usage.TotalTokens {
		t.Errorf("completed response %+v", final)
	}
}

// TestResponsesOpenAIGoClient drives the proxy with openai-go's Responses
// client, plain and streamed.
func TestResponsesOpenAIGoClient(t *testing.T) {
	e := startCouncil(t, councilYAML)
	scriptCouncil(e.fake, "the SDK's synthesis")
	ctx := within(t, 10*time.Second)
	client := sdkClient(e, "any")
	first, err := client.Responses.New(ctx, responses.ResponseNewParams{
		Model: "council", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
	})
	if err != nil || first.OutputText() != "the SDK's synthesis" || first.Usage.TotalTokens == 0 {
		t.Fatalf("response %+v, %v", first, err)
	}
	stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{
		Model: "council", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("and again")},
		PreviousResponseID: openai.String(first.ID),
	})
	var text string
	var completed responses.Response
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.output_text.delta":
			text += ev.Delta
		case "response.completed":
			completed = ev.Response
		}
	}
	if err := stream.Err(); err != nil || text != "the SDK's synthesis" || completed.OutputText() != text || completed.PreviousResponseID != first.ID {
		t.Fatalf("stream %q, completed %+v, %v", text, completed, err)
	}
	sameLines(t, lastMemberMessages(t, e), "user: hi", "assistant: the SDK's synthesis", "user: and again")
}

func TestResponsesPreviousConsortium(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	first := e.mustRespond(t, "alice-key", `{"model":"council","input":"q1","instructions":"be kind"}`)
	sameLines(t, lastMemberMessages(t, e), "system: be kind", "user: q1")

	scriptSynthesis(e, "S2")
	second := e.mustRespond(t, "alice-key", `{"model":"council","input":"q2","previous_response_id":"`+first.ID+`"}`)
	// Instructions do not carry over; the history does.
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2")
	if second.PreviousResponseID == nil || *second.PreviousResponseID != first.ID || second.Instructions != nil {
		t.Errorf("second response %+v", second)
	}

	scriptSynthesis(e, "S3")
	third := e.mustRespond(t, "alice-key", `{"model":"council","stream":false,"input":[{"role":"user","content":"q3"}],"instructions":"be brief","previous_response_id":"`+second.ID+`"}`)
	sameLines(t, lastMemberMessages(t, e), "system: be brief", "user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3")
	judge := e.fake.RequestsFor("judge")
	if prompt := judge[len(judge)-1].LastUserText(); !strings.Contains(prompt, "S2") || !strings.Contains(prompt, "q1") {
		t.Errorf("the arbiter did not see the conversation:\n%s", prompt)
	}
	// The three turns are one conversation, the consortium's own.
	conv := first.Consortium.ConversationID
	if !strings.HasPrefix(conv, "conv_") || second.Consortium.ConversationID != conv || third.Consortium.ConversationID != conv {
		t.Errorf("conversations %q %q %q", conv, second.Consortium.ConversationID, third.Consortium.ConversationID)
	}

	// A new turn after the first one again is a fork: same conversation,
	// the first turn's history only, streamed this time.
	scriptSynthesis(e, "S2 bis")
	resp, raw := e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"council","stream":true,"input":"q2 bis","previous_response_id":"`+first.ID+`"}`)
	fork := checkResponseStream(t, readResponseEvents(t, raw), 2, "S2 bis")
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2 bis")
	if fork.Consortium.ConversationID != conv || resp.Header.Get("X-Consortium-Conversation") != conv {
		t.Errorf("fork in %q (header %q), want %q", fork.Consortium.ConversationID, resp.Header.Get("X-Consortium-Conversation"), conv)
	}
	// ... and the fork continues along its own branch.
	scriptSynthesis(e, "S3 bis")
	e.mustRespond(t, "alice-key", `{"model":"council","input":"q3 bis","previous_response_id":"`+fork.ID+`"}`)
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2 bis", "assistant: S2 bis", "user: q3 bis")
}

func TestResponsesPreviousPassthrough(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "A1"}, upstreamtest.Reply{Content: "A2"}, upstreamtest.Reply{Content: "A3"})
	first := e.mustRespond(t, "", `{"model":"fake/m1","input":"q1","instructions":"be kind"}`)
	second := e.mustRespond(t, "", `{"model":"fake/m1","input":"q2","previous_response_id":"`+first.ID+`"}`)
	// Input items that repeat an earlier output item are messages too.
	third := e.mustRespond(t, "", `{"model":"fake/m1","previous_response_id":"`+second.ID+`","input":[`+
		`{"type":"message","role":"assistant","id":"msg_x","status":"completed","content":[{"type":"output_text","text":"noted","annotations":[]}]},`+
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"q3"}]}]}`)
	if third.text() != "A3" {
		t.Fatalf("third %+v", third)
	}
	var got []string
	for _, m := range e.fake.RequestsFor("m1")[2].Chat.Messages {
		got = append(got, m.Role+": "+m.Content.String())
	}
	sameLines(t, got, "user: q1", "assistant: A1", "user: q2", "assistant: A2", "assistant: noted", "user: q3")
}

// TestResponsesItemReference is how the AI SDK's OpenAI provider
// continues with store: true: the whole conversation again, its earlier
// answers as item references to their output message items.
func TestResponsesItemReference(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	first := e.mustRespond(t, "alice-key", `{"model":"council","input":[{"role":"user","content":[{"type":"input_text","text":"q1"}]}]}`)
	first.checkShape(t, "council")
	item := first.Output[0].ID
	if item[len("msg_"):] != first.ID[len("resp_"):] {
		t.Errorf("output item %q of response %q", item, first.ID)
	}

	scriptSynthesis(e, "S2")
	second := e.mustRespond(t, "alice-key", `{"model":"council","input":[`+
		`{"role":"user","content":[{"type":"input_text","text":"q1"}]},`+
		`{"type":"item_reference","id":"`+item+`"},`+
		`{"role":"user","content":[{"type":"input_text","text":"q2"}]}]}`)
	if second.text() != "S2" {
		t.Fatalf("second %+v", second)
	}
	// The members see the first answer as the assistant's turn.
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2")

	// The third turn refers to both answers, streamed, the reference
	// without its optional type; the second's history stored the answer
	// itself, so GET and previous_response_id see no reference.
	scriptSynthesis(e, "S3")
	_, raw := e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"council","stream":true,"input":[`+
		`{"role":"user","content":"q1"},{"id":"`+item+`"},{"role":"user","content":"q2"},`+
		`{"type":"item_reference","id":"`+second.Output[0].ID+`"},{"role":"user","content":"q3"}]}`)
	checkResponseStream(t, readResponseEvents(t, raw), 1, "S3")
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3")
	scriptSynthesis(e, "S3 bis")
	e.mustRespond(t, "alice-key", `{"model":"council","input":"q3 bis","previous_response_id":"`+second.ID+`"}`)
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3 bis")

	// Passthrough turns are referred to the same way.
	e.fake.Script("m1", upstreamtest.Reply{Content: "A1"}, upstreamtest.Reply{Content: "A2"})
	p1 := e.mustRespond(t, "alice-key", `{"model":"fake/m1","input":"p1"}`)
	e.mustRespond(t, "alice-key", `{"model":"fake/m1","input":[{"role":"user","content":"p1"},{"type":"item_reference","id":"`+p1.Output[0].ID+`"},{"role":"user","content":"p2"}]}`)
	var got []string
	for _, m := range e.fake.RequestsFor("m1")[1].Chat.Messages {
		got = append(got, m.Role+": "+m.Content.String())
	}
	sameLines(t, got, "user: p1", "assistant: A1", "user: p2")
}

// TestResponsesItemReferenceNotFound: a reference to nothing the tenant
// has stored is a 404 naming the item, never dropped, and nothing is
// asked of a model.
func TestResponsesItemReferenceNotFound(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	alices := e.mustRespond(t, "alice-key", `{"model":"council","input":"q1"}`)
	scriptSynthesis(e, "S2")
	unstored := e.mustRespond(t, "alice-key", `{"model":"council","input":"q1","store":false}`)
	scriptSynthesis(e, "S3")
	deleted := e.mustRespond(t, "alice-key", `{"model":"council","input":"q1"}`)
	if resp, raw := e.do("DELETE", "/v1/responses/"+deleted.ID, "alice-key", ""); resp.StatusCode != 200 {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, raw)
	}
	calls := len(e.fake.Requests())

	for _, tc := range []struct{ name, key, id string }{
		{"unknown", "alice-key", "msg_0123456789abcdef01234567"},
		{"not a message item", "alice-key", "rs_0123456789abcdef01234567"},
		{"a response id", "alice-key", alices.ID},
		{"another tenant's", "bob-key", alices.Output[0].ID},
		{"store false", "alice-key", unstored.Output[0].ID},
		{"deleted", "alice-key", deleted.Output[0].ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []string{"false", "true"} {
				resp, raw := e.do(http.MethodPost, "/v1/responses", tc.key, `{"model":"council","stream":`+stream+`,"input":[`+
					`{"role":"user","content":"q1"},{"type":"item_reference","id":"`+tc.id+`"},{"role":"user","content":"q2"}]}`)
				ae := decodeError(t, raw)
				if resp.StatusCode != 404 || ae.Error.Type != "invalid_request_error" || ae.Error.Code == nil || *ae.Error.Code != "run_not_found" ||
					ae.Error.Param == nil || *ae.Error.Param != "input[1]" || !strings.Contains(ae.Error.Message, tc.id) {
					t.Errorf("stream %s: %d %s", stream, resp.StatusCode, raw)
				}
			}
		})
	}
	// A reference without an id is a 400.
	resp, raw := e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"council","input":[{"role":"user","content":"q"},{"type":"item_reference"}]}`)
	if ae := decodeError(t, raw); resp.StatusCode != 400 || ae.Error.Param == nil || *ae.Error.Param != "input[1].id" {
		t.Errorf("no id: %d %s", resp.StatusCode, raw)
	}
	if n := len(e.fake.Requests()); n != calls {
		t.Errorf("%d upstream calls for refused references", n-calls)
	}
}

func TestResponsesStoreFalse(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	resp, r, raw := e.createResponse(t, "alice-key", `{"model":"council","input":"q1","store":false}`)
	if resp.StatusCode != 200 || r.Store || r.text() != "S1" {
		t.Fatalf("store false: %d %s", resp.StatusCode, raw)
	}
	if h := resp.Header.Get("X-Consortium-Conversation"); h != "" || r.Consortium.ConversationID != "" {
		t.Errorf("a conversation %q / %q was announced for a turn not stored", h, r.Consortium.ConversationID)
	}
	// Nothing was stored: not the response, not the run, not the turn.
	if resp, raw := e.do("GET", "/v1/responses/"+r.ID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("GET of a store: false response: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := e.do("GET", "/v1/consortium/runs/"+r.Consortium.RunID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("the run of a store: false response: %d %s", resp.StatusCode, raw)
	}
	resp, _, raw = e.createResponse(t, "alice-key", `{"model":"council","input":"q2","previous_response_id":"`+r.ID+`"}`)
	if ae := decodeError(t, raw); resp.StatusCode != 404 || ae.Error.Code == nil || *ae.Error.Code != "run_not_found" || *ae.Error.Param != "previous_response_id" {
		t.Errorf("continuing a store: false response: %d %s", resp.StatusCode, raw)
	}
	// Streamed, the same.
	scriptSynthesis(e, "S2")
	resp, raw = e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"council","input":"q1","store":false,"stream":true}`)
	final := checkResponseStream(t, readResponseEvents(t, raw), 1, "S2")
	if resp.Header.Get("X-Consortium-Conversation") != "" || final.Consortium.ConversationID != "" || final.Store {
		t.Errorf("streamed store false: %v %s", resp.Header, raw)
	}
	if resp, _ := e.do("GET", "/v1/consortium/runs/"+final.Consortium.RunID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("the run of a streamed store: false response: %d", resp.StatusCode)
	}
}

func TestResponsesGetDeleteAndTenants(t *testing.T) {
	e := start(t, convYAML(""))
	scriptSynthesis(e, "S1")
	one := e.mustRespond(t, "alice-key", `{"model":"council","input":"q1","metadata":{"app":"test"}}`)
	resp, raw := e.do("GET", "/v1/responses/"+one.ID, "alice-key", "")
	var got responseObject
	if resp.StatusCode != 200 || json.Unmarshal(raw, &got) != nil || got.ID != one.ID || got.text() != "S1" || got.Metadata["app"] != "test" || got.Consortium.RunID != one.Consortium.RunID {
		t.Fatalf("GET: %d %s", resp.StatusCode, raw)
	}

	// bob can neither read, continue nor delete alice's response.
	for _, try := range []struct{ method, path, body string }{
		{"GET", "/v1/responses/" + one.ID, ""},
		{"DELETE", "/v1/responses/" + one.ID, ""},
		{"POST", "/v1/responses", `{"model":"council","input":"q2","previous_response_id":"` + one.ID + `"}`},
	} {
		resp, raw := e.do(try.method, try.path, "bob-key", try.body)
		if resp.StatusCode != 404 || !strings.Contains(string(raw), `"code":"run_not_found"`) || !strings.Contains(string(raw), one.ID) {
			t.Errorf("bob %s %s: %d %s", try.method, try.path, resp.StatusCode, raw)
		}
	}

	scriptSynthesis(e, "S2")
	two := e.mustRespond(t, "alice-key", `{"model":"council","input":"q2","previous_response_id":"`+one.ID+`"}`)
	resp, raw = e.do("DELETE", "/v1/responses/"+one.ID, "alice-key", "")
	if resp.StatusCode != 200 || string(raw) != `{"id":"`+one.ID+`","object":"response","deleted":true}` {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, raw)
	}
	if resp, _ := e.do("GET", "/v1/responses/"+one.ID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("GET after DELETE: %d", resp.StatusCode)
	}
	if resp, _ := e.do("DELETE", "/v1/responses/"+one.ID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("DELETE twice: %d", resp.StatusCode)
	}
	// The later turn kept its own copy of the history.
	scriptSynthesis(e, "S3")
	e.mustRespond(t, "alice-key", `{"model":"council","input":"q3","previous_response_id":"`+two.ID+`"}`)
	sameLines(t, lastMemberMessages(t, e), "user: q1", "assistant: S1", "user: q2", "assistant: S2", "user: q3")
}

// TestResponsesRedis continues a response on another proxy that shares
// the Redis store.
func TestResponsesRedis(t *testing.T) {
	redis := redistest.Start(t)
	store := "store: {backend: redis, url: '" + redis.URL() + "'}\n"
	a := start(t, convYAML(store))
	b := start(t, convYAML(store))
	scriptSynthesis(a, "from A")
	one := a.mustRespond(t, "alice-key", `{"model":"council","input":"q1"}`)
	scriptSynthesis(b, "from B")
	two := b.mustRespond(t, "alice-key", `{"model":"council","input":"q2","previous_response_id":"`+one.ID+`"}`)
	sameLines(t, lastMemberMessages(t, b), "user: q1", "assistant: from A", "user: q2")
	if two.Consortium.ConversationID != one.Consortium.ConversationID {
		t.Errorf("conversation %q on B, %q on A", two.Consortium.ConversationID, one.Consortium.ConversationID)
	}
	if resp, raw := a.do("GET", "/v1/responses/"+two.ID, "alice-key", ""); resp.StatusCode != 200 || !bytes.Contains(raw, []byte("from B")) {
		t.Errorf("GET on A of B's response: %d %s", resp.StatusCode, raw)
	}
	// An item reference made on A resolves on B.
	scriptSynthesis(b, "from B again")
	b.mustRespond(t, "alice-key", `{"model":"council","input":[{"role":"user","content":"q1"},{"type":"item_reference","id":"`+one.Output[0].ID+`"},{"role":"user","content":"q2 bis"}]}`)
	sameLines(t, lastMemberMessages(t, b), "user: q1", "assistant: from A", "user: q2 bis")
	if resp, _ := b.do("DELETE", "/v1/responses/"+one.ID, "alice-key", ""); resp.StatusCode != 200 {
		t.Errorf("DELETE on B: %d", resp.StatusCode)
	}
	if resp, _ := a.do("GET", "/v1/responses/"+one.ID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("GET on A after DELETE on B: %d", resp.StatusCode)
	}
	if resp, _ := a.do("GET", "/v1/responses/"+one.ID, "bob-key", ""); resp.StatusCode != 404 {
		t.Errorf("bob on A: %d", resp.StatusCode)
	}

	// With Redis down, a continuation is 503 at once; a request that
	// needs nothing stored is served, and told it was not saved.
	redis.Stop()
	resp, _, raw := a.createResponse(t, "alice-key", `{"model":"council","input":"q3","previous_response_id":"`+two.ID+`"}`)
	if ae := decodeError(t, raw); resp.StatusCode != 503 || ae.Error.Code == nil || *ae.Error.Code != "store_unavailable" || !strings.Contains(ae.Error.Message, "previous_response_id") {
		t.Errorf("continuation with Redis down: %d %s", resp.StatusCode, raw)
	}
	resp, _, raw = a.createResponse(t, "alice-key", `{"model":"council","input":[{"role":"user","content":"q1"},{"type":"item_reference","id":"`+two.Output[0].ID+`"},{"role":"user","content":"q3"}]}`)
	if ae := decodeError(t, raw); resp.StatusCode != 503 || ae.Error.Code == nil || *ae.Error.Code != "store_unavailable" || !strings.Contains(ae.Error.Message, "item references") {
		t.Errorf("item reference with Redis down: %d %s", resp.StatusCode, raw)
	}
	scriptSynthesis(a, "unsaved")
	resp, r, raw := a.createResponse(t, "alice-key", `{"model":"council","input":"q4"}`)
	if resp.StatusCode != 200 || r.text() != "unsaved" || !strings.Contains(resp.Header.Get("X-Consortium-Warning"), "not saved") {
		t.Errorf("a new response with Redis down: %d %v %s", resp.StatusCode, resp.Header, raw)
	}
}

func TestResponsesStructuredOutput(t *testing.T) {
	e := start(t, convYAML(""))
	e.fake.Script("alpha", upstreamtest.Reply{Content: `{"answer": 42}`})
	scriptSynthesis(e, `{"answer": 42}`)
	r := e.mustRespond(t, "alice-key", `{"model":"council","input":"answer?","text":{"format":{"type":"json_schema","name":"answer","strict":true,`+
		`"schema":{"type":"object","properties":{"answer":{"type":"integer"}},"required":["answer"],"additionalProperties":false}}}}`)
	if r.text() != `{"answer": 42}` {
		t.Fatalf("structured output %q", r.text())
	}
	rf := e.fake.RequestsFor("alpha")[0].Chat.ResponseFormat
	var schema struct {
		Name   string          `json:"name"`
		Strict bool            `json:"strict"`
		Schema json.RawMessage `json:"schema"`
	}
	if rf == nil || rf.Type != "json_schema" || json.Unmarshal(rf.JSONSchema, &schema) != nil || schema.Name != "answer" || !schema.Strict ||
		!strings.Contains(string(schema.Schema), `"required":["answer"]`) {
		t.Fatalf("a member got response_format %+v", rf)
	}

	// A synthesis that is not JSON when JSON was asked for is a 502.
	scriptSynthesis(e, "not json")
	resp, _, raw := e.createResponse(t, "alice-key", `{"model":"council","input":"answer?","text":{"format":{"type":"json_object"}}}`)
	if resp.StatusCode != 502 || !strings.Contains(string(raw), "JSON") {
		t.Errorf("not JSON: %d %s", resp.StatusCode, raw)
	}
	if rf := e.fake.RequestsFor("alpha")[1].Chat.ResponseFormat; rf == nil || rf.Type != "json_object" {
		t.Errorf("json_object became %+v", rf)
	}
}

func TestResponsesRefused(t *testing.T) {
	e := start(t, convYAML(""))
	for _, tc := range []struct {
		name, body string
		status     int
		param      string
		mentions   string
	}{
		{"tools", `{"model":"council","input":"hi","tools":[{"type":"function","name":"f","parameters":{}}]}`, 400, "tools", "not supported"},
		{"built-in tools", `{"model":"fake/alpha","input":"hi","tools":[{"type":"web_search_preview"}]}`, 400, "tools", "web search"},
		{"tool_choice", `{"model":"council","input":"hi","tool_choice":"required"}`, 400, "tool_choice", "not supported"},
		{"background", `{"model":"council","input":"hi","background":true}`, 400, "background", "not supported"},
		{"n", `{"model":"council","input":"hi","n":2}`, 400, "n", "not supported"},
		{"conversation", `{"model":"council","input":"hi","conversation":"conv_1"}`, 400, "conversation", "previous_response_id"},
		{"function call item", `{"model":"council","input":[{"type":"function_call_output","call_id":"c","output":"x"}]}`, 400, "input[0].type", "not supported"},
		{"file part", `{"model":"council","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}`, 400, "input[0].content[0].type", "input_file"},
		{"image by file id", `{"model":"council","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}`, 400, "input[0].content[0].image_url", "file_id"},
		{"wrong type", `{"model":"council","input":5}`, 400, "input", "input"},
		{"no input", `{"model":"council"}`, 400, "input", "input"},
		{"empty input", `{"model":"council","input":[]}`, 400, "input", "input"},
		{"no model", `{"input":"hi"}`, 400, "model", "model"},
		{"bad format", `{"model":"council","input":"hi","text":{"format":{"type":"json_schema","schema":{}}}}`, 400, "text.format.name", "name"},
		{"given twice", `{"model":"council","input":"hi","input":"ho"}`, 400, "input", "more than once"},
		{"not JSON", `{"model":`, 400, "", "JSON"},
		{"unknown model", `{"model":"nothing","input":"hi"}`, 404, "model", "nothing"},
		{"unknown previous", `{"model":"council","input":"hi","previous_response_id":"resp_nothing"}`, 404, "previous_response_id", "resp_nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, raw := e.createResponse(t, "alice-key", tc.body)
			ae := decodeError(t, raw)
			if resp.StatusCode != tc.status || !strings.Contains(ae.Error.Message, tc.mentions) {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			if param := ae.Error.Param; (tc.param == "") != (param == nil) || param != nil && *param != tc.param {
				t.Errorf("param %v, want %q", param, tc.param)
			}
		})
	}
	if n := len(e.fake.Requests()); n != 0 {
		t.Errorf("%d upstream calls for refused requests", n)
	}
}

func TestResponsesFailures(t *testing.T) {
	e := start(t, convYAML(""))
	// A failure before the start is the HTTP error.
	e.fake.Script("alpha", upstreamtest.Reply{Status: 503, Error: "overloaded"})
	resp, _, raw := e.createResponse(t, "alice-key", `{"model":"council","input":"hi"}`)
	if ae := decodeError(t, raw); resp.StatusCode != 502 || ae.Error.Type != "upstream_error" || !strings.Contains(ae.Error.Message, "fake/alpha") {
		t.Errorf("JSON failure: %d %s", resp.StatusCode, raw)
	}
	e.fake.Script("m9", upstreamtest.Reply{Status: 400, Error: "no such thing"})
	resp, raw = e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"fake/m9","input":"hi","stream":true}`)
	if ae := decodeError(t, raw); resp.StatusCode != 400 || ae.Error.Message != "no such thing" {
		t.Errorf("a provider's 400 before a stream: %d %s", resp.StatusCode, raw)
	}

	// A failure after the start is response.failed, the stream's last
	// event: a consortium whose members all fail ...
	resp, raw = e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"council","input":"hi","stream":true}`)
	events := readResponseEvents(t, raw)
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added", "response.failed"}
	if got := eventTypes(events); resp.StatusCode != 200 || !slices.Equal(got, want) {
		t.Fatalf("consortium failure: %d %q\n%s", resp.StatusCode, got, raw)
	}
	failed := events[len(events)-1]
	if *failed.Seq != 4 || failed.Response.Status != "failed" || failed.Response.Error == nil || failed.Response.Error.Code != "upstream_error" ||
		!strings.Contains(failed.Response.Error.Message, "fake/alpha") || failed.Response.ID != events[0].Response.ID {
		t.Errorf("response.failed %s", failed.Raw)
	}
	if resp, _ := e.do("GET", "/v1/responses/"+failed.Response.ID, "alice-key", ""); resp.StatusCode != 404 {
		t.Errorf("a failed response was stored: %d", resp.StatusCode)
	}

	// ... and a provider stream that breaks off midway.
	e.fake.Script("m9", upstreamtest.Reply{Content: "one two three", StreamError: "the model fell over"})
	_, raw = e.do(http.MethodPost, "/v1/responses", "alice-key", `{"model":"fake/m9","input":"hi","stream":true}`)
	events = readResponseEvents(t, raw)
	types := eventTypes(events)
	if types[len(types)-1] != "response.failed" || !slices.Contains(types, "response.output_text.delta") || slices.Contains(types, "response.completed") {
		t.Fatalf("broken stream: %q\n%s", types, raw)
	}
	if last := events[len(events)-1]; !strings.Contains(last.Response.Error.Message, "the model fell over") || *last.Seq != len(events)-1 {
		t.Errorf("response.failed %s", last.Raw)
	}
}

// TestResponsesIncomplete reports an answer cut at max_output_tokens as
// incomplete.
func TestResponsesIncomplete(t *testing.T) {
	e := start(t, "")
	e.fake.Script("m1", upstreamtest.Reply{Content: "cut", FinishReason: "length"})
	r := e.mustRespond(t, "", `{"model":"fake/m1","input":"hi","max_output_tokens":1}`)
	r.checkShape(t, "fake/m1")
	if r.Status != "incomplete" || r.IncompleteDetails == nil || r.IncompleteDetails.Reason != "max_output_tokens" {
		t.Errorf("response %+v", r)
	}
}

// TestResponsesStreamBeginsAtOnce checks that a consortium's Responses
// stream begins before the members answer, keeps the connection alive
// while they work, then ends as usual.
func TestResponsesStreamBeginsAtOnce(t *testing.T) {
	keepAlive := func(o *app.Options) { o.KeepAlive = 5 * time.Millisecond }
	inBubble(t, councilConfig(councilYAML), func(t *testing.T, e *memEnv) {
		scriptCouncil(e.fake, "done at last")
		release := make(chan struct{})
		e.fake.Handle("beta", func(*upstreamtest.Request) upstreamtest.Reply {
			<-release
			return upstreamtest.Reply{Content: "beta's answer"}
		})
		e.fake.Script("beta") // the handler answers beta, not the script

		resp, err := e.send(context.Background(), http.MethodPost, "/v1/responses", "", `{"model":"council","input":"hi","stream":true}`)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var head []string
		comments := 0
		for comments < 2 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("the stream ended before two keep-alives: %v", err)
			}
			switch {
			case strings.HasPrefix(line, "event: "):
				head = append(head, strings.TrimSpace(strings.TrimPrefix(line, "event: ")))
			case strings.HasPrefix(line, ": keep-alive"):
				comments++
			}
		}
		if want := completedStream(0)[:4]; !slices.Equal(head, want) {
			t.Errorf("before the members answered: %q, want %q", head, want)
		}
		close(release)
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatal(err)
		}
		events := readResponseEvents(t, rest)
		if got := eventTypes(events); len(got) < 5 || got[len(got)-1] != "response.completed" || *events[0].Seq != 4 {
			t.Fatalf("after the keep-alives: %q", got)
		}
		if final := events[len(events)-1].Response; final.text() != "done at last" {
			t.Errorf("completed with %q", final.text())
		}
	}, keepAlive)
}

// TestResponsesClientDisconnect checks that a client that leaves a
// Responses stream cancels the upstream calls it started.
func TestResponsesClientDisconnect(t *testing.T) {
	inBubble(t, councilConfig(councilYAML), func(t *testing.T, e *memEnv) {
		scriptCouncil(e.fake, "never seen")
		e.fake.Script("beta") // instead of scriptCouncil's answer:
		e.fake.Script("beta", upstreamtest.Reply{Hang: true})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if resp, err := e.send(ctx, http.MethodPost, "/v1/responses", "", `{"model":"council","input":"hi","stream":true}`); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		synctest.Wait()
		if n := e.fake.InFlight(); n != 1 {
			t.Fatalf("%d calls in flight, want beta's", n)
		}
		cancel()
		<-done
		synctest.Wait()
		if n := e.fake.InFlight(); n != 0 {
			t.Fatalf("%d upstream calls still in flight after the client left", n)
		}
		for _, r := range e.fake.RequestsFor("beta") {
			if !r.Cancelled {
				t.Error("beta's call was not cancelled")
			}
		}
	})
}
