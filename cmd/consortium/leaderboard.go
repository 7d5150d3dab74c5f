package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const leaderboardHelp = `Usage: consortium leaderboard [--url URL] [--key KEY] [CONSORTIUM]

Prints the leaderboard of a running proxy as a table: every consortium's
models (or CONSORTIUM's), best rating first. Ratings are Bradley–Terry on a
scale where 1000 is the consortium's average, with 95% bootstrap
intervals. The runs, tokens and cost columns need the admin key.

  --url URL   the proxy (default http://127.0.0.1:8080; a /v1 suffix is fine)
  --key KEY   a client key or the admin key (default $CONSORTIUM_KEY)
`

func init() { commands["leaderboard"] = leaderboardHelp }

// standing is one consortium of the leaderboard's JSON.
type standing struct {
	Name   string `json:"name"`
	Models []struct {
		Model       string      `json:"model"`
		Runs        *int64      `json:"runs"`
		Answers     int64       `json:"answers"`
		Failures    int64       `json:"failures"`
		FirstPlaces int64       `json:"first_places"`
		WinRate     *float64    `json:"win_rate"`
		Rating      *float64    `json:"rating"`
		RatingCI95  *[2]float64 `json:"rating_ci95"`
		Regret      float64     `json:"regret"`
		LatencyP50  *float64    `json:"latency_ms_p50"`
		Tokens      *int64      `json:"tokens"`
		CostUSD     *float64    `json:"cost_usd"`
	} `json:"models"`
}

func leaderboard(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("consortium leaderboard", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	base := fs.String("url", "http://127.0.0.1:8080", "")
	key := fs.String("key", os.Getenv("CONSORTIUM_KEY"), "")
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 1 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(1))
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, leaderboardHelp)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "consortium leaderboard: %v\n\n%s", err, leaderboardHelp)
		return 2
	}
	u := strings.TrimSuffix(strings.TrimSuffix(*base, "/"), "/v1") + "/v1/consortium/leaderboard"
	if !strings.Contains(u, "://") {
		// An address as --listen takes it: 127.0.0.1:8080.
		u = "http://" + u
	}
	if name := fs.Arg(0); name != "" {
		u += "?consortium=" + url.QueryEscape(name)
	}
	standings, err := fetchLeaderboard(u, *key)
	if err != nil {
		fmt.Fprintf(stderr, "consortium leaderboard: %v\n", err)
		return 1
	}
	printLeaderboard(stdout, standings)
	return 0
}

// fetchLeaderboard gets the leaderboard, and the proxy's own message when
// it refuses.
func fetchLeaderboard(u, key string) ([]standing, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is `consortium serve` running there? --url names it)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		if resp.StatusCode == http.StatusUnauthorized {
			if key == "" {
				msg += " (set $CONSORTIUM_KEY or --key)"
			} else {
				msg += " (--key, else $CONSORTIUM_KEY, must be one of the proxy's client keys or its admin key)"
			}
		}
		return nil, fmt.Errorf("%s: %s", resp.Status, msg)
	}
	var lb struct {
		Consortia []standing `json:"consortia"`
	}
	if err := json.Unmarshal(body, &lb); err != nil {
		return nil, fmt.Errorf("the answer is not a leaderboard: %w", err)
	}
	return lb.Consortia, nil
}

// printLeaderboard writes one table per consortium; "-" is a value not
// known yet (no comparisons, no answers, no prices).
func printLeaderboard(w io.Writer, standings []standing) {
	for i, s := range standings {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n", s.Name)
		if len(s.Models) == 0 {
			fmt.Fprintln(w, "  no runs scored yet")
			continue
		}
		volume := s.Models[0].Runs != nil
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		head := "  #\tmodel\trating\t95% interval\twin rate\tanswers\tfailures\tfirst\tregret\tp50 ms"
		if volume {
			head += "\truns\ttokens\tcost $"
		}
		fmt.Fprintln(tw, head)
		for n, m := range s.Models {
			interval := "-"
			if m.RatingCI95 != nil {
				interval = fmt.Sprintf("%.0f–%.0f", m.RatingCI95[0], m.RatingCI95[1])
			}
			line := fmt.Sprintf("  %d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.2f\t%s", n+1, m.Model, orDash(m.Rating, "%.0f"), interval,
				percent(m.WinRate), m.Answers, m.Failures, m.FirstPlaces, m.Regret, orDash(m.LatencyP50, "%.0f"))
			if volume {
				line += fmt.Sprintf("\t%s\t%s\t%s", count(m.Runs), count(m.Tokens), orDash(m.CostUSD, "%.4f"))
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
}

func orDash(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func percent(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(100**v, 'f', 1, 64) + "%"
}

func count(v *int64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatInt(*v, 10)
}
