package ui

import (
	"fmt"
	"math"
	"strconv"

	"github.com/consortium-dev/consortium/consortia"
)

// The charts are drawn as SVG by the templates from coordinates computed
// here, in a viewBox 1000 units wide that scales to the page: labels on
// the left, the plot from plotX to plotX+plotW.
const (
	chartW = 1000
	plotX  = 330
	plotW  = 650
	rowH   = 26
	axisH  = 24
)

// bar is one upstream call in the waterfall.
type bar struct {
	Label     string
	Kind      string // member, judge, arbiter
	Status    string // ok, error, timeout, cancelled
	StartMs   int64
	LatencyMs int64
	X, W, Y   float64
	TextY     float64
}

type tick struct {
	X     float64
	Label string
}

// waterfall is the timing of every upstream call of a run, one row each,
// placed by StartMs on the run's timeline.
type waterfall struct {
	Bars    []bar
	Ticks   []tick
	Width   int
	Height  int
	AxisY   float64
	TotalMs int64
}

func newWaterfall(run *consortia.Run) waterfall {
	var bars []bar
	addRun(&bars, run, "")
	var end int64 = 1
	for _, b := range bars {
		end = max(end, b.StartMs+b.LatencyMs)
	}
	end = max(end, run.DurationMs)
	scale := float64(plotW) / float64(end)
	for i := range bars {
		b := &bars[i]
		b.Y = float64(i*rowH) + 4
		b.TextY = b.Y + 13
		b.X = plotX + float64(b.StartMs)*scale
		b.W = math.Max(float64(b.LatencyMs)*scale, 2)
	}
	w := waterfall{Bars: bars, Width: chartW, Height: len(bars)*rowH + axisH + 8, AxisY: float64(len(bars)*rowH) + 4, TotalMs: end}
	step := niceStep(float64(end) / 5)
	for t := 0.0; t <= float64(end)+1e-9; t += step {
		w.Ticks = append(w.Ticks, tick{X: plotX + t*scale, Label: strconv.FormatFloat(t, 'f', -1, 64) + " ms"})
	}
	return w
}

// addRun adds the calls of run (a cascade tier's too), each label
// prefixed.
func addRun(bars *[]bar, run *consortia.Run, prefix string) {
	for _, rd := range run.Rounds {
		p := fmt.Sprintf("%sr%d ", prefix, rd.Number)
		for _, m := range rd.Members {
			*bars = append(*bars, bar{Label: p + m.Model + "#" + strconv.Itoa(m.Instance), Kind: "member", Status: m.Status, StartMs: m.StartMs, LatencyMs: m.LatencyMs})
		}
		for _, j := range rd.Judges {
			status := "ok"
			if j.Error != "" {
				status = "error"
			}
			*bars = append(*bars, bar{Label: p + "judge " + j.Model, Kind: "judge", Status: status, StartMs: j.StartMs, LatencyMs: j.LatencyMs})
		}
		if a := rd.Arbiter; a != nil {
			status := "ok"
			switch {
			case a.Error != "":
				status = "error"
			case a.Cancelled:
				status = "cancelled"
			}
			*bars = append(*bars, bar{Label: p + "arbiter " + a.Model, Kind: "arbiter", Status: status, StartMs: a.StartMs, LatencyMs: a.LatencyMs})
		}
		for _, t := range rd.Tiers {
			switch {
			case t.Run != nil:
				addRun(bars, t.Run, p+t.Tier.Tier+": ")
			case t.Call != nil:
				*bars = append(*bars, bar{Label: p + "tier " + t.Call.Model, Kind: "member", Status: t.Call.Status, StartMs: t.Call.StartMs, LatencyMs: t.Call.LatencyMs})
			}
		}
	}
}

// niceStep rounds a raw axis step to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// interval is a rating and its 95% interval.
type interval struct {
	Label         string
	Value, Lo, Hi float64
}

type intervalRow struct {
	interval
	X, XLo, XHi, Y, TextY float64
}

// intervalChart draws ratings as dots on their CI95 lines.
type intervalChart struct {
	Rows   []intervalRow
	Ticks  []tick
	Width  int
	Height int
	AxisY  float64
}

func newIntervalChart(pts []interval) *intervalChart {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo = math.Min(lo, math.Min(p.Lo, p.Value))
		hi = math.Max(hi, math.Max(p.Hi, p.Value))
	}
	if hi-lo < 1 {
		lo, hi = lo-50, hi+50
	}
	step := niceStep((hi - lo) / 5)
	lo, hi = math.Floor(lo/step)*step, math.Ceil(hi/step)*step
	x := func(v float64) float64 { return plotX + (v-lo)/(hi-lo)*plotW }
	c := &intervalChart{Width: chartW, Height: len(pts)*rowH + axisH + 8, AxisY: float64(len(pts)*rowH) + 4}
	for i, p := range pts {
		y := float64(i*rowH) + 4
		c.Rows = append(c.Rows, intervalRow{interval: p, X: x(p.Value), XLo: x(p.Lo), XHi: x(p.Hi), Y: y + 9, TextY: y + 13})
	}
	for t := lo; t <= hi+1e-9; t += step {
		c.Ticks = append(c.Ticks, tick{X: x(t), Label: strconv.FormatFloat(t, 'f', -1, 64)})
	}
	return c
}
