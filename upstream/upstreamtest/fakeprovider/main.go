// Command fakeprovider runs upstreamtest's fake OpenAI-compatible provider
// as a process of its own, for tests written in other languages: the client
// compatibility suites under compat/ start it beside the consortium binary
// and script it over HTTP.
//
// Usage:
//
//	fakeprovider [--listen 127.0.0.1:0] [--models m1,m2]
//
// It prints its base URL (for example http://127.0.0.1:41234/v1) as the
// first line on standard output, then serves until SIGINT or SIGTERM. The
// same address serves the control API of upstreamtest.Server.ControlHandler
// under /_control/ (script replies per model, reset, set the model list,
// read the recorded requests). Models without a script answer with
// upstreamtest's default, Echo. It is a test double, not a product: the
// control API checks no key, so it listens on loopback unless told
// otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/consortium-dev/consortium/upstream/upstreamtest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen `address`; port 0 picks a free one")
	models := flag.String("models", "", "comma-separated model `ids` that GET /v1/models lists")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "fakeprovider: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}

	s, err := upstreamtest.NewControlServer(*listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakeprovider: %v\n", err)
		os.Exit(1)
	}
	defer s.Close()
	if *models != "" {
		s.SetModels(strings.Split(*models, ",")...)
	}
	fmt.Println(s.URL)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
