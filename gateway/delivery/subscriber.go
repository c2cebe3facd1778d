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
	ps := h.rdb.Subscribe(ctx)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	notify, signal := h.keys.Notify(h.cfg.GatewayID), h.keys.Signal(h.cfg.GatewayID)
	if err := ps.Subscribe(ctx, notify, signal); err != nil {
		return err
	}
	confirmed := 0
	for confirmed < 2 {
		msg, err := ps.ReceiveTimeout(ctx, healthInterval)
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
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
			if m.Kind != "subscribe" {
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
	for _, head := range n.Users { // the well-formed lines before a bad one too
		last, _ := streamid.Parse(head.Last)
		h.wakeUser(head.User, last)
	}
}
