package bench

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// Hop returns a bare httputil.ReverseProxy to target: the floor for any Go
// proxy on the machine, with the same tuned transport the proxy uses, so
// the comparison measures the proxy's own work, not its connection pool.
func Hop(target *url.URL, transport http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     transport,
		FlushInterval: -1,
	}
}
