package ratelimit

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is the generic cell rate algorithm as one atomic Redis script, so
// that every replica takes from the same allowance. KEYS[1] holds the
// theoretical arrival time in milliseconds; ARGV[1] is the interval between
// requests in milliseconds and ARGV[2] the burst. It returns 0 when the
// request may go, else the milliseconds to wait. Redis' own clock is used,
// so replicas' clocks do not matter.
var gcra = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return math.ceil(allow_at - now)
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return 0
`)

// Shared limits client keys through Redis, so that the rpm of a key holds
// across every replica that shares the Redis. When Redis does not answer
// within its timeout, the key's limit in this process decides instead, so
// limits still hold (per replica) while Redis is away.
type Shared struct {
	client  redis.UniversalClient
	rpm     map[string]int
	local   *Keys
	timeout time.Duration
	log     *slog.Logger
}

// NewShared returns limits for the keys whose rpm is above zero, kept in
// Redis through client. If timeout is zero, 200ms is used.
func NewShared(client redis.UniversalClient, rpm map[string]int, timeout time.Duration, log *slog.Logger) *Shared {
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	if log == nil {
		log = slog.Default()
	}
	return &Shared{client: client, rpm: rpm, local: NewKeys(rpm), timeout: timeout, log: log}
}

// Allow takes one request of the key name from its shared limit, or
// returns a *LimitError saying when to come back.
func (s *Shared) Allow(ctx context.Context, name string) error {
	n := s.rpm[name]
	if n <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	interval := 60000.0 / float64(n)
	key := "consortium:limit:" + strconv.Itoa(len(name)) + ":" + name
	wait, err := gcra.Run(ctx, s.client, []string{key}, strconv.FormatFloat(interval, 'f', 3, 64), n).Int64()
	if err != nil {
		s.log.Warn("shared rate limits unavailable: limiting in this process", "error", err)
		return s.local.Allow(ctx, name)
	}
	if wait > 0 {
		return &LimitError{What: "client key " + name, RetryAfter: time.Duration(wait) * time.Millisecond}
	}
	return nil
}
