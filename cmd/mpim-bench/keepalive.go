package main

import (
	"context"
	"time"

	"github.com/mpim/mpim/internal/streamid"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// keepalive acknowledges cl's latest push every AckInterval and pings every
// heartbeat, until ctx ends or cl's connection does.
func (r *runner) keepalive(ctx context.Context, cl *client) {
	t := time.NewTicker(r.keepaliveTick())
	defer t.Stop()
	ka := keepaliveState{lastPing: time.Now()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-cl.c.Done():
			return
		case now := <-t.C:
			r.keepaliveStep(ctx, cl, &ka, now)
		}
	}
}

// keepaliveSlots is how many slices keepaliveAll cuts the clients into:
// each slice is served on its own tick, so that the acks stay spread over
// the interval.
const keepaliveSlots = 10

// keepaliveAll does keepalive's work for every client from one goroutine
// and one ticker (one wake-up per slice, not one per client and interval),
// until ctx ends; a client whose connection ended is skipped.
func (r *runner) keepaliveAll(ctx context.Context, clients []*client) {
	t := time.NewTicker(r.keepaliveTick() / keepaliveSlots)
	defer t.Stop()
	states := make([]keepaliveState, len(clients))
	for i := range states {
		states[i].lastPing = time.Now()
	}
	for slot := 0; ; slot = (slot + 1) % keepaliveSlots {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		for i := slot; i < len(clients); i += keepaliveSlots {
			select {
			case <-clients[i].c.Done():
				continue
			default:
			}
			r.keepaliveStep(ctx, clients[i], &states[i], now)
		}
	}
}

// keepaliveState is what keepalive remembers of one client.
type keepaliveState struct {
	lastPing time.Time
}

func (r *runner) keepaliveTick() time.Duration {
	if r.cfg.AckInterval == 0 {
		return time.Second
	}
	return r.cfg.AckInterval
}

// takeAck returns cl's latest push if no ack was sent for it yet, and
// notes that one is sent.
func (cl *client) takeAck() (latest string, due bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.latestPush == cl.ackSent {
		return "", false
	}
	cl.unacked, cl.ackSent = 0, cl.latestPush
	return cl.latestPush, true
}

// flushAcks acknowledges every client's latest push that no ack covers
// yet and waits, at most d, until the server confirmed an ack of each
// client's latest push; it reports whether all were confirmed. Sending
// must have stopped and keepalive too.
func (r *runner) flushAcks(ctx context.Context, d time.Duration) bool {
	for _, cl := range r.clients {
		if cl.c == nil {
			continue
		}
		if latest, due := cl.takeAck(); due {
			r.ack(cl, latest)
		}
	}
	return waitFor(ctx, d, func() bool {
		for _, cl := range r.clients {
			if cl.c == nil {
				continue
			}
			select {
			case <-cl.c.Done():
				continue // its acks died with it; the audit counts the drop
			default:
			}
			cl.mu.Lock()
			ok := cl.latestPush == "" || !later(cl.latestPush, cl.ackConfirmed)
			cl.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

// later reports whether inbox id a is after b ("" is before everything);
// a malformed id is not after anything.
func later(a, b string) bool {
	pa, err := streamid.Parse(a)
	if err != nil {
		return false
	}
	if b == "" {
		return true
	}
	pb, err := streamid.Parse(b)
	return err != nil || pa.After(pb)
}

// keepaliveStep acknowledges cl's latest push if no ack covers it and pings if
// half a heartbeat passed since the last ping.
func (r *runner) keepaliveStep(ctx context.Context, cl *client, ka *keepaliveState, now time.Time) {
	if r.cfg.AckInterval > 0 {
		if latest, due := cl.takeAck(); due {
			r.ack(cl, latest)
		}
	}
	if hb := time.Duration(r.heartbeat.Load()); hb > 0 && now.Sub(ka.lastPing) >= hb/2 {
		ka.lastPing = now
		_ = cl.c.Go(ctx, &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}}, func(*mpimv1.Response) {}) // a lost ping is harmless; a broken connection ends the reader
	}
}
