// Package command is mpim's write side: it loads an aggregate's state from the
// event store, lets the domain decide, and appends the resulting events with
// the expected version, guards and cells that keep the decision valid, in one
// call per command. A version conflict (someone else changed the state in the
// meantime) is retried from fresh state up to Config.MaxAttempts times.
//
// Decisions are made only on state read from the event store itself (an
// aggregate's history stream, or a message's cell), never on a read model.
// Aggregate states are cached by version; a stale cache entry shows up as a
// version or guard conflict and is reloaded; a refusal decided on cached
// state is decided once more on fresh state before it is returned.
//
// A Service is safe for concurrent use.
package command

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
)

// Config configures a Service.
type Config struct {
	Policy domain.Policy
	// MaxAttempts bounds the attempts of a command that meets version
	// conflicts (default 16).
	MaxAttempts int
	// CacheSize bounds the cached aggregate states (default 100,000).
	CacheSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Service executes commands. Construct it with New.
type Service struct {
	store  *eventstore.Store
	cfg    Config
	policy domain.Policy
	cache  *cache
}

// New returns a Service on store. It fails if the policy is invalid.
func New(store *eventstore.Store, cfg Config) (*Service, error) {
	if cfg.Policy == (domain.Policy{}) {
		cfg.Policy = domain.DefaultPolicy()
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 16
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	if err := cfg.Policy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if cfg.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("command: max attempts must be positive, got %d", cfg.MaxAttempts))
	}
	if cfg.CacheSize < 1 {
		errs = append(errs, fmt.Errorf("command: cache size must be positive, got %d", cfg.CacheSize))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Service{store: store, cfg: cfg, policy: cfg.Policy, cache: newCache(cfg.CacheSize)}, nil
}

// Policy returns the domain policy the service decides with.
func (s *Service) Policy() domain.Policy { return s.policy }

// Actor is who issues a command.
type Actor struct {
	User          domain.UserID
	Device        domain.DeviceID
	CorrelationID string
}

// Result is the outcome of a command that appended events.
type Result struct {
	Events    []eventstore.Appended
	Partition int
	// Duplicate is true when an idempotency key matched an earlier execution.
	Duplicate bool
}

func resultOf(r eventstore.AppendResult) Result {
	return Result{Events: r.Events, Partition: r.Partition, Duplicate: r.Duplicate}
}

// envelopes wraps domain events for aggregate agg.
func (s *Service) envelopes(actor Actor, agg string, now time.Time, events []domain.Event) ([]*mpimv1.Event, error) {
	out := make([]*mpimv1.Event, len(events))
	for i, e := range events {
		env, err := codec.Envelope(codec.Meta{
			ID: ulid.Make(), Aggregate: agg, OccurredAt: now,
			ActorUser: actor.User, ActorDevice: actor.Device, CorrelationID: actor.CorrelationID,
		}, e)
		if err != nil {
			return nil, domain.Errorf(domain.EInternal, "command: %w", err)
		}
		out[i] = env
	}
	return out, nil
}

// history loads the domain events of a KeepHistory aggregate.
func (s *Service) history(ctx context.Context, partitionKey, agg string) ([]domain.Event, error) {
	recs, err := s.store.ReadAggregate(ctx, partitionKey, agg)
	if err != nil {
		return nil, domain.Errorf(domain.EUnavailable, "command: loading %s: %w", agg, err)
	}
	return decodeEvents(agg, recs)
}

// decodeEvents turns an aggregate's recorded events into domain events.
func decodeEvents(agg string, recs []eventstore.Recorded) ([]domain.Event, error) {
	events := make([]domain.Event, len(recs))
	for i, r := range recs {
		_, e, err := codec.Decode(r.Event)
		if err != nil {
			return nil, domain.Errorf(domain.EInternal, "command: decoding %s version %d: %w", agg, r.Event.GetVersion(), err)
		}
		events[i] = e
	}
	return events, nil
}

// versioned is what every loaded aggregate offers.
type versioned interface{ Version() uint64 }

// load returns the cached state of agg or rebuilds it from its history.
func load[A versioned](ctx context.Context, s *Service, partitionKey, agg string, fresh bool, rebuild func([]domain.Event) (A, error)) (A, error) {
	return loadWith(ctx, s, agg, fresh, historyFetch(s, partitionKey, agg, rebuild))
}

// loadWith returns the cached state of agg or fetches it.
func loadWith[A versioned](ctx context.Context, s *Service, agg string, fresh bool, fetch func(context.Context) (A, error)) (A, error) {
	if !fresh {
		if a, ok := s.cache.get(agg).(A); ok {
			return a, nil
		}
	}
	a, err := fetch(ctx)
	if err != nil {
		return a, err
	}
	s.cache.put(agg, a)
	return a, nil
}

// historyFetch returns a fetch that rebuilds agg from its whole history.
func historyFetch[A versioned](s *Service, partitionKey, agg string, rebuild func([]domain.Event) (A, error)) func(context.Context) (A, error) {
	return func(ctx context.Context) (A, error) {
		events, err := s.history(ctx, partitionKey, agg)
		if err != nil {
			var zero A
			return zero, err
		}
		return rebuild(events)
	}
}

// stateRefusal reports whether err is a refusal that depends on the state
// of an aggregate (not on the request alone, nor on a dependency).
func stateRefusal(err error) bool {
	switch domain.ErrorCode(err) {
	case domain.ENotFound, domain.EExists, domain.EForbidden, domain.ENotMember, domain.EMuted,
		domain.EBlocked, domain.EDissolved, domain.ENoRequest, domain.ETooLarge:
		return true
	}
	return false
}

// retry runs attempt until it succeeds, fails with something other than a
// conflict, or MaxAttempts is reached. attempt is told whether it must
// bypass the cache (after a conflict).
//
// A refusal decided on cached state is decided once more on fresh state
// before it is returned: the cache may be behind a change another process
// appended (a mute lifted, a member added, a block removed on another
// gateway), and unlike a stale acceptance, which the append's version check
// catches as a conflict, a stale refusal would otherwise reach the client.
func (s *Service) retry(ctx context.Context, attempt func(fresh bool) (eventstore.AppendResult, error)) (eventstore.AppendResult, error) {
	var last error
	fresh := false
	for i := range s.cfg.MaxAttempts {
		res, err := attempt(fresh)
		if err != nil && !fresh && stateRefusal(err) {
			res, err = attempt(true)
		}
		if !errors.Is(err, domain.ErrConflict) {
			return res, err
		}
		fresh = true
		last = err
		// Back off a little, with jitter, so contenders spread out.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(i, 6)))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return eventstore.AppendResult{}, ctx.Err()
		}
	}
	return eventstore.AppendResult{}, fmt.Errorf("command: gave up after %d conflicting attempts: %w", s.cfg.MaxAttempts, last)
}

// update is the one-call write of a KeepHistory aggregate: load, decide,
// append with the exact expected version, retrying on conflict.
func update[A versioned](ctx context.Context, s *Service, actor Actor, partitionKey, agg string, idem eventstore.IdempotencyKey,
	rebuild func([]domain.Event) (A, error), decide func(A, time.Time) ([]domain.Event, error)) (Result, error) {
	return updateWith(ctx, s, actor, partitionKey, agg, idem, historyFetch(s, partitionKey, agg, rebuild), decide)
}

// updateWith is update with the state fetched by fetch on a cache miss.
func updateWith[A versioned](ctx context.Context, s *Service, actor Actor, partitionKey, agg string, idem eventstore.IdempotencyKey,
	fetch func(context.Context) (A, error), decide func(A, time.Time) ([]domain.Event, error)) (Result, error) {
	res, err := s.retry(ctx, func(fresh bool) (eventstore.AppendResult, error) {
		a, err := loadWith(ctx, s, agg, fresh, fetch)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		now := s.cfg.Now()
		events, err := decide(a, now)
		if err != nil || len(events) == 0 {
			return eventstore.AppendResult{}, err
		}
		envs, err := s.envelopes(actor, agg, now, events)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		return s.store.Append(ctx, eventstore.AppendRequest{
			PartitionKey: partitionKey, IdempotencyKey: idem,
			Streams: []eventstore.StreamAppend{{Aggregate: agg, Expected: eventstore.Exact(a.Version()), KeepHistory: true, Events: envs}},
		})
	})
	if err != nil {
		return Result{}, err
	}
	s.cache.drop(agg) // the next command reloads the new version
	return resultOf(res), nil
}
