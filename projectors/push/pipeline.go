package push

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/push/webhook"
)

// pending is a batch applied but not settled yet: the checkpoint may move
// to to once the sender settled batch (0: the batch submitted nothing).
type pending struct {
	to    eventstore.Position
	batch webhook.Batch
}

// pipeline is one claimed partition's batches between its stored
// checkpoint and the last batch applied, in log order. Apply appends to it;
// its advancer, a goroutine that runs while batches are pending, waits for
// the oldest to settle and moves the stored checkpoint past it.
type pipeline struct {
	partition int
	token     uint64

	// ckptMu serialises the pipeline's checkpoint scripts and guards
	// stored, so that a fencing check never races an advance.
	ckptMu sync.Mutex
	stored eventstore.Position // the checkpoint as stored

	mu      sync.Mutex          // guards every field below
	tail    eventstore.Position // To of the last batch applied; stored when none is pending
	queue   []pending           // oldest first
	err     error               // why the advancer stopped for good
	changed chan struct{}       // closed and replaced when queue shrinks or err is set
	cancel  context.CancelFunc  // stops the running advancer; nil when none runs
	done    chan struct{}       // closed when the running advancer returned
}

func newPipeline(partition int, token uint64, pos eventstore.Position) *pipeline {
	return &pipeline{partition: partition, token: token, stored: pos, tail: pos, changed: make(chan struct{})}
}

// Pending returns the batches applied and not settled yet, over every
// partition of this process (the checkpoint waits for them).
func (p *Projector) Pending() int {
	p.mu.Lock()
	pipes := make([]*pipeline, 0, len(p.pipes))
	for _, pl := range p.pipes {
		pipes = append(pipes, pl)
	}
	p.mu.Unlock()
	n := 0
	for _, pl := range pipes {
		pl.mu.Lock()
		n += len(pl.queue)
		pl.mu.Unlock()
	}
	return n
}

// follows reports whether b is the next batch of pl: same token, After at
// pl's last batch.
func (pl *pipeline) follows(b *projectors.Batch) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.token == b.Token && pl.tail == b.After
}

// pipeline returns the pipeline that b continues: the partition's when b
// follows its last batch. Otherwise (an Apply with no Claim in this
// process, or another token) it checks b against the stored checkpoint and
// replaces the partition's pipeline with an empty one at b.After.
func (p *Projector) pipeline(ctx context.Context, b *projectors.Batch) (*pipeline, error) {
	p.mu.Lock()
	pl := p.pipes[b.Partition]
	p.mu.Unlock()
	if pl != nil && pl.follows(b) {
		return pl, nil
	}
	if err := p.ckpt.Advance(ctx, b.Partition, b.Token, b.After, b.To, true); err != nil {
		return nil, err
	}
	p.drop(b.Partition)
	return p.install(b.Partition, b.Token, b.After), nil
}

// install starts an empty pipeline of the partition at pos.
func (p *Projector) install(partition int, token uint64, pos eventstore.Position) *pipeline {
	pl := newPipeline(partition, token, pos)
	p.mu.Lock()
	p.pipes[partition] = pl
	p.mu.Unlock()
	return pl
}

// drop forgets the partition's pipeline and returns once its advancer
// stopped: its pending batches are applied again by whoever resumes from
// the stored checkpoint.
func (p *Projector) drop(partition int) {
	p.mu.Lock()
	pl := p.pipes[partition]
	delete(p.pipes, partition)
	p.mu.Unlock()
	if pl == nil {
		return
	}
	pl.mu.Lock()
	cancel, done := pl.cancel, pl.done
	pl.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// admit returns the pipeline b continues once it has room for b. It
// returns the advancer's failure, if any, instead.
func (p *Projector) admit(ctx context.Context, b *projectors.Batch) (*pipeline, error) {
	pl, err := p.pipeline(ctx, b)
	if err != nil {
		return nil, err
	}
	for {
		pl.mu.Lock()
		if err := pl.err; err != nil {
			pl.mu.Unlock()
			return nil, err
		}
		if len(pl.queue) < p.cfg.MaxPending {
			pl.mu.Unlock()
			break
		}
		p.startAdvancer(ctx, pl)
		ch := pl.changed
		pl.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return pl, nil
}

// fence checks that pl's token is still the partition's and its
// checkpoint the stored one, before a batch sends anything.
func (p *Projector) fence(ctx context.Context, pl *pipeline) error {
	pl.ckptMu.Lock()
	defer pl.ckptMu.Unlock()
	return p.ckpt.Advance(ctx, pl.partition, pl.token, pl.stored, pl.stored, true)
}

// push appends a batch applied to pl, to be checkpointed once settled.
func (p *Projector) push(ctx context.Context, pl *pipeline, b pending) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.queue = append(pl.queue, b)
	pl.tail = b.to
	p.startAdvancer(ctx, pl)
}

// startAdvancer starts pl's advancer under ctx unless one runs. pl.mu is
// held.
func (p *Projector) startAdvancer(ctx context.Context, pl *pipeline) {
	if pl.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	pl.cancel, pl.done = cancel, done
	go func() {
		defer close(done)
		defer cancel()
		p.advance(ctx, pl)
	}()
}

// advance moves pl's stored checkpoint past its pending batches as they
// settle, oldest first, until none is pending, ctx ends (the batches stay
// pending: the next Apply starts an advancer again) or a checkpoint write
// fails for good (pl.err, returned by the next Apply).
func (p *Projector) advance(ctx context.Context, pl *pipeline) {
	for {
		pl.mu.Lock()
		if len(pl.queue) == 0 {
			pl.cancel, pl.done = nil, nil
			pl.mu.Unlock()
			return
		}
		oldest := pl.queue[0].batch
		pl.mu.Unlock()
		var err error
		if oldest != 0 {
			err = p.sender.Wait(ctx, oldest)
		}
		if err == nil {
			err = p.moveSettled(ctx, pl)
		}
		if err != nil {
			pl.mu.Lock()
			if ctx.Err() == nil {
				pl.err = stuck(pl.partition, err)
				close(pl.changed)
				pl.changed = make(chan struct{})
			}
			pl.cancel, pl.done = nil, nil
			pl.mu.Unlock()
			return
		}
	}
}

// moveSettled moves the stored checkpoint to the last pending batch that
// is settled with all those before it (the oldest is), in one write, and
// takes them off the queue.
func (p *Projector) moveSettled(ctx context.Context, pl *pipeline) error {
	pl.mu.Lock()
	n := 1 // the oldest is settled
	for n < len(pl.queue) && (pl.queue[n].batch == 0 || p.sender.Settled(pl.queue[n].batch)) {
		n++
	}
	to := pl.queue[n-1].to
	pl.mu.Unlock()

	pl.ckptMu.Lock()
	defer pl.ckptMu.Unlock()
	if err := p.write(ctx, pl, to); err != nil {
		return err
	}
	pl.stored = to
	pl.mu.Lock()
	pl.queue = pl.queue[n:]
	close(pl.changed)
	pl.changed = make(chan struct{})
	pl.mu.Unlock()
	return nil
}

// Backoff of a checkpoint write that fails transiently.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// write moves the stored checkpoint of pl to to, retrying transient
// failures (a Redis failover) until ctx ends. pl.ckptMu is held.
func (p *Projector) write(ctx context.Context, pl *pipeline, to eventstore.Position) error {
	backoff := firstBackoff
	for {
		err := p.ckpt.Advance(ctx, pl.partition, pl.token, pl.stored, to, false)
		if err == nil || !projectors.Transient(err) || ctx.Err() != nil {
			return err
		}
		p.cfg.Logger.Warn("push checkpoint write failed; retrying", "partition", pl.partition, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// stuck is the error the next Apply returns after the advancer of the
// partition failed with err: err itself when fenced or the checkpoint
// moved, otherwise err wrapped with projectors.ErrCheckpointMoved, so that
// the runner claims again and resumes from the stored checkpoint.
func stuck(partition int, err error) error {
	if errors.Is(err, projectors.ErrFenced) || errors.Is(err, projectors.ErrCheckpointMoved) {
		return err
	}
	return fmt.Errorf("push: checkpoint of partition %d cannot follow its settled batches (%w): %w", partition, err, projectors.ErrCheckpointMoved)
}
