package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/cache"
	"github.com/consortium-dev/consortium/consortia"
	"github.com/consortium-dev/consortium/openai"
)

// page is what every template gets: the layout's fields, and the page's
// own data in Data.
type page struct {
	Title  string
	Error  string
	Viewer viewer
	Keys   bool // sign-in is on: the layout offers sign-out
	Nav    string
	Data   any
}

var funcs = template.FuncMap{
	"ms": func(v int64) string { return fmt.Sprintf("%d ms", v) },
	"pct": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", *p*100)
	},
	"usd": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("$%.4f", *p)
	},
	"tokens": func(u *openai.Usage) string {
		if u == nil {
			return "—"
		}
		return fmt.Sprintf("%d in / %d out", u.PromptTokens, u.CompletionTokens)
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"runURL": func(id, tenant string) string {
		u := "/ui/runs/" + url.PathEscape(id)
		if tenant != "" {
			u += "?tenant=" + url.QueryEscape(tenant)
		}
		return u
	},
	"join": strings.Join,
	"f1":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"rating": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("%.1f", *p)
	},
	"ci": func(p *[2]float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("%.1f–%.1f", p[0], p[1])
	},
	"f3": func(v float64) string { return fmt.Sprintf("%.3f", v) },
}

func parseTemplates() map[string]*template.Template {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	out := map[string]*template.Template{}
	names, _ := fs.Glob(templateFS, "templates/*.html")
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
	}
	return out
}

// render writes a page; the template is rendered into a buffer first so
// that a failure is a clean 500, not half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	p.Viewer = viewerOf(r.Context())
	p.Keys = len(h.keys) > 0
	var buf bytes.Buffer
	if err := h.tmpl[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		h.log.Error("ui: a page failed to render", "page", name, "error", err)
		http.Error(w, "the page failed to render; the error is in the proxy's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// runRow is one line of the runs list.
type runRow struct {
	cache.RunSummary
	Tenant string // set for the admin, who sees every tenant's
}

func (h *Handler) runsPage(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r.Context())
	var rows []runRow
	tenants := []string{v.Tenant}
	if v.Admin {
		tenants = h.tenants()
	}
	for _, t := range tenants {
		runs, err := h.cfg.Runs.Runs(r.Context(), t, 0)
		if err != nil {
			h.render(w, r, http.StatusServiceUnavailable, "error", page{Title: "Runs", Error: "The run store is unavailable: " + err.Error()})
			return
		}
		for _, s := range runs {
			row := runRow{RunSummary: s}
			if v.Admin {
				row.Tenant = t
			}
			rows = append(rows, row)
		}
	}
	slices.SortStableFunc(rows, func(a, b runRow) int { return b.Created.Compare(a.Created) })
	// The admin's list merges every tenant's: it shows as many as one
	// tenant's index holds, the newest.
	rows = rows[:min(len(rows), cache.RunsPerTenant)]
	h.render(w, r, http.StatusOK, "runs", page{Title: "Runs", Nav: "runs", Data: rows})
}

// record reads the run of the page's id for the viewer: the viewer's
// own, or for the admin the tenant the link names.
func (h *Handler) record(r *http.Request) ([]byte, string, error) {
	v := viewerOf(r.Context())
	tenant := v.Tenant
	if v.Admin {
		tenant = r.URL.Query().Get("tenant")
	}
	data, err := h.cfg.Runs.Run(r.Context(), tenant, r.PathValue("id"))
	return data, tenant, err
}

func (h *Handler) runRecord(w http.ResponseWriter, r *http.Request) {
	data, _, err := h.record(r)
	if err != nil {
		h.runMissing(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}

func (h *Handler) runMissing(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, cache.ErrNotFound) {
		h.render(w, r, http.StatusNotFound, "error", page{Title: "Run not found",
			Error: "No run " + r.PathValue("id") + " was found for you: it expired, or it is another tenant's."})
		return
	}
	h.render(w, r, http.StatusServiceUnavailable, "error", page{Title: "Run", Error: "The run store is unavailable: " + err.Error()})
}

// runView is what the run page shows of a run record.
type runView struct {
	*consortia.Run
	Tenant    string
	RecordURL string
	Waterfall waterfall
	Cost      *float64
}

func (h *Handler) runPage(w http.ResponseWriter, r *http.Request) {
	data, tenant, err := h.record(r)
	if err != nil {
		h.runMissing(w, r, err)
		return
	}
	var run consortia.Run
	if err := json.Unmarshal(data, &run); err != nil {
		h.render(w, r, http.StatusInternalServerError, "error", page{Title: "Run", Error: "The run record does not decode: " + err.Error()})
		return
	}
	// cost_usd arrives with pricing; read it from the record whatever
	// openai.Usage holds.
	var cost struct {
		Usage struct {
			CostUSD *float64 `json:"cost_usd"`
		} `json:"usage"`
	}
	json.Unmarshal(data, &cost)
	rec := "/ui/runs/" + url.PathEscape(run.ID) + "/record.json"
	if viewerOf(r.Context()).Admin {
		rec += "?tenant=" + url.QueryEscape(tenant)
	}
	if !viewerOf(r.Context()).Admin {
		tenant = ""
	}
	view := runView{Run: &run, Tenant: tenant, RecordURL: rec, Waterfall: newWaterfall(&run), Cost: cost.Usage.CostUSD}
	h.render(w, r, http.StatusOK, "run", page{Title: "Run " + run.ID, Nav: "runs", Data: view})
}

// leaderboard is the JSON the Leaderboard returns (DESIGN's shape).
type leaderboard struct {
	Consortia []struct {
		Name   string `json:"name"`
		Models []struct {
			Model        string      `json:"model"`
			Runs         *int        `json:"runs"`
			Answers      int         `json:"answers"`
			Failures     int         `json:"failures"`
			FirstPlaces  int         `json:"first_places"`
			WinRate      *float64    `json:"win_rate"`
			Rating       *float64    `json:"rating"`      // nil without comparisons
			RatingCI95   *[2]float64 `json:"rating_ci95"` // nil without comparisons
			Regret       *float64    `json:"regret"`
			LatencyMsP50 *float64    `json:"latency_ms_p50"`
			Tokens       *int64      `json:"tokens"`
			CostUSD      *float64    `json:"cost_usd"`
		} `json:"models"`
	} `json:"consortia"`
}

// boardView is a consortium's table and its chart of rating intervals
// (nil when no model has a rating yet).
type boardView struct {
	Name  string
	Rows  any
	Chart *intervalChart
}

func (h *Handler) leaderboardPage(w http.ResponseWriter, r *http.Request) {
	var boards []boardView
	if h.cfg.Leaderboard != nil {
		data, err := h.cfg.Leaderboard.Board(r.Context(), "", h.volumes(viewerOf(r.Context())))
		if err != nil {
			// Any signed-in tenant reads this page: the store's own error,
			// which may name its address, goes to the log only.
			h.log.Warn("leaderboard page: the scores are unavailable", "error", err)
			h.render(w, r, http.StatusServiceUnavailable, "error", page{Title: "Leaderboard", Nav: "leaderboard",
				Error: "The scores are unavailable now: their store does not answer. Runs are still served; try again shortly."})
			return
		}
		var lb leaderboard
		if err := json.Unmarshal(data, &lb); err != nil {
			h.render(w, r, http.StatusInternalServerError, "error", page{Title: "Leaderboard", Nav: "leaderboard", Error: "The scores do not decode: " + err.Error()})
			return
		}
		for _, c := range lb.Consortia {
			if len(c.Models) == 0 {
				continue
			}
			// The chart draws the models that have a rating; the table
			// lists every one.
			var pts []interval
			for _, m := range c.Models {
				if m.Rating != nil && m.RatingCI95 != nil {
					pts = append(pts, interval{Label: m.Model, Value: *m.Rating, Lo: m.RatingCI95[0], Hi: m.RatingCI95[1]})
				}
			}
			bv := boardView{Name: c.Name, Rows: c.Models}
			if len(pts) > 0 {
				bv.Chart = newIntervalChart(pts)
			}
			boards = append(boards, bv)
		}
	}
	h.render(w, r, http.StatusOK, "leaderboard", page{Title: "Leaderboard", Nav: "leaderboard",
		Data: struct {
			Boards []boardView
			Admin  bool
		}{boards, h.volumes(viewerOf(r.Context()))}})
}

// volumes reports whether v may see the leaderboard's volume columns,
// which sum every tenant's runs: the admin, or anyone when the proxy has
// neither client keys nor an admin key (one tenant, nothing to hide), as
// GET /v1/consortium/leaderboard decides.
func (h *Handler) volumes(v viewer) bool {
	return v.Admin || (len(h.keys) == 0 && h.admin == nil)
}

func (h *Handler) playgroundPage(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r.Context())
	h.render(w, r, http.StatusOK, "playground", page{Title: "Playground", Nav: "playground",
		Data: struct {
			Consortia []string
			On        bool
		}{h.cfg.Consortia, h.cfg.Chat != nil && !v.Admin}})
}

// playgroundChat runs a chat for the signed-in tenant: the page's fetch
// posts {consortium, message}, and gets the consortium's stream with its
// progress events. The page's cookie is accepted here, on a POST checked
// for its origin, never on /v1.
func (h *Handler) playgroundChat(w http.ResponseWriter, r *http.Request) {
	v := viewerOf(r.Context())
	if h.cfg.Chat == nil || v.Admin {
		http.Error(w, "the playground runs as a client key's tenant: sign in with a client key", http.StatusForbidden)
		return
	}
	var in struct {
		Consortium string `json:"consortium"`
		Message    string `json:"message"`
	}
	posted, err := readBody(w, r, 1<<20)
	if errors.Is(err, errBodyTimeout) {
		return
	}
	if err != nil || json.Unmarshal(posted, &in) != nil || strings.TrimSpace(in.Message) == "" {
		http.Error(w, "send {\"consortium\": NAME, \"message\": TEXT}", http.StatusBadRequest)
		return
	}
	if !slices.Contains(h.cfg.Consortia, in.Consortium) {
		http.Error(w, "unknown consortium", http.StatusBadRequest)
		return
	}
	body, _ := json.Marshal(map[string]any{
		"model": in.Consortium, "stream": true, "stream_options": map[string]any{"include_usage": true},
		"messages": []map[string]string{{"role": "user", "content": in.Message}},
	})
	req := r.Clone(r.Context())
	req.Body = http.NoBody
	req.Header = http.Header{}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Consortium-Events", "true")
	req.Body = readCloser{bytes.NewReader(body)}
	req.ContentLength = int64(len(body))
	h.cfg.Chat(w, req, v.Tenant)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
