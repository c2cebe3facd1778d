package main

import (
	"context"
	"time"

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
	acked    string
	lastPing time.Time
}

func (r *runner) keepaliveTick() time.Duration {
	if r.cfg.AckInterval == 0 {
		return time.Second
	}
	return r.cfg.AckInterval
}

// keepaliveStep acknowledges cl's latest push if it changed and pings if
// half a heartbeat passed since the last ping.
func (r *runner) keepaliveStep(ctx context.Context, cl *client, ka *keepaliveState, now time.Time) {
	if r.cfg.AckInterval > 0 {
		cl.mu.Lock()
		latest := cl.latestPush
		cl.mu.Unlock()
		if latest != ka.acked {
			ka.acked = latest
			r.ack(cl, latest)
		}
	}
	if hb := time.Duration(r.heartbeat.Load()); hb > 0 && now.Sub(ka.lastPing) >= hb/2 {
		ka.lastPing = now
		_ = cl.c.Go(ctx, &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}}, func(*mpimv1.Response) {}) // a lost ping is harmless; a broken connection ends the reader
	}
}
