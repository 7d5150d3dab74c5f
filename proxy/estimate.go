package proxy

import (
	"net/http"

	"github.com/consortium-dev/consortium/openai"
)

// estimate serves POST /v1/consortium/estimate: a chat completion request
// for a consortium, answered with the calls, tokens and cost it would
// take (consortia.Estimate), without calling a provider or reading the
// store. Its errors are a chat completion's: 400 for a body that is not a
// chat request or that the consortium refuses, 404 for a model that is not
// a consortium.
func (s *Server) estimate(w http.ResponseWriter, r *http.Request) {
	buf, err := s.readBody(w, r)
	defer buffers.Put(buf)
	var req *openai.ChatRequest
	if err == nil {
		req, err = openai.ParseChatRequest(buf.Bytes())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info(r.Context()).model = req.Model
	e := s.consortia[req.Model]
	if e == nil {
		ae := modelNotFound(req.Model)
		ae.Message = "The model `" + req.Model + "` is not a consortium: estimates are of consortiums (GET /v1/models lists them)."
		s.fail(w, r, ae)
		return
	}
	est, err := e.Estimate(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, est)
}
