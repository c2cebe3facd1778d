package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
)

// Acks are cumulative: a client acknowledges its latest push once every
// AckEvery pushes, not each push, and the final flush acknowledges the
// last push, so that nothing is left unacknowledged at the end.
func TestAcksAreCumulativeAndTheLastCoversTheLastPush(t *testing.T) {
	env := gatewaytest.New(t)
	r := newRunner(&Config{Scenario: "pairs", Gateways: []string{env.URL}, Users: 2, Setup: 2, TextBytes: 1,
		PlotInterval: time.Second, Password: "bench-password", AckInterval: time.Hour, AckEvery: 10}, nil)
	ctx := gatewaytest.Ctx(t)
	if err := r.setup(ctx, true); err != nil {
		t.Fatal(err)
	}
	defer r.closeAll()
	cl := r.clients[0]
	dev := env.Hub.Device(t, cl.userID, "bench-0")
	const pushes = 95
	last := ""
	for i := 1; i <= pushes; i++ {
		last = fmt.Sprintf("100-%d", i)
		if err := dev.Sink.Push(gateway.Delivery{InboxID: last, Type: "Other"}); err != nil {
			t.Fatal(err)
		}
	}
	gatewaytest.Eventually(t, "the pushes reach the client", func() bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.latestPush == last
	})
	if !r.flushAcks(ctx, 10*time.Second) {
		t.Fatalf("flushAcks: the server did not confirm an ack of the last push %s", last)
	}
	_, _, acks := dev.State()
	if len(acks) == 0 || acks[len(acks)-1] != last {
		t.Fatalf("acks %v: the last does not cover the last push %s", acks, last)
	}
	if max := pushes/10 + 1; len(acks) > max {
		t.Errorf("%d acks for %d pushes, want at most %d (one per 10 and the final one): %v", len(acks), pushes, max, acks)
	}
	cl.mu.Lock()
	confirmed := cl.ackConfirmed
	cl.mu.Unlock()
	if confirmed != last {
		t.Errorf("ack confirmed up to %q, want %q", confirmed, last)
	}
	if cl.audit.ackedUpTo.String() != last {
		t.Errorf("the audit's acked position is %s, want %s", cl.audit.ackedUpTo, last)
	}
}
