package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
)

// keepaliveAll, one goroutine for all clients, acknowledges every client's
// latest push (each in its own slice of the interval) and skips a client
// whose connection ended.
func TestKeepaliveAllAcksEveryClient(t *testing.T) {
	env := gatewaytest.New(t)
	const n = keepaliveSlots + 3 // some slices hold two clients
	r := newRunner(&Config{Scenario: "pairs", Gateways: []string{env.URL}, Users: n, Setup: 4,
		TextBytes: 1, PlotInterval: time.Second, Password: "bench-password", AckInterval: 20 * time.Millisecond}, nil)
	ctx := gatewaytest.Ctx(t)
	if err := r.setup(ctx, true); err != nil {
		t.Fatal(err)
	}
	defer r.closeAll()
	closed := r.clients[0]
	closed.c.Close()
	<-closed.c.Done()
	for _, cl := range r.clients {
		cl.mu.Lock()
		cl.latestPush = "0-1"
		cl.mu.Unlock()
	}
	kctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.keepaliveAll(kctx, r.clients) })
	confirmed := func(cl *client) string {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.ackConfirmed
	}
	ok := waitFor(ctx, 10*time.Second, func() bool {
		for _, cl := range r.clients[1:] {
			if confirmed(cl) != "0-1" {
				return false
			}
		}
		return true
	})
	stop()
	wg.Wait()
	for _, cl := range r.clients[1:] {
		if !ok && confirmed(cl) != "0-1" {
			t.Errorf("client %d: ack confirmed %q, want 0-1", cl.idx, confirmed(cl))
		}
	}
	if got := confirmed(closed); got != "" {
		t.Errorf("the client whose connection ended acked %q", got)
	}
}
