package upstreamtest

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/consortium-dev/consortium/openai"
)

// serveModels answers GET /v1/models with the SetModels list.
func (s *Server) serveModels(w http.ResponseWriter) {
	s.mu.Lock()
	ids := slices.Clone(s.models)
	s.mu.Unlock()
	list := openai.ModelList{Object: "list", Data: make([]openai.Model, len(ids))}
	for i, id := range ids {
		list.Data[i] = s.model(id)
	}
	writeJSON(w, http.StatusOK, nil, list)
}

// serveModel answers GET /v1/models/{id}; ids may hold slashes.
func (s *Server) serveModel(w http.ResponseWriter, id string) {
	s.mu.Lock()
	found := slices.Contains(s.models, id)
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, nil, "invalid_request_error", "model_not_found",
			fmt.Sprintf("The model '%s' does not exist", id))
		return
	}
	writeJSON(w, http.StatusOK, nil, s.model(id))
}

func (s *Server) model(id string) openai.Model {
	return openai.Model{ID: id, Object: "model", Created: s.started, OwnedBy: "upstreamtest"}
}
