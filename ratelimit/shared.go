package ratelimit

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Shared limits client keys through Redis, so that the rpm of a key holds
// across every replica that shares the Redis. The limit is go-redis's
// redis_rate: GCRA in one atomic script on Redis' own clock, so replicas'
// clocks do not matter. When Redis does not answer within its timeout,
// the key's limit in this process decides instead, so limits still hold
// (per replica) while Redis is away.
type Shared struct {
	limiter *redis_rate.Limiter
	rpm     map[string]int
	local   *Keys
	timeout time.Duration
	log     *slog.Logger
}

// NewShared returns limits for the keys whose rpm is above zero, kept in
// Redis through client, which the caller owns and closes. If timeout is
// zero, 200ms is used; if log is nil, slog.Default().
func NewShared(client redis.UniversalClient, rpm map[string]int, timeout time.Duration, log *slog.Logger) *Shared {
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	if log == nil {
		log = slog.Default()
	}
	return &Shared{limiter: redis_rate.NewLimiter(client), rpm: rpm, local: NewKeys(rpm), timeout: timeout, log: log}
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
	// The name's length goes first, so no name can address another's key.
	key := "consortium:limit:" + strconv.Itoa(len(name)) + ":" + name
	res, err := s.limiter.Allow(ctx, key, redis_rate.PerMinute(n))
	if err != nil {
		s.log.Warn("shared rate limits unavailable: limiting in this process", "error", err)
		return s.local.Allow(ctx, name)
	}
	if res.Allowed == 0 {
		return &LimitError{What: "client key " + name, RetryAfter: res.RetryAfter}
	}
	return nil
}
