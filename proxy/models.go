package proxy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/consortium-dev/consortium/internal/config"
	"github.com/consortium-dev/consortium/openai"
)

// models returns what /v1/models lists: consortiums first, then the
// passthrough models each provider lists in its configuration.
func Models(cfg *config.Config) []openai.Model {
	var out []openai.Model
	for _, name := range cfg.ConsortiumOrder {
		out = append(out, openai.Model{ID: name, Object: "model", OwnedBy: "consortium", Description: cfg.Consortia[name].Description})
	}
	if !cfg.Passthrough {
		return out
	}
	for _, name := range cfg.ProviderOrder {
		desc := ""
		if name == config.DemoProvider && cfg.Demo {
			desc = "demo: a built-in local provider with canned answers, not a real model"
		}
		for _, m := range cfg.Providers[name].Models {
			out = append(out, openai.Model{ID: name + "/" + m, Object: "model", OwnedBy: name, Description: desc})
		}
	}
	return out
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	data := Models(s.cfg)
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
	for _, m := range Models(s.cfg) {
		if m.ID == id {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	s.fail(w, r, modelNotFound(id))
}
