package delivery

import (
	"context"
	"sync"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// ackBatcher stores cursors with group commit: the first Ack to arrive
// while no write is in flight writes every pending cursor in one pipeline
// (the highest id per cursor), so concurrent acknowledgements of many
// devices share round trips instead of paying one each.
type ackBatcher struct {
	h *Hub

	mu       sync.Mutex
	pending  []*ackReq // guarded by mu
	flushing bool      // guarded by mu: a write is in flight
}

type ackReq struct {
	key  string
	id   streamid.ID
	done chan error // capacity 1
}

// commit stores id as the cursor at key (forward only) and waits for it.
func (b *ackBatcher) commit(ctx context.Context, key string, id streamid.ID) error {
	r := &ackReq{key: key, id: id, done: make(chan error, 1)}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	lead := !b.flushing
	b.flushing = true
	b.mu.Unlock()
	if lead {
		b.flushOnce()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flushOnce writes the pending cursors. Cursors that arrived meanwhile are
// written by a goroutine of their own (one per round, not per ack), so the
// leader's Ack waits for one round trip only.
func (b *ackBatcher) flushOnce() {
	b.mu.Lock()
	batch := b.pending
	b.pending = nil
	b.mu.Unlock()
	b.write(batch)
	b.mu.Lock()
	more := len(b.pending) > 0
	b.flushing = more
	b.mu.Unlock()
	if more {
		go b.flushOnce()
	}
}

// write stores the highest id of each cursor in batch, in one pipeline that
// a caller's cancellation does not cut short, and answers every request.
func (b *ackBatcher) write(batch []*ackReq) {
	h := b.h
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	highest := make(map[string]streamid.ID, len(batch))
	keys := make([]string, 0, len(batch))
	for _, r := range batch {
		cur, ok := highest[r.key]
		if !ok {
			keys = append(keys, r.key)
		}
		if !ok || r.id.After(cur) {
			highest[r.key] = r.id
		}
	}
	cmds := make(map[string]*redis.Cmd, len(keys))
	err := h.pipeline(ctx, func(p redis.Pipeliner) {
		for _, k := range keys {
			cmds[k] = h.scripts.ack.EvalSha(ctx, p, []string{k}, highest[k].String(), inbox.CursorTTL.Milliseconds())
		}
	})
	for _, r := range batch {
		rerr := err
		if rerr == nil {
			rerr = cmds[r.key].Err()
		}
		if rerr != nil {
			h.m.redisErrors.WithLabelValues("ack").Inc()
			rerr = domain.Errorf(domain.EUnavailable, "delivery: storing cursor %s: %w", r.key, rerr)
		}
		r.done <- rerr
	}
}
