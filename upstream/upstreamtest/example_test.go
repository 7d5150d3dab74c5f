package upstreamtest_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

// A provider that is rate limited once, then answers.
func ExampleServer_Script() {
	s := upstreamtest.NewServer()
	defer s.Close()
	s.Script("gpt-4o-mini",
		upstreamtest.Reply{Status: 429, Header: http.Header{"Retry-After": {"1"}}},
		upstreamtest.Reply{Content: "hello"})

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	for range 2 {
		resp, err := http.Post(s.URL+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%d Retry-After=%q\n", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	fmt.Println(len(s.RequestsFor("gpt-4o-mini")), "requests reached the provider")
	// Output:
	// 429 Retry-After="1"
	// 200 Retry-After=""
	// 2 requests reached the provider
}

// The provider of the binary's --demo mode.
func ExampleDemo() {
	s, err := upstreamtest.NewServerAddr("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.SetDefault(upstreamtest.Demo())
	s.SetModels("demo-alpha", "demo-beta")
	s.SetRecordLimit(-1)                   // a long-running server keeps no records
	fmt.Println("demo provider at", s.URL) // a provider of type openai, any key
}

// The same server answers Anthropic's Messages API, from the same scripts.
func ExampleServer_anthropic() {
	s := upstreamtest.NewServer()
	defer s.Close()
	s.Script("claude-haiku-4-5",
		upstreamtest.Reply{Status: 529, Error: "Overloaded"},
		upstreamtest.Reply{Content: "hello", CacheReadTokens: 1200})

	body := `{"model":"claude-haiku-4-5","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	for range 2 {
		resp, err := http.Post(s.URL+"/messages", "application/json", strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(b))
	}
	// Output:
	// 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}
	//
	// 200 {"id":"msg_upstreamtest1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":1200,"output_tokens":1}}
}
