package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/consortium-dev/consortium/openai"
)

// listModels serves /v1/models: the models the wiring listed, consortiums
// first.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	data := s.cfg.Models
	if data == nil {
		data = []openai.Model{}
	}
	writeJSON(w, http.StatusOK, openai.ModelList{Object: "list", Data: data})
}

// getModel serves /v1/models/{id}, where the id holds slashes, written
// plainly or as %2F.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "*")
	if unescaped, err := url.PathUnescape(id); err == nil {
		id = unescaped
	}
	id = strings.TrimSuffix(id, "/")
	for _, m := range s.cfg.Models {
		if m.ID == id {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	s.fail(w, r, modelNotFound(id))
}
