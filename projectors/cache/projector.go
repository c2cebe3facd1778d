package cache

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/replwait"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

// Name is the projector's name.
const Name = "cache"

// Projector is the cache projector. It is safe for concurrent use by the
// owners of different partitions; one partition is applied by one owner at a
// time (the Projector contract).
type Projector struct {
	rdb  redis.UniversalClient
	cfg  Config
	keys cachekeys.Keys
	ckpt *redisckpt.Store
}

var (
	_ projectors.Projector    = (*Projector)(nil)
	_ projectors.Checkpointer = (*Projector)(nil)
	_ projectors.Lingering    = (*Projector)(nil)
)

// New returns the cache projector on rdb (the caller keeps ownership of the
// client). It fails on an invalid configuration.
func New(rdb redis.UniversalClient, cfg Config) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("cache: projector needs a Redis client")
	}
	return &Projector{rdb: rdb, cfg: cfg, keys: cachekeys.New(cfg.Prefix),
		ckpt: redisckpt.New(rdb, cfg.Prefix, Name)}, nil
}

// Name returns "cache".
func (p *Projector) Name() string { return Name }

// Linger returns Config.Linger (projectors.Lingering).
func (p *Projector) Linger() time.Duration { return p.cfg.Linger }

// The projector's own keys, besides the model (internal/cachekeys):
//
//	<prefix>proj:{cache:pN}:ckpt   hash: pos (checkpoint), token (fencing token) of partition N (redisckpt)
//	<prefix>quarantine:cache       stream: quarantined entries
func (p *Projector) quarantineKey() string { return p.cfg.Prefix + "quarantine:" + Name }

// Claim records token as the partition's fencing token and returns its
// checkpoint. It fails with projectors.ErrFenced if a newer token was
// claimed.
func (p *Projector) Claim(ctx context.Context, partition int, token uint64) (eventstore.Position, error) {
	return p.ckpt.Claim(ctx, partition, token)
}

// Checkpoint returns the partition's checkpoint without claiming it.
func (p *Projector) Checkpoint(ctx context.Context, partition int) (eventstore.Position, error) {
	return p.ckpt.Checkpoint(ctx, partition)
}

// Apply writes the batch's effects on the model and moves the checkpoint
// from b.After to b.To (see the package comment). It returns an error
// wrapping projectors.ErrFenced or projectors.ErrCheckpointMoved, having
// written nothing, when the batch may not be applied; any other error leaves
// the checkpoint at b.After, and the runner applies the batch again.
func (p *Projector) Apply(ctx context.Context, b *projectors.Batch) error {
	pipe := p.rdb.Pipeline()
	for i := range b.Events {
		r := &b.Events[i]
		_, ev, err := r.Domain()
		if err != nil {
			p.quarantine(ctx, pipe, r.Partition, r.Position, err.Error(), r.Raw)
			continue
		}
		p.write(ctx, pipe, r.Event.GetAggregate(), ev)
	}
	for _, s := range b.Skipped {
		reason := "undecodable"
		if s.Err != nil {
			reason = s.Err.Error()
		}
		p.quarantine(ctx, pipe, s.Partition, s.Position, reason, s.Raw)
	}
	if pipe.Len() > 0 {
		// Only the check first: a fenced batch writes nothing. A batch
		// without writes (messages only, the common case) needs no
		// separate check: the move below checks too.
		if err := p.moveCheckpoint(ctx, b, true); err != nil {
			return err
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			return fmt.Errorf("cache: writing partition %d: %w", b.Partition, err)
		}
		if err := p.waitReplicated(ctx, cmds); err != nil {
			return fmt.Errorf("cache: partition %d: %w", b.Partition, err)
		}
	}
	return p.moveCheckpoint(ctx, b, false)
}

// waitReplicated returns nil once the keys cmds wrote are on
// Config.WaitReplicas replicas (at once without WaitReplicas): only then may
// the checkpoint pass them (internal/replwait).
func (p *Projector) waitReplicated(ctx context.Context, cmds []redis.Cmder) error {
	if p.cfg.WaitReplicas <= 0 {
		return nil
	}
	keys := make([]string, 0, len(cmds))
	for _, c := range cmds {
		if args := c.Args(); len(args) > 1 {
			if k, ok := args[1].(string); ok {
				keys = append(keys, k)
			}
		}
	}
	if err := replwait.Wait(ctx, p.rdb, keys, p.cfg.WaitReplicas, p.cfg.WaitTimeout); err != nil {
		return domain.Errorf(domain.EUnavailable, "cache: %w", err)
	}
	return nil
}

// moveCheckpoint checks b's token and After and, unless check, moves the
// checkpoint to b.To (redisckpt.Store.Advance).
func (p *Projector) moveCheckpoint(ctx context.Context, b *projectors.Batch, check bool) error {
	return p.ckpt.Advance(ctx, b.Partition, b.Token, b.After, b.To, check)
}

func (p *Projector) quarantine(ctx context.Context, pipe redis.Pipeliner, partition int, pos eventstore.Position, reason string, raw []byte) {
	pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.quarantineKey(), MaxLen: p.cfg.QuarantineLen, Approx: true, Values: []any{
		"partition", strconv.Itoa(partition), "position", pos.String(), "reason", reason, "raw", raw,
	}})
}

var _ projectors.Quarantiner = (*Projector)(nil)

// Quarantine records the batch's only entry in the quarantine stream with
// cause as the reason and moves the checkpoint from b.After to b.To, with
// Apply's checks (projectors.Quarantiner).
func (p *Projector) Quarantine(ctx context.Context, b *projectors.Batch, cause error) error {
	if err := p.moveCheckpoint(ctx, b, true); err != nil {
		return err
	}
	pipe := p.rdb.Pipeline()
	for _, r := range b.Events {
		p.quarantine(ctx, pipe, b.Partition, r.Position, "apply failed: "+cause.Error(), r.Raw)
	}
	for _, s := range b.Skipped {
		p.quarantine(ctx, pipe, b.Partition, s.Position, "apply failed: "+cause.Error(), s.Raw)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cache: quarantining in partition %d: %w", b.Partition, err)
	}
	return p.moveCheckpoint(ctx, b, false)
}
