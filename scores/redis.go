package scores

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is what NewRedis needs besides the client.
type RedisConfig struct {
	// TTL is how long a consortium's statistics live after their last
	// update. If zero, 168h is used.
	TTL time.Duration
	// Window is how many recent runs with pairs are kept for the
	// bootstrap. If zero, Window.
	Window int
	// Timeout bounds every operation. If zero, 500ms is used.
	Timeout time.Duration
}

// Redis is the Store replicas share. A consortium's statistics are three
// keys whose names share the hash tag {len:name}, so that they live in
// one hash slot and a run's update is one MULTI/EXEC in one round trip,
// on Redis Cluster too:
//
//	consortium:scores:{5:bench}:counts   hash "model\x1ffield" → count (HINCRBY; cost by HINCRBYFLOAT), "\x1fruns" and "\x1fpaired"
//	consortium:scores:{5:bench}:pairs    hash "winner\x1floser" → wins
//	consortium:scores:{5:bench}:recent   list of the recent runs' pairs, newest first (LPUSH, LTRIM)
//
// Every update sets the three keys' TTL again. Counters are added with
// HINCRBY, so replicas that record at once lose nothing. It uses a client
// it is given and does not close it.
type Redis struct {
	client  redis.UniversalClient
	ttl     time.Duration
	window  int
	timeout time.Duration
}

// NewRedis returns a Redis store on client. It does not connect.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) *Redis {
	r := &Redis{client: client, ttl: cfg.TTL, window: cfg.Window, timeout: cfg.Timeout}
	if r.ttl <= 0 {
		r.ttl = 168 * time.Hour
	}
	if r.window <= 0 {
		r.window = Window
	}
	if r.timeout <= 0 {
		r.timeout = 500 * time.Millisecond
	}
	return r
}

// The separator inside field names and encoded pairs: model refs never
// hold control characters.
const sep = "\x1f"

// counter is one of a model's counts as its hash field names it.
type counter struct {
	name string
	n    *int64
}

// counters are c's counts kept as hash fields, for Add and Load alike.
func (c *Counts) counters() [9]counter {
	return [9]counter{{"runs", &c.Runs}, {"answers", &c.Answers}, {"failures", &c.Failures}, {"first", &c.FirstPlaces},
		{"wins", &c.Wins}, {"losses", &c.Losses}, {"regret", &c.Regret}, {"tokens", &c.Tokens}, {"cost_unknown", &c.CostUnknown}}
}

// keys returns a consortium's three keys.
func keys(consortium string) (counts, pairs, recent string) {
	prefix := "consortium:scores:{" + strconv.Itoa(len(consortium)) + ":" + consortium + "}:"
	return prefix + "counts", prefix + "pairs", prefix + "recent"
}

// Add implements Store: one MULTI/EXEC, one round trip.
func (r *Redis) Add(ctx context.Context, t *Tally) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	counts, pairs, recent := keys(t.Consortium)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, counts, sep+"runs", 1)
		for ref, c := range t.Models {
			for _, f := range c.counters() {
				if *f.n != 0 {
					p.HIncrBy(ctx, counts, ref+sep+f.name, *f.n)
				}
			}
			if c.CostUSD != 0 {
				p.HIncrByFloat(ctx, counts, ref+sep+"cost", c.CostUSD)
			}
			for b, n := range c.Latency {
				p.HIncrBy(ctx, counts, ref+sep+"lat"+sep+strconv.Itoa(b), n)
			}
		}
		if len(t.Pairs) > 0 {
			p.HIncrBy(ctx, counts, sep+"paired", 1)
			for _, pr := range t.Pairs {
				p.HIncrBy(ctx, pairs, pr.Winner+sep+pr.Loser, pr.N)
			}
			p.LPush(ctx, recent, encodePairs(t.Pairs))
			p.LTrim(ctx, recent, 0, int64(r.window-1))
		}
		// Every update restarts all three keys' expiry, a run without
		// pairs too: the statistics expire whole, never counts whose
		// pairs were dropped under them.
		p.Expire(ctx, counts, r.ttl)
		p.Expire(ctx, pairs, r.ttl)
		p.Expire(ctx, recent, r.ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Load implements Store: one MULTI/EXEC, so the three keys are read as
// of one moment.
func (r *Redis) Load(ctx context.Context, consortium string) (*Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	counts, pairs, recent := keys(consortium)
	var c, p *redis.MapStringStringCmd
	var l *redis.StringSliceCmd
	_, err := r.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		c = pipe.HGetAll(ctx, counts)
		p = pipe.HGetAll(ctx, pairs)
		l = pipe.LRange(ctx, recent, 0, -1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	s := newStats()
	for field, v := range c.Val() {
		ref, name, _ := strings.Cut(field, sep)
		if ref == "" {
			n, _ := strconv.ParseInt(v, 10, 64)
			switch name {
			case "runs":
				s.Runs = n
			case "paired":
				s.Paired = n
			}
			continue
		}
		m := s.Models[ref]
		if m == nil {
			m = &Counts{}
			s.Models[ref] = m
		}
		if name == "cost" {
			m.CostUSD, _ = strconv.ParseFloat(v, 64)
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if b, ok := strings.CutPrefix(name, "lat"+sep); ok {
			if i, err := strconv.Atoi(b); err == nil {
				if m.Latency == nil {
					m.Latency = map[int]int64{}
				}
				m.Latency[i] = n
			}
			continue
		}
		for _, f := range m.counters() {
			if f.name == name {
				*f.n = n
				break
			}
		}
	}
	for field, v := range p.Val() {
		w, l, ok := strings.Cut(field, sep)
		if n, err := strconv.ParseInt(v, 10, 64); ok && err == nil {
			s.Pairs[[2]string{w, l}] = n
		}
	}
	for _, e := range l.Val() {
		s.Recent = append(s.Recent, decodePairs(e))
	}
	return s, nil
}

// encodePairs writes a run's pairs compactly: winner, loser and count,
// separated by sep, one pair after another.
func encodePairs(pairs []Pair) string {
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p.Winner + sep + p.Loser + sep + strconv.FormatInt(p.N, 10))
	}
	return b.String()
}

func decodePairs(s string) []Pair {
	f := strings.Split(s, sep)
	var out []Pair
	for i := 0; i+2 < len(f); i += 3 {
		if n, err := strconv.ParseInt(f[i+2], 10, 64); err == nil {
			out = append(out, Pair{Winner: f[i], Loser: f[i+1], N: n})
		}
	}
	return out
}
