package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/consortium-dev/consortium/scores"
)

// Scores answers the leaderboard: *scores.Board satisfies it. volume asks
// for the columns that sum every tenant's runs (runs, tokens, cost_usd).
// A name it does not know is an error wrapping scores.ErrUnknown; a store
// that fails, any other error.
type Scores interface {
	Leaderboard(ctx context.Context, volume bool, names ...string) ([]scores.Standing, error)
}

// leaderboardAuth lets the admin key in, with the volume columns; any
// other request goes through the client routes' auth and limits. With
// neither client keys nor an admin key there is one tenant and nothing
// to hide from it: every request sees the volume columns.
func (s *Server) leaderboardAuth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(s.cfg.AdminKey))
	client := s.clientAuth(s.clientLimit(next))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminKey == "" {
			if len(s.keys) == 0 {
				r = r.WithContext(context.WithValue(r.Context(), volumeKey{}, true))
			}
			client.ServeHTTP(w, r)
			return
		}
		if key, ok := bearer(r); ok {
			got := sha256.Sum256([]byte(key))
			if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), volumeKey{}, true)))
				return
			}
		}
		client.ServeHTTP(w, r)
	})
}

// volumeKey marks a leaderboard request that may see the volume columns.
type volumeKey struct{}

// leaderboard answers GET /v1/consortium/leaderboard[?consortium=NAME]:
// {"consortia": [{"name": ..., "models": [...]}]}, each consortium's
// models best rating first (DESIGN, "Scores, leaderboard and cost").
func (s *Server) leaderboard(w http.ResponseWriter, r *http.Request) {
	if s.scores == nil {
		s.fail(w, r, &apiError{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Code: "scores_unavailable",
			Message: "This server keeps no scores."})
		return
	}
	name := r.URL.Query().Get("consortium")
	volume, _ := r.Context().Value(volumeKey{}).(bool)
	body, err := board{s.scores}.Board(r.Context(), name, volume)
	switch {
	case errors.Is(err, scores.ErrUnknown):
		s.fail(w, r, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "consortium",
			Message: fmt.Sprintf("The consortium `%s` does not exist or you do not have access to it.", name)})
		return
	case err != nil:
		s.storeFailed("scores", err)
		// Any client key reads the leaderboard: it gets the reason, the
		// log gets the store's own error, which may name its address.
		s.fail(w, r, fmt.Errorf("%w: %w", &apiError{Status: http.StatusServiceUnavailable, Type: "service_unavailable", Code: "store_unavailable",
			Message:    "The scores cannot be read now: scores store unavailable (it does not answer). Runs are still served; their scores are skipped until the store answers.",
			RetryAfter: 5 * time.Second}, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// board is the leaderboard as a JSON body, the route's and the web
// pages' alike: {"consortia": [...]} for every consortium, or the one
// named.
type board struct{ scores Scores }

// Board returns the leaderboard's body; volume adds the columns that sum
// every tenant.
func (b board) Board(ctx context.Context, consortium string, volume bool) ([]byte, error) {
	var names []string
	if consortium != "" {
		names = []string{consortium}
	}
	standings, err := b.scores.Leaderboard(ctx, volume, names...)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"consortia": standings})
}
