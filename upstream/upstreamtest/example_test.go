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
