package proxy

import (
	"net/http"
	"slices"

	"github.com/consortium-dev/consortium/proxy/ui"
)

// pages builds the web pages under /ui/ (package proxy/ui) over the
// server's own keys, run store and consortiums. The playground's chat runs
// through chatPage, as the signed-in tenant; the pages' cookie is never
// read on the /v1 routes, whose clientAuth reads only keys.
func (s *Server) pages() http.Handler {
	keys := make([]ui.Key, len(s.cfg.Keys))
	for i, k := range s.cfg.Keys {
		keys[i] = ui.Key{Tenant: k.Name, Key: k.Key}
	}
	var names []string
	for name := range s.consortia {
		names = append(names, name)
	}
	slices.Sort(names)
	// The leaderboard page reads what GET /v1/consortium/leaderboard
	// serves; without scores, it says there are none.
	var lb ui.Leaderboard
	if s.scores != nil {
		lb = board{s.scores}
	}
	return ui.New(ui.Config{
		Keys:        keys,
		AdminKey:    s.cfg.AdminKey,
		Runs:        s.store,
		Leaderboard: lb,
		Consortia:   names,
		Chat:        s.chatPage,
		Logger:      s.log,
	})
}

// chatPage serves the playground's chat request as tenant: as POST
// /v1/chat/completions would for that tenant's key, its limit included.
func (s *Server) chatPage(w http.ResponseWriter, r *http.Request, tenant string) {
	info(r.Context()).tenant = tenant
	s.clientLimit(http.HandlerFunc(s.chatCompletions)).ServeHTTP(w, r)
}
