package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig is what NewRedis needs besides the client.
type RedisConfig struct {
	// TTL is how long every key lives. If zero, 168h is used.
	TTL time.Duration
	// Timeout bounds every operation, so that no request waits long on a
	// Redis that does not answer. If zero, 500ms is used.
	Timeout time.Duration
	// Replicas is how many replicas must hold each write before it is
	// acknowledged (Redis' WAIT, within half of Timeout): a write that
	// fewer replicas confirm is reported as unavailable, so the proxy
	// does not announce a turn that a failover could lose. Replication is
	// asynchronous: without it (zero, the default) a write the master
	// acknowledged and then lost before replicating is gone after a
	// failover. For a master under Sentinel, not a Cluster.
	Replicas int
}

// Redis is the Store that replicas share: every key carries the TTL, and
// a turn is written with its conversation pointer and run record in one
// pipelined round trip. It uses a client it is given and does not close
// it: the client is shared (the client keys' limits use it too) and its
// opener closes it.
type Redis struct {
	client   redis.UniversalClient
	ttl      time.Duration
	timeout  time.Duration
	replicas int
}

// NewRedis returns a Redis store on client. It does not connect: the
// first operation does, and a Redis that is down now is used once it
// comes back.
func NewRedis(client redis.UniversalClient, cfg RedisConfig) *Redis {
	r := &Redis{client: client, ttl: cfg.TTL, timeout: cfg.Timeout, replicas: cfg.Replicas}
	if r.ttl <= 0 {
		r.ttl = 168 * time.Hour
	}
	if r.timeout <= 0 {
		r.timeout = 500 * time.Millisecond
	}
	return r
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
func (r *Redis) Save(ctx context.Context, tenant string, turn *Turn, run *RunRecord) error {
	data, err := json.Marshal(turn)
	if err != nil {
		return err
	}
	var line []byte
	if run != nil && run.Summary.RunID != "" {
		line, _ = json.Marshal(run.Summary)
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	// Not a transaction: on a Cluster the keys live in different slots,
	// and go-redis sends each node its part of the pipeline.
	return r.write(ctx, func(p redis.Pipeliner) {
		p.Set(ctx, turnKey(tenant, turn.Consortium, Hash(turn.Consortium, turn.Transcript)), data, r.ttl)
		p.Set(ctx, convKey(tenant, turn.Conversation), data, r.ttl)
		if run != nil {
			p.Set(ctx, runKey(tenant, turn.RunID), run.JSON, r.ttl)
			if line != nil {
				key := runsKey(tenant)
				p.LPush(ctx, key, line)
				p.LTrim(ctx, key, 0, RunsPerTenant-1)
				p.Expire(ctx, key, r.ttl)
			}
		}
	})
}

// write sends the writes of one operation in one pipeline, followed by a
// WAIT for the configured replicas on the same connection.
func (r *Redis) write(ctx context.Context, writes func(redis.Pipeliner)) error {
	var wait *redis.Cmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		writes(p)
		if r.replicas > 0 {
			wait = p.Do(ctx, "wait", r.replicas, (r.timeout / 2).Milliseconds())
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	if wait != nil {
		if n, _ := wait.Int64(); n < int64(r.replicas) {
			return unavailable(fmt.Errorf("%d of %d replicas acknowledged the write within %v", n, r.replicas, r.timeout/2))
		}
	}
	return nil
}

// Run implements Store.
func (r *Redis) Run(ctx context.Context, tenant, id string) ([]byte, error) {
	return r.get(ctx, runKey(tenant, id))
}

// Runs implements Store: the index is a list per tenant, newest first,
// trimmed to RunsPerTenant on every Save and expiring with the TTL from
// the last one. A summary whose record expired is still listed; its page
// then says the run is gone.
func (r *Redis) Runs(ctx context.Context, tenant string, limit int) ([]RunSummary, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	lines, err := r.client.LRange(ctx, runsKey(tenant), 0, int64(bound(limit))-1).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]RunSummary, 0, len(lines))
	for _, l := range lines {
		var s RunSummary
		if json.Unmarshal([]byte(l), &s) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// SaveResponse implements Store.
func (r *Redis) SaveResponse(ctx context.Context, tenant, id string, record []byte) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	return r.write(ctx, func(p redis.Pipeliner) {
		p.Set(ctx, responseKey(tenant, id), record, r.ttl)
	})
}

// Response implements Store.
func (r *Redis) Response(ctx context.Context, tenant, id string) ([]byte, error) {
	return r.get(ctx, responseKey(tenant, id))
}

// DeleteResponse implements Store.
func (r *Redis) DeleteResponse(ctx context.Context, tenant, id string) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	n, err := r.client.Del(ctx, responseKey(tenant, id)).Result()
	if err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
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
