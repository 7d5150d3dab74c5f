package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/consortium-dev/consortium/bench"
)

// underLoad is the consortium-under-load scenario at one concurrency: the
// synthesize consortium of the harness's configuration (3 members and an
// arbiter on the 50 ms fake), streamed, through the proxy with named
// progress events off and on (X-Consortium-Events), and its critical path
// made straight to the fake, the three taking turns at going first in
// each round.
type underLoad struct {
	clients         int
	off, on, direct []*bench.Result
	// The CPU each process spent per run, round by round, with events off
	// (on, the proxy writes more) and on the direct path.
	offCPU, directCPU []cpuUse
}

// cpuUse is the CPU time the processes of a measurement have used.
type cpuUse struct{ proxy, fake, load time.Duration }

func cpuNow(e *env) cpuUse {
	return cpuUse{proxy: e.proxy.cpu(), fake: e.slow.cpu(), load: cpuOf("self")}
}

// perRun is the CPU of each process between a and b, per request of res.
func perRun(a, b cpuUse, res *bench.Result) cpuUse {
	n := time.Duration(max(res.Requests, 1))
	return cpuUse{proxy: (b.proxy - a.proxy) / n, fake: (b.fake - a.fake) / n, load: (b.load - a.load) / n}
}

// underLoadClients are the concurrencies measured.
var underLoadClients = []int{16, 128, 512}

// eventsHeader asks a consortium stream for named progress events.
const eventsHeader = "X-Consortium-Events"

// underLoadClient keeps a connection per request in flight: at 512
// clients the direct critical path has 1,536 calls open at once.
func underLoadClient() *http.Client {
	return bench.NewClient(4 * underLoadClients[len(underLoadClients)-1])
}

// measureUnderLoad measures one round of every concurrency. Each
// measurement follows half a second of the same load, unmeasured, so that
// the connections it needs are open.
func measureUnderLoad(ctx context.Context, client *http.Client, loads []*underLoad, e *env, round int, d time.Duration) {
	proxy := target{base: "http://" + e.proxy.addr, model: "council"}
	slow := target{base: "http://" + e.slow.addr, model: "m"}
	for _, l := range loads {
		for k := range 3 {
			var req *bench.Request
			var what string
			var into *[]*bench.Result
			var cpu *[]cpuUse // nil: not kept
			switch (k + round) % 3 {
			case 0:
				what, into, cpu = "events off", &l.off, &l.offCPU
				req = proxy.request(true, 0)
			case 1:
				what, into = "events on", &l.on
				on := proxy
				on.hdr = http.Header{eventsHeader: {"true"}}
				req = on.request(true, 0)
			default:
				what, into, cpu = "critical path, direct", &l.direct, &l.directCPU
				req = criticalPath(slow, 3, 0, 0)
			}
			bench.Concurrent(ctx, client, req, l.clients, 500*time.Millisecond)
			before := cpuNow(e)
			res := bench.Concurrent(ctx, client, req, l.clients, d)
			use := perRun(before, cpuNow(e), res)
			*into = append(*into, res)
			if cpu != nil {
				*cpu = append(*cpu, use)
			}
			if res.Errors > 0 {
				log.Printf("under load, %d clients, %s: %d errors, first: %s", l.clients, what, res.Errors, res.FirstErr)
			}
			log.Printf("round %d %-34s %3d clients: p50 %v p90 %v %6.0f req/s errors %d", round+1, "consortium "+what,
				l.clients, res.Quantile(0.5), res.Quantile(0.9), res.Throughput(), res.Errors)
		}
	}
}

// added returns the proxy's median minus the direct critical path's, in
// ms, round by round (the two were measured in the same round).
func (l *underLoad) added(proxy []*bench.Result) []float64 {
	var out []float64
	for i := range min(len(proxy), len(l.direct)) {
		out = append(out, ms(proxy[i].Quantile(0.5))-ms(l.direct[i].Quantile(0.5)))
	}
	return out
}

// spread formats a median over rounds with the range of the rounds:
// "0.83 (0.61 – 1.02)".
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "—"
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf(format+" ("+format+" – "+format+")", s[len(s)/2], s[0], s[len(s)-1])
}

func errorsOf(rs []*bench.Result) int {
	n := 0
	for _, r := range rs {
		n += r.Errors
	}
	return n
}

// underLoadMarkdown writes the consortium-under-load section.
func underLoadMarkdown(loads []*underLoad, rounds int, d time.Duration, w func(string, ...any)) {
	if len(loads) == 0 {
		return
	}
	w("## Consortium under load\n\n")
	w("The synthesize consortium above (3 member instances at once, then the arbiter, on the fake that waits 50 ms before each answer), ")
	w("asked to stream, by N clients at once for %s, through the proxy with named progress events off and on (`X-Consortium-Events: true`), ", d)
	w("and its critical path straight to the fake (three JSON calls at once, then the streamed arbiter call with the proxy's prompt) in the same rounds; ")
	w("the three take turns at going first. At N clients the direct path keeps 3N calls to the fake open at once, the proxy as many. ")
	w("Added: the proxy's median minus the direct path's, round by round; the table gives the median over %d rounds and, in brackets, ", rounds)
	w("the lowest and highest round.\n\n")
	w("| clients | direct p50 ms | events off p50 ms | added ms | events on p50 ms | added ms | req/s direct / off / on | errors direct / off / on |\n")
	w("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range loads {
		w("| %d | %.2f | %.2f | %s | %.2f | %s | %.0f / %.0f / %.0f | %d / %d / %d |\n", l.clients,
			medianP50(l.direct), medianP50(l.off), spread(l.added(l.off), "%.2f"), medianP50(l.on), spread(l.added(l.on), "%.2f"),
			medianOf(l.direct, (*bench.Result).Throughput), medianOf(l.off, (*bench.Result).Throughput), medianOf(l.on, (*bench.Result).Throughput),
			errorsOf(l.direct), errorsOf(l.off), errorsOf(l.on))
	}
	var firsts []string
	for _, l := range loads {
		for _, x := range []struct {
			what string
			rs   []*bench.Result
		}{{"direct", l.direct}, {"events off", l.off}, {"events on", l.on}} {
			for _, r := range x.rs {
				if r.FirstErr != "" {
					firsts = append(firsts, fmt.Sprintf("%d clients, %s: `%s`", l.clients, x.what, strings.TrimSpace(r.FirstErr)))
					break
				}
			}
		}
	}
	w("\nWhere the CPU goes, per run (µs; the median over rounds, from /proc/PID/stat, whose 10 ms ticks make a %s measurement good to about 1%%), ", d)
	w("and the share of the machine's %d cores the proxy used: on this machine the three processes share the cores, ", runtime.NumCPU())
	w("so whatever the proxy spends also delays the fake and the load generator, on the path the direct figure measures too ")
	w("([performance.md](performance.md#consortiums-under-load)).\n\n")
	w("| clients | proxy, events off | fake, via proxy | load generator, via proxy | fake, direct | load generator, direct | proxy's cores |\n")
	w("|---:|---:|---:|---:|---:|---:|---:|\n")
	proxy := func(u cpuUse) float64 { return us(u.proxy) }
	fake := func(u cpuUse) float64 { return us(u.fake) }
	load := func(u cpuUse) float64 { return us(u.load) }
	for _, l := range loads {
		proxyUs := medianOf(l.offCPU, proxy)
		w("| %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", l.clients, proxyUs, medianOf(l.offCPU, fake), medianOf(l.offCPU, load),
			medianOf(l.directCPU, fake), medianOf(l.directCPU, load), proxyUs/1e6*medianOf(l.off, (*bench.Result).Throughput))
	}
	w("\n")
	for _, f := range firsts {
		w("- first error, %s\n", f)
	}
	if len(firsts) > 0 {
		w("\n")
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
