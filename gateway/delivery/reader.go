package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// readQueue is the FIFO of devices waiting for a read. A device is in it at
// most once (Device.queued).
type readQueue struct {
	mu    sync.Mutex
	items []*Device     // guarded by mu: items[head:] are queued
	head  int           // guarded by mu
	ready chan struct{} // capacity 1: the queue may be non-empty
}

func (q *readQueue) push(d *Device) {
	q.mu.Lock()
	q.items = append(q.items, d)
	q.mu.Unlock()
	q.signal()
}

func (q *readQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take removes up to max devices from the head of the queue and returns
// them in buf.
func (q *readQueue) take(buf []*Device, max int) []*Device {
	q.mu.Lock()
	n := min(max, len(q.items)-q.head)
	buf = append(buf[:0], q.items[q.head:q.head+n]...)
	clear(q.items[q.head : q.head+n])
	q.head += n
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > len(q.items)/2: // keep the array from growing under steady load
		m := copy(q.items, q.items[q.head:])
		clear(q.items[m:])
		q.items, q.head = q.items[:m], 0
	}
	more := len(q.items) > q.head
	q.mu.Unlock()
	if more {
		q.signal() // wake another reader for the rest
	}
	return buf
}

// readReq is one device's read in a batch.
type readReq struct {
	d     *Device
	from  streamid.ID
	count int
	check bool // check the window after reading
	cmd   *readCmd
	// anchor is an echo the read acknowledged as the device's first
	// cursor, stored after the read (skipEcho); zero if none.
	anchor streamid.ID
}

// readCmd is one XRANGE (and XINFO) shared by the devices of one user that
// read from the same position.
type readCmd struct {
	key   string
	from  streamid.ID
	count int
	check bool
	xr    *redis.XMessageSliceCmd
	info  *redis.XInfoStreamCmd
}

// readLoop takes queued devices in batches and reads them until ctx ends.
func (h *Hub) readLoop(ctx context.Context) {
	bo := backoff{min: 50 * time.Millisecond, max: 2 * time.Second}
	var buf []*Device
	for {
		buf = h.queue.take(buf, readBatch)
		if len(buf) == 0 {
			select {
			case <-h.queue.ready:
				continue
			case <-ctx.Done():
				return
			}
		}
		if err := h.read(ctx, buf); err != nil {
			if ctx.Err() != nil {
				return
			}
			h.m.redisErrors.WithLabelValues("read").Inc()
			h.log.Warn("reading inboxes failed; retrying", "devices", len(buf), "err", err)
			if !sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		bo.reset()
	}
}

// read reads the inboxes of devs in one round trip and pushes what it
// finds. Devices whose read failed are queued again and the error returned.
func (h *Hub) read(ctx context.Context, devs []*Device) error {
	reqs := make([]readReq, 0, len(devs))
	for _, d := range devs {
		if r, ok := h.prepare(d); ok {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) == 0 {
		return nil
	}
	type shareKey struct {
		key   string
		from  streamid.ID
		count int
		check bool
	}
	shared := make(map[shareKey]*readCmd, len(reqs))
	cmds := make([]*readCmd, 0, len(reqs))
	for i := range reqs {
		r := &reqs[i]
		k := shareKey{r.d.inboxKey, r.from, r.count, r.check}
		c := shared[k]
		if c == nil {
			c = &readCmd{key: k.key, from: k.from, count: k.count, check: k.check}
			shared[k] = c
			cmds = append(cmds, c)
		}
		r.cmd = c
	}
	err := h.pipeline(ctx, func(p redis.Pipeliner) {
		for _, c := range cmds {
			c.xr = p.XRangeN(ctx, c.key, rangeAfter(c.from), "+", int64(c.count))
			if c.check {
				// After the XRANGE: if nothing after from was deleted by the
				// time of the XINFO, nothing was before the XRANGE either.
				c.info = p.XInfoStream(ctx, c.key)
			}
		}
	})
	var failed []*Device
	var firstErr error
	for i := range reqs {
		r := &reqs[i]
		rerr := err
		if rerr == nil {
			rerr = r.cmd.err()
		}
		if rerr != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("delivery: reading %s: %w", r.cmd.key, rerr)
			}
			h.requeue(r.d)
			continue
		}
		if !h.deliver(r) {
			failed = append(failed, r.d)
		} else if !r.anchor.IsZero() {
			h.anchorCursor(ctx, r.d.cursorKey, r.anchor)
		}
	}
	for _, d := range failed {
		h.m.sinkFailures.Inc()
		h.log.Info("detaching a device whose connection refused a push", "user", d.user, "device", d.id)
		h.detach(ctx, d, false)
	}
	return firstErr
}

// err returns the read's error; a missing stream is no error.
func (c *readCmd) err() error {
	if err := c.xr.Err(); err != nil {
		return err
	}
	if c.info != nil && c.info.Err() != nil && !noSuchKey(c.info.Err()) {
		return c.info.Err()
	}
	return nil
}

// lost reports whether entries after the read's start may have left the
// inbox (see windowLost).
func (c *readCmd) lost() bool {
	return c.info != nil && c.info.Err() == nil && windowLost(c.info.Val(), c.from)
}

// windowLost reports whether entries after pos may have been removed from
// the stream info describes. Trimming (XADD MAXLEN, XTRIM) removes the
// oldest entries and does not move max-deleted-entry-id (only XDEL does, on
// Redis 7.0), so: entries were removed at all (entries-added above length)
// and pos is before the first entry left, or XDEL removed one after pos.
// When pos itself was the last entry removed nothing after it was lost, but
// that cannot be told apart: the answer errs towards a needless sync, never
// towards a silent gap. The zero position (read from the oldest) loses
// nothing.
func windowLost(info *redis.XInfoStream, pos streamid.ID) bool {
	if pos.IsZero() {
		return false
	}
	if maxDeleted, err := streamid.Parse(info.MaxDeletedEntryID); err == nil && maxDeleted.After(pos) {
		return true
	}
	if info.EntriesAdded <= info.Length {
		return false // nothing was ever removed
	}
	first, err := streamid.Parse(info.FirstEntry.ID)
	if info.Length == 0 || err != nil {
		// Everything was removed: whatever came after pos is gone.
		first, err = streamid.Parse(info.LastGeneratedID)
	}
	return err == nil && first.After(pos)
}

// prepare marks d as being read and returns its read; false if d is not to
// be read (detached, or paused by MaxInFlight).
func (h *Hub) prepare(d *Device) (readReq, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached {
		d.queued = false
		return readReq{}, false
	}
	room := h.cfg.MaxInFlight - len(d.inflight)
	if room <= 0 {
		d.paused, d.queued = true, false
		return readReq{}, false
	}
	d.reading, d.again = true, false
	return readReq{d: d, from: d.pos, count: min(h.cfg.PageSize, room), check: d.behind && !d.pos.IsZero()}, true
}

// requeue puts a device whose read failed back in the queue.
func (h *Hub) requeue(d *Device) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reading = false
	if d.detached {
		d.queued = false
		return
	}
	h.queue.push(d)
}

// deliver pushes the entries of r's read to its device, in order, and
// decides whether the device is read again. It returns false if the sink
// refused a push (the caller detaches the device).
func (h *Hub) deliver(r *readReq) bool {
	d := r.d
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reading = false
	if d.detached {
		d.queued = false
		return true
	}
	if r.cmd.lost() {
		// Entries after the position left the window: the client syncs
		// them by conversation seq, and reading goes on from the oldest
		// entry left (all of them after r.from).
		h.m.syncRequired.Inc()
		if err := d.sink.SyncRequired(r.from.String()); err != nil {
			d.queued = false
			return false
		}
		d.pos, d.behind = streamid.ID{}, false
		h.queue.push(d)
		return true
	}
	msgs := r.cmd.xr.Val()
	now := h.cfg.Now()
	pushedNow := 0
	for _, msg := range msgs {
		id, err := streamid.Parse(msg.ID)
		if err != nil || !id.After(d.pos) {
			continue // cannot happen: XRANGE ids are well-formed and after the start
		}
		e, err := inbox.DecodeEntry(msg.Values)
		if err != nil {
			h.m.badEntries.Inc()
			h.log.Error("skipping a malformed inbox entry", "user", d.user, "inbox_id", msg.ID, "err", err)
			d.pos = id
			continue
		}
		sent, err := h.push(d, id, msg.ID, &e, now)
		if err != nil {
			d.queued = false
			h.m.deliveries.Add(float64(pushedNow))
			return false
		}
		if sent {
			pushedNow++
		}
	}
	h.m.deliveries.Add(float64(pushedNow))
	r.anchor = d.takeAnchor()
	full := len(msgs) == r.count
	if full {
		d.behind = true
	} else {
		d.behind, d.caughtUp = false, true
	}
	switch {
	case len(d.inflight) >= h.cfg.MaxInFlight:
		d.paused, d.queued = true, false
	case full || d.again:
		h.queue.push(d)
	default:
		d.queued = false
	}
	return true
}

// push gives d the inbox entry e with id (inboxID in text) and moves its
// position to it, unless e is the device's own echo (skipEcho), which
// moves the position without a push; the caller holds d.mu and pushes in
// inbox order. It reports whether it pushed, and returns the sink's
// refusal.
func (h *Hub) push(d *Device, id streamid.ID, inboxID string, e *inbox.Entry, now time.Time) (bool, error) {
	if e.Type == messageSent && actedBy(e.Envelope, string(d.user), string(d.id)) {
		h.skipEcho(d, id)
		return false, nil
	}
	del := Delivery{InboxID: inboxID, EventID: e.EventID, Type: e.Type, Envelope: completeEnvelope(e.Envelope, e.Version, e.Seq)}
	if err := d.sink.Push(del); err != nil {
		return false, err
	}
	d.pos = id
	if len(d.inflight) == 0 {
		d.oldestSent = now
	}
	d.inflight = append(d.inflight, pushed{id: id, d: del, first: now, sent: now})
	if !d.caughtUp {
		h.m.catchUp.Inc()
	} else if at, ok := occurredAt(del.Envelope); ok {
		h.m.latency.Observe(max(now.Sub(at), 0).Seconds())
	}
	return true, nil
}

// messageSent is the event type the device that sent it is not pushed.
const messageSent = "MessageSent"

// skipEcho passes over the inbox entry id, a message the device sent
// itself (its send response carried the event id and seq): the position
// moves past it and the entry counts as acknowledged with what precedes
// it. Behind a push in flight it is acknowledged with that push (Ack
// moves the cursor through it); with nothing in flight it is acknowledged
// at once, so a device that only sends still moves its cursor. A device
// without a stored cursor gets it stored at once, as by its first Ack:
// the reader that called push does that after releasing the device
// (takeAnchor). The caller holds d.mu.
func (h *Hub) skipEcho(d *Device, id streamid.ID) {
	d.pos = id
	h.m.echoes.Inc()
	if n := len(d.inflight); n > 0 {
		d.inflight[n-1].through = id
		return
	}
	if d.unanchored {
		d.unanchored, d.anchor = false, id
		return
	}
	h.cursors.mark(d.cursorKey, id)
}
