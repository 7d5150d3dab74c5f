package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// servePprof serves Go's profiling endpoints (/debug/pprof/) on addr, apart
// from the proxy's own listener, when CONSORTIUM_PPROF names an address.
// The endpoints have no authentication, show request paths and timings,
// and cost CPU on demand, so addr must be a loopback address. The
// handlers are mounted on a mux of their own; the package's registration
// on http.DefaultServeMux is never served.
func servePprof(addr string, logger *slog.Logger) (bound string, stop func(), err error) {
	if !isLoopback(addr) {
		return "", nil, fmt.Errorf("%q is not a loopback address (127.0.0.1:6060, say): the profiling endpoints have no authentication", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != http.ErrServerClosed {
			logger.Warn("profiling endpoints stopped", "error", err)
		}
	}()
	bound = ln.Addr().String()
	logger.Warn("profiling endpoints open (CONSORTIUM_PPROF)", "addr", "http://"+bound+"/debug/pprof/")
	return bound, func() { hs.Close(); <-done }, nil
}
