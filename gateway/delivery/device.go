package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// Sink is a device's connection as delivery sees it. Its methods must not
// block for long: the session queues what it is given and returns; a full
// queue or a closed connection returns an error, and the hub then detaches
// the device (uncleanly: the route is left to expire) and stops calling it.
// The hub never calls one Sink's methods concurrently.
type Sink interface {
	// Push sends an inbox entry to the client.
	Push(d Delivery) error
	// Signal sends an ephemeral signal to the client.
	Signal(s Signal) error
	// SyncRequired tells the client that inbox entries after cursor are no
	// longer in the inbox: it must sync history from the read model by
	// conversation seq. cursor is the device's stored cursor on attach, ""
	// for a device without one, or the last inbox id pushed to it when it
	// fell behind the window during its session. Pushes that follow
	// continue from the oldest entry still in the inbox (or, for a device
	// without a cursor, from the inbox's end).
	SyncRequired(cursor string) error
}

// Replaceable is implemented by sinks that want to hear when a newer
// attachment of the same device took over, on this hub or on another
// gateway's (which tells this one through its signal channel): Replaced is
// then called once, without the hub's locks held, and the old attachment
// receives nothing more. It must not block.
type Replaceable interface {
	Replaced()
}

// AckObserver is implemented by sinks that want to hear how long pushes
// waited for their acknowledgement: for every push an Ack takes out of
// flight, Acked is called once, from Ack with the device's lock held,
// with the time since the entry was first pushed to the sink (a resend
// does not restart it). It must not block.
type AckObserver interface {
	Acked(latency time.Duration)
}

// Delivery is one inbox entry pushed to a device.
type Delivery struct {
	// InboxID is the entry's id in the user's inbox: what the client
	// acknowledges (Device.Ack).
	InboxID string
	// EventID is the event's ULID; the client de-duplicates on it (an event
	// may appear twice in an inbox, under two inbox ids).
	EventID [16]byte
	// Type is the event type ("MessageSent").
	Type string
	// Envelope is the encoded mpim.v1.Event with version and seq filled in.
	// It must not be modified: a resend pushes the same bytes.
	Envelope []byte
	// Resend is true when the entry was pushed before in this attachment and
	// not acknowledged within the ack timeout.
	Resend bool
}

// pushed is a push waiting for its acknowledgement.
type pushed struct {
	id    streamid.ID
	d     Delivery
	first time.Time // first push
	sent  time.Time // last (re)send
	// through is the last of the device's own echoes skipped right after
	// this push (skipEcho), zero if none: acknowledging the push
	// acknowledges them too.
	through streamid.ID
}

// Device is one attached device: its read position, its unacknowledged
// pushes and its Sink. It is created by Hub.Attach and ends with Detach.
type Device struct {
	hub       *Hub
	user      domain.UserID
	id        domain.DeviceID
	sink      Sink
	inboxKey  string
	cursorKey string

	mu         sync.Mutex  // guards the fields below and serializes the calls of sink
	pos        streamid.ID // the last entry read (pushed); reads continue after it
	inflight   []pushed    // pushed, not acknowledged, in inbox order
	oldestSent time.Time   // at most the earliest sent of inflight
	queued     bool        // in the read queue, being read, or still attaching
	reading    bool        // a reader holds the device
	again      bool        // woken while being read: read once more
	paused     bool        // MaxInFlight reached: not read until acks
	behind     bool        // the next read checks the inbox window
	unanchored bool        // no cursor was stored when it attached: its first ack is stored at once (anchorCursor)
	anchor     streamid.ID // an echo that was its first acknowledgement, for the reader to store (takeAnchor); zero if none
	caughtUp   bool        // a read found the inbox's end since attaching
	detached   bool        // no more pushes
	replaced   bool        // a newer attachment of the same device took over
	routed     bool        // its attach wrote its route (see replacedElsewhere)
	routeGone  bool        // the clean detach's route deletion ran
}

// User returns the device's user id.
func (d *Device) User() domain.UserID { return d.user }

// ID returns the device id.
func (d *Device) ID() domain.DeviceID { return d.id }

// maxDeviceBytes bounds a device id.
const maxDeviceBytes = 128

// validDevice reports whether id can name a device: 1 to 128 printable
// ASCII bytes without spaces (it is a hash field and a key suffix).
func validDevice(id domain.DeviceID) bool {
	if id == "" || len(id) > maxDeviceBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Attach attaches a device of user to this gateway and returns it. In one
// round trip it writes the device's presence route and reads its cursor and
// its inbox's state; then it decides where reading starts: after the
// cursor; or, when the cursor is older than the inbox window, from the
// oldest entry after sink.SyncRequired(cursor); or, for a device without a
// cursor, at the inbox's end after sink.SyncRequired(""). It returns as soon
// as the device is queued for reading: catch-up runs in the hub's readers
// (Run) and continues into live delivery without a gap; the caller
// acknowledges pushes on the returned Device meanwhile.
//
// Attaching a device that is attached to this hub already replaces the old
// attachment, which stops receiving (its Ack and Detach do nothing); its
// sink hears of it if it implements Replaceable. Attach
// fails with a domain EInvalid error for a malformed user or device id or a
// nil sink, EUnavailable when Redis fails, and with the sink's error if
// SyncRequired fails (the device is then detached).
func (h *Hub) Attach(ctx context.Context, user domain.UserID, device domain.DeviceID, sink Sink) (*Device, error) {
	switch {
	case !user.Valid():
		return nil, domain.Errorf(domain.EInvalid, "delivery: invalid user id %q", user)
	case !validDevice(device):
		return nil, domain.Errorf(domain.EInvalid, "delivery: invalid device id %q", device)
	case sink == nil:
		return nil, domain.Errorf(domain.EInvalid, "delivery: attaching device %s without a sink", device)
	}
	d := &Device{hub: h, user: user, id: device, sink: sink, inboxKey: h.keys.Inbox(user),
		cursorKey: h.keys.Cursor(user, device), queued: true}
	if old := h.register(d); old != nil {
		old.mu.Lock()
		old.replaced, old.detached, old.inflight = true, true, nil
		old.mu.Unlock()
		if r, ok := old.sink.(Replaceable); ok {
			r.Replaced()
		}
	}
	now := h.cfg.Now()
	var (
		route, announced *redis.Cmd
		cur              *redis.StringCmd
		info             *redis.XInfoStreamCmd
	)
	err := h.pipeline(ctx, func(p redis.Pipeliner) {
		route = h.writeRoute(ctx, p, d, now, "a")
		announced = h.announce(ctx, p, d, now, false) // before the reads: see announce
		cur = p.Get(ctx, d.cursorKey)
		info = p.XInfoStream(ctx, d.inboxKey)
	})
	if err == nil {
		err = cmp.Or(route.Err(), announced.Err())
	}
	if err == nil && cur.Err() != nil && !errors.Is(cur.Err(), redis.Nil) {
		err = cur.Err()
	}
	if err == nil && info.Err() != nil && !noSuchKey(info.Err()) {
		err = info.Err()
	}
	if err != nil {
		h.m.redisErrors.WithLabelValues("attach").Inc()
		d.mu.Lock()
		d.detached = true
		d.mu.Unlock()
		h.unregister(d)
		return nil, domain.Errorf(domain.EUnavailable, "delivery: attaching device %s of %s: %w", device, user, err)
	}
	d.mu.Lock()
	d.routed = true
	d.mu.Unlock()
	var last streamid.ID
	if info.Err() == nil {
		last, _ = streamid.Parse(info.Val().LastGeneratedID)
	}
	cursor, err := streamid.Parse(cur.Val())
	hasCursor := err == nil
	if p, ok := h.cursors.peek(d.cursorKey); ok && (!hasCursor || p.After(cursor)) {
		cursor, hasCursor = p, true // acknowledged on this gateway, not stored yet
	}
	if prev, _ := route.Val().(string); prev != "" && prev != h.cfg.GatewayID {
		h.replaceElsewhere(ctx, prev, d)
	}

	d.mu.Lock()
	if d.detached { // replaced by a concurrent Attach of the same device
		d.mu.Unlock()
		return d, nil
	}
	needSync, syncCursor := false, ""
	switch {
	case !hasCursor:
		needSync, d.pos = true, last
	case info.Err() == nil && windowLost(info.Val(), cursor):
		needSync, syncCursor = true, cursor.String()
	default:
		d.pos = cursor
	}
	d.behind = !d.pos.IsZero()
	if needSync {
		h.m.syncRequired.Inc()
		if err := d.sink.SyncRequired(syncCursor); err != nil {
			d.mu.Unlock()
			h.m.sinkFailures.Inc()
			h.detach(ctx, d, false)
			return nil, fmt.Errorf("delivery: device %s of %s: %w", device, user, err)
		}
	}
	d.unanchored = !hasCursor
	h.queue.push(d)
	d.mu.Unlock()
	return d, nil
}

// anchorCursor stores the first acknowledgement of a device without a
// stored cursor at once, not at the next AckInterval: a gateway that died
// before it was stored would let the device come back as new again
// (starting at the inbox's end, told to sync history), past the entries
// that arrived while it was away. A failed write is left to the ack loop.
func (h *Hub) anchorCursor(ctx context.Context, key string, pos streamid.ID) {
	var cmd *redis.Cmd
	err := h.pipeline(ctx, func(p redis.Pipeliner) { cmd = h.storeCursor(ctx, p, key, pos) })
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		h.cursors.mark(key, pos)
	}
}

// takeAnchor returns and clears the echo skipEcho left to be stored as
// the device's first cursor; zero if none. The caller holds d.mu and
// stores it (anchorCursor) after releasing it.
func (d *Device) takeAnchor() streamid.ID {
	a := d.anchor
	d.anchor = streamid.ID{}
	return a
}

// Ack acknowledges inboxID and every entry pushed before it: they are not
// resent, and the device's stored cursor will move to inboxID unless it is
// there or later already (the cursor only moves forward). Ack touches only
// memory: the cursor is stored within Config.AckInterval, together with
// other devices' (the highest id acknowledged in the interval), and when
// the device detaches. Acknowledging an id after the device's read
// position (not pushed in this attachment), or acknowledging on a detached
// device, does nothing. Ack fails only with a domain EInvalid error, for a
// malformed id. Acknowledging an id again, or an older one, records it
// again: a no-op unless an earlier write of the cursor was lost. A sink
// that implements AckObserver hears how long each acknowledged push
// waited.
func (d *Device) Ack(ctx context.Context, inboxID string) error {
	id, err := streamid.Parse(inboxID)
	if err != nil {
		return domain.Errorf(domain.EInvalid, "delivery: malformed inbox id %q", inboxID)
	}
	h := d.hub
	d.mu.Lock()
	i, found := slices.BinarySearchFunc(d.inflight, id, func(p pushed, id streamid.ID) int {
		switch {
		case p.id == id:
			return 0
		case p.id.After(id):
			return 1
		}
		return -1
	})
	if d.detached || (!found && id.After(d.pos)) {
		d.mu.Unlock()
		return nil
	}
	if found {
		if through := d.inflight[i].through; through.After(id) {
			id = through // the device's own echoes after the push
		}
		d.takeOut(i)
	}
	first := d.unanchored
	d.unanchored = false
	d.mu.Unlock()
	if first {
		h.anchorCursor(ctx, d.cursorKey, id)
		return nil
	}
	h.cursors.mark(d.cursorKey, id)
	return nil
}

// takeOut removes the pushes in flight up to index i, which Ack
// acknowledged, and reads the device again if that unpaused it. The
// caller holds d.mu.
func (d *Device) takeOut(i int) {
	h := d.hub
	if o, ok := d.sink.(AckObserver); ok {
		now := h.cfg.Now()
		for _, p := range d.inflight[:i+1] {
			o.Acked(now.Sub(p.first))
		}
	}
	n := copy(d.inflight, d.inflight[i+1:])
	clear(d.inflight[n:])
	d.inflight = d.inflight[:n]
	if d.paused && len(d.inflight) <= h.cfg.MaxInFlight/2 {
		d.paused = false
		if !d.queued {
			d.queued = true
			h.queue.push(d)
		}
	}
}

// Covers reports whether acknowledging inboxID would cover a push in
// flight: one pushed in this attachment, not acknowledged yet, at or
// before inboxID. A malformed id covers nothing.
func (d *Device) Covers(inboxID string) bool {
	id, err := streamid.Parse(inboxID)
	if err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0 && !d.inflight[0].id.After(id)
}

// Detach ends the attachment: nothing more is pushed or resent. clean (the
// client said goodbye) deletes the device's presence route at once, unless
// the route already names another gateway or a newer attachment on this
// one; otherwise the route is left to reach its deadline. The user's
// last-seen time is recorded and the device's acknowledged cursor stored,
// in the same round trip. Detach may be called more than once (a clean
// call after an unclean one still deletes the route) and after the hub
// detached the device itself. Redis failures are logged: the route then
// expires by itself.
func (d *Device) Detach(ctx context.Context, clean bool) { d.hub.detach(ctx, d, clean) }

func (h *Hub) detach(ctx context.Context, d *Device, clean bool) {
	d.mu.Lock()
	first := !d.detached
	d.detached, d.inflight = true, nil
	deleteRoute := clean && !d.replaced && !d.routeGone
	if deleteRoute {
		d.routeGone = true
	}
	d.mu.Unlock()
	if first {
		h.unregister(d)
	} else if !deleteRoute {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if deleteRoute {
		h.routeMu.Lock()
		defer h.routeMu.Unlock()
		deleteRoute = !h.attached(d.user, d.id)
	}
	seen := "0"
	if first {
		seen = strconv.FormatInt(h.cfg.Now().UnixMilli(), 10)
	}
	flag := "0"
	if deleteRoute {
		flag = "1"
	}
	cursor, store := h.cursors.take(d.cursorKey) // always stored on detach
	var cmd, cur, announced *redis.Cmd
	err := h.pipeline(ctx, func(p redis.Pipeliner) {
		if store {
			cur = h.storeCursor(ctx, p, d.cursorKey, cursor)
		}
		cmd = h.scripts.detach.EvalSha(ctx, p, []string{h.keys.Presence(d.user), h.keys.LastSeen(d.user)},
			string(d.id), h.cfg.GatewayID, flag, seen, lastSeenTTL.Milliseconds())
		if deleteRoute {
			announced = h.announce(ctx, p, d, time.Time{}, true)
		}
	})
	if err == nil && store && cur.Err() != nil {
		h.cursors.mark(d.cursorKey, cursor) // the ack loop tries again
	}
	if err == nil {
		err = cmd.Err()
	}
	if err == nil && announced != nil {
		err = announced.Err()
	}
	if err != nil {
		if store {
			h.cursors.mark(d.cursorKey, cursor)
		}
		h.m.redisErrors.WithLabelValues("detach").Inc()
		h.log.Warn("detach not recorded; the route expires by itself", "user", d.user, "device", d.id, "err", err)
	}
}

// noSuchKey reports whether err is Redis's "no such key" (XINFO on a
// missing stream).
func noSuchKey(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "no such key")
}
