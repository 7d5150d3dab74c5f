package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is what NewRedis needs.
type RedisConfig struct {
	// URL is one server: redis://[user:password@]host:port/db, or
	// rediss:// for TLS. Ignored when Addrs is set.
	URL string
	// Addrs are Cluster nodes, or Sentinels when MasterName is set.
	Addrs      []string
	MasterName string
	// TTL is how long every key lives. If zero, 168h is used.
	TTL time.Duration
	// Timeout bounds every operation, connection included, so that no
	// request waits long on a Redis that does not answer. If zero, 500ms
	// is used.
	Timeout time.Duration
}

// Redis is the Store that replicas share: every key carries the TTL, and
// a turn is written with its conversation pointer and run record in one
// pipelined round trip.
type Redis struct {
	client  redis.UniversalClient
	ttl     time.Duration
	timeout time.Duration
}

// redisLog routes go-redis' own log lines (one per failed dial while Redis
// is down) to slog at debug level: the proxy reports the store's state
// itself, once, as a warning and a metric.
type redisLog struct{}

func (redisLog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

var quietRedis sync.Once

// NewRedis returns a Redis store. It does not connect: the first operation
// does, and a Redis that is down now is used once it comes back.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	quietRedis.Do(func() { redis.SetLogger(redisLog{}) })
	r := &Redis{ttl: cfg.TTL, timeout: cfg.Timeout}
	if r.ttl <= 0 {
		r.ttl = 168 * time.Hour
	}
	if r.timeout <= 0 {
		r.timeout = 500 * time.Millisecond
	}
	if len(cfg.Addrs) > 0 {
		r.client = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs:        cfg.Addrs,
			MasterName:   cfg.MasterName,
			DialTimeout:  r.timeout,
			ReadTimeout:  r.timeout,
			WriteTimeout: r.timeout,
			PoolTimeout:  r.timeout,
			MaxRetries:   -1,
		})
		return r, nil
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = r.timeout, r.timeout, r.timeout, r.timeout
	// A retry would double the wait on a Redis that is down; a request
	// that needs the store is better answered 503 at once.
	opts.MaxRetries = -1
	r.client = redis.NewClient(opts)
	return r, nil
}

// bounded returns ctx limited to the store's timeout.
func (r *Redis) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// unavailable wraps a Redis failure so callers can tell it from absence.
func unavailable(err error) error {
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func (r *Redis) get(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	data, err := r.client.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return data, nil
}

func (r *Redis) turn(ctx context.Context, key string) (*Turn, error) {
	data, err := r.get(ctx, key)
	if err != nil {
		return nil, err
	}
	var t Turn
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("a stored turn does not decode: %w", err)
	}
	return &t, nil
}

// Match implements Store.
func (r *Redis) Match(ctx context.Context, tenant, consortium, hash string) (*Turn, error) {
	return r.turn(ctx, turnKey(tenant, consortium, hash))
}

// Latest implements Store.
func (r *Redis) Latest(ctx context.Context, tenant, conversation string) (*Turn, error) {
	return r.turn(ctx, convKey(tenant, conversation))
}

// Save implements Store.
func (r *Redis) Save(ctx context.Context, tenant string, turn *Turn, run []byte) error {
	data, err := json.Marshal(turn)
	if err != nil {
		return err
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, turnKey(tenant, turn.Consortium, Hash(turn.Consortium, turn.Transcript)), data, r.ttl)
		p.Set(ctx, convKey(tenant, turn.Conversation), data, r.ttl)
		if run != nil {
			p.Set(ctx, runKey(tenant, turn.RunID), run, r.ttl)
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Run implements Store.
func (r *Redis) Run(ctx context.Context, tenant, id string) ([]byte, error) {
	return r.get(ctx, runKey(tenant, id))
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	if err := r.client.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }

// Client returns the Redis client, for limits shared through the same
// server.
func (r *Redis) Client() redis.UniversalClient { return r.client }
