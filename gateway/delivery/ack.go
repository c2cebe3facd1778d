package delivery

import (
	"context"
	"sync"
	"time"

	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// maxPendingCursors bounds the cursors acknowledged and not stored yet
// (one per device that acknowledged since the last write). An Ack beyond
// it is kept in memory only: the device's stored cursor stays older, which
// costs re-delivery on its next attachment, never a loss.
const maxPendingCursors = 1 << 18

// cursorWriter stores devices' cursors lazily. An Ack only records the
// highest acknowledged id of the device in memory (mark); the hub's ack
// loop writes every recorded cursor once per Config.AckInterval, all of
// them in pipelines of probeBatch scripts, and a detach writes its device's
// at once (take). So a device's cursor is written at most once per interval
// however fast it acknowledges, and always when it detaches. Cursors are a
// resume hint under at-least-once delivery: a gateway that dies loses at
// most the last interval's acknowledgements, and the device is pushed those
// entries again on its next attachment (clients de-duplicate by event id).
// Each write is ack.lua's max-compare, so writes that race (a flush and a
// detach, two gateways) never move a cursor back. Safe for concurrent use.
type cursorWriter struct {
	h *Hub

	mu      sync.Mutex
	pending map[string]streamid.ID // guarded by mu: cursor key -> highest id not stored yet
}

// mark records id as acknowledged at the cursor key, unless a later id is
// recorded already.
func (w *cursorWriter) mark(key string, id streamid.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.markLocked(key, id)
}

func (w *cursorWriter) markLocked(key string, id streamid.ID) {
	cur, ok := w.pending[key]
	switch {
	case ok && !id.After(cur):
	case ok || len(w.pending) < maxPendingCursors:
		if w.pending == nil {
			w.pending = make(map[string]streamid.ID)
		}
		w.pending[key] = id
	default:
		w.h.m.redisErrors.WithLabelValues("ack").Inc() // dropped: re-delivered on the next attachment
	}
}

// peek returns the id recorded at key, if any: a device that attaches
// again on the same gateway resumes after what it acknowledged there even
// before that was stored.
func (w *cursorWriter) peek(key string) (streamid.ID, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id, ok := w.pending[key]
	return id, ok
}

// take removes and returns the id recorded at key, if any.
func (w *cursorWriter) take(key string) (streamid.ID, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id, ok := w.pending[key]
	delete(w.pending, key)
	return id, ok
}

// flush writes every recorded cursor. A cursor whose write failed is
// recorded again (unless a later Ack recorded a later id meanwhile) for
// the next flush.
func (w *cursorWriter) flush(ctx context.Context) {
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	h := w.h
	keys := make([]string, 0, min(len(batch), probeBatch))
	cmds := make([]*redis.Cmd, 0, cap(keys))
	failed := 0
	write := func() {
		cmds = cmds[:0]
		err := h.pipeline(ctx, func(p redis.Pipeliner) {
			cmds = cmds[:0]
			for _, k := range keys {
				cmds = append(cmds, h.storeCursor(ctx, p, k, batch[k]))
			}
		})
		w.mu.Lock()
		for i, k := range keys {
			if err != nil || cmds[i].Err() != nil {
				failed++
				w.markLocked(k, batch[k])
			}
		}
		w.mu.Unlock()
		keys = keys[:0]
	}
	for k := range batch {
		keys = append(keys, k)
		if len(keys) == probeBatch {
			write()
		}
	}
	if len(keys) > 0 {
		write()
	}
	if failed > 0 {
		h.m.redisErrors.WithLabelValues("ack").Inc()
		h.log.Warn("cursors not stored; retried at the next interval", "cursors", failed)
	}
}

// storeCursor queues ack.lua for the cursor at key: id if that is later
// than the stored one, the TTL refreshed either way.
func (h *Hub) storeCursor(ctx context.Context, p redis.Pipeliner, key string, id streamid.ID) *redis.Cmd {
	return h.scripts.ack.EvalSha(ctx, p, []string{key}, id.String(), inbox.CursorTTL.Milliseconds())
}

// ackLoop writes the recorded cursors every Config.AckInterval until ctx
// ends, and once more then. A write is not cut short by ctx.
func (h *Hub) ackLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.AckInterval)
	defer t.Stop()
	for done := false; !done; {
		select {
		case <-t.C:
		case <-ctx.Done():
			done = true
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		h.cursors.flush(fctx)
		cancel()
	}
}
