package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// subscribeLoop keeps this gateway subscribed to its notification and
// signal channels until ctx ends, subscribing again with backoff whenever
// the connection is lost.
func (h *Hub) subscribeLoop(ctx context.Context) {
	bo := backoff{min: 50 * time.Millisecond, max: 5 * time.Second}
	subscribed := false
	for ctx.Err() == nil {
		err := h.subscribe(ctx, func() {
			if subscribed {
				h.m.reconnects.Inc()
				h.log.Info("notification subscriber subscribed again; checking every device")
			}
			subscribed = true
			bo.reset()
			// Notifications published while unsubscribed are lost: check
			// every attached device's position.
			h.checkNow()
		})
		if ctx.Err() != nil {
			return
		}
		h.m.redisErrors.WithLabelValues("subscribe").Inc()
		h.log.Warn("notification subscriber lost its connection; subscribing again", "err", err)
		if !sleep(ctx, bo.next()) {
			return
		}
	}
}

// subscribe subscribes on a connection of its own, calls onSubscribed once
// both subscriptions are confirmed, and handles messages until the
// connection fails (a read error, or a ping unanswered for healthInterval)
// or ctx ends. It always returns an error.
func (h *Hub) subscribe(ctx context.Context, onSubscribed func()) error {
	notify, signal := h.keys.Notify(h.cfg.GatewayID), h.keys.Signal(h.cfg.GatewayID)
	ps, err := h.channels.Subscribe(ctx, h.rdb, notify, signal)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	if err != nil {
		return err
	}
	kind := h.channels.SubscribeKind()
	confirmed := 0
	for confirmed < 2 {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == kind {
				confirmed++
			}
		case *redis.Message:
			h.handle(m, notify)
		}
	}
	onSubscribed()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if pinged {
				return fmt.Errorf("delivery: no answer to a ping within %s", healthInterval)
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			h.handle(m, notify)
		case *redis.Subscription:
			if m.Kind != kind {
				return fmt.Errorf("delivery: unexpected %s of %s", m.Kind, m.Channel)
			}
		}
	}
}

// handle dispatches one message of the gateway's channels.
func (h *Hub) handle(m *redis.Message, notify string) {
	if m.Channel != notify {
		h.receiveSignal([]byte(m.Payload))
		return
	}
	h.m.notifications.Inc()
	n, err := inbox.DecodeNotification([]byte(m.Payload))
	if err != nil {
		h.m.badNotes.Inc()
		h.log.Warn("ignoring a malformed notification; the position check covers it", "err", err)
	}
	for i := range n.Users { // the well-formed heads before a bad one too
		head := &n.Users[i]
		if len(head.Entries) > 0 {
			h.pushCarried(head)
			continue
		}
		last, _ := streamid.Parse(head.Last)
		h.wakeUser(head.User, last)
	}
}

// pushCarried pushes the entries a notification carries to the user's
// devices that were given exactly up to head.Prev and are not being read:
// for them the entries continue their position without a gap (the
// projector wrote them contiguously after Prev). Every other device (being
// read or catching up, behind after a lost notification, paused) is woken
// as by a head, and reads its inbox from its position.
func (h *Hub) pushCarried(head *inbox.Head) {
	prev, _ := streamid.Parse(head.Prev)
	last, _ := streamid.Parse(head.Last)
	for _, d := range h.devicesOf(head.User) {
		anchor, ok := h.pushFrom(d, prev, last, head.Entries)
		switch {
		case !ok:
			h.m.sinkFailures.Inc()
			h.log.Info("detaching a device whose connection refused a push", "user", d.user, "device", d.id)
			h.detach(context.Background(), d, false)
		case !anchor.IsZero():
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			h.anchorCursor(ctx, d.cursorKey, anchor)
			cancel()
		}
	}
}

// pushFrom pushes entries to d if its position is prev and no reader holds
// it, as many as MaxInFlight allows (the rest are read); otherwise it wakes
// d for a read up to last. It returns false if the sink refused a push,
// and the echo to store as d's first cursor (takeAnchor), zero if none.
func (h *Hub) pushFrom(d *Device, prev, last streamid.ID, entries []inbox.Carried) (anchor streamid.ID, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached || d.paused || !last.After(d.pos) {
		return anchor, true
	}
	if d.queued || d.pos != prev {
		h.m.carriedMisses.Inc()
		h.wakeLocked(d)
		return anchor, true
	}
	now := h.cfg.Now()
	pushedNow := 0
	defer func() { h.m.deliveries.Add(float64(pushedNow)); h.m.carried.Add(float64(pushedNow)) }()
	for i := range entries {
		if len(d.inflight) >= h.cfg.MaxInFlight {
			d.paused = true // acknowledgements read the rest
			return d.takeAnchor(), true
		}
		c := &entries[i]
		id, _ := streamid.Parse(c.ID)
		sent, err := h.push(d, id, c.ID, &c.Entry, now)
		if err != nil {
			return anchor, false
		}
		if sent {
			pushedNow++
		}
	}
	return d.takeAnchor(), true
}
