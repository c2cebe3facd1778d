package main

import (
	"fmt"
	"testing"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

func TestQuantile(t *testing.T) {
	if got := quantile(nil, 0.5); got != 0 {
		t.Fatalf("quantile of nothing = %v", got)
	}
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(ds, tc.q); got != tc.want {
			t.Errorf("quantile(%g) = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestStormSummary(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(d time.Duration) int64 { return start.Add(d).UnixNano() }
	clients := make([]*client, 4)
	for i := range clients {
		clients[i] = &client{idx: i, missExpected: 10, resumedAt: at(100 * time.Millisecond)}
		clients[i].missGot.Store(10)
		clients[i].doneAt.Store(at(time.Duration(i+1) * time.Second))
	}
	st := &StormReport{CatchupTimeoutSeconds: 60}
	st.summarise(clients, start)
	if !st.AllCaughtUp || st.CaughtUp != 4 || st.CatchupDeliveries != 40 {
		t.Fatalf("summary = %+v", st)
	}
	if st.CatchupP50Ms != 2000 || st.CatchupP99Ms != 4000 || st.CatchupTotalMs != 4000 {
		t.Errorf("catch-up p50/p99/total = %g/%g/%g ms, want 2000/4000/4000", st.CatchupP50Ms, st.CatchupP99Ms, st.CatchupTotalMs)
	}
	if st.CatchupFromResumeP50Ms != 1900 {
		t.Errorf("catch-up from resume p50 = %g ms, want 1900", st.CatchupFromResumeP50Ms)
	}
	if st.CatchupDeliveriesPerSec != 10 {
		t.Errorf("catch-up deliveries/s = %g, want 10 (40 in 4 s)", st.CatchupDeliveriesPerSec)
	}

	// A client that never caught up: the total is the timeout, at least.
	clients[3].doneAt.Store(0)
	clients[3].missGot.Store(3)
	st = &StormReport{CatchupTimeoutSeconds: 60}
	st.summarise(clients, start)
	if st.AllCaughtUp || st.CaughtUp != 3 || st.CatchupTotalMs != 60_000 || st.CatchupDeliveries != 33 {
		t.Fatalf("summary with a straggler = %+v", st)
	}
}

// A storm client counts the missed messages (from a sender connection) it
// receives after the reconnect, and is caught up at the last one.
func TestStormClientCatchesUp(t *testing.T) {
	r := newRunner(&Config{Scenario: "storm", Users: 2, Senders: 1, TextBytes: 1, PlotInterval: time.Second, AckInterval: 100 * time.Millisecond}, nil)
	r.clients = []*client{
		{idx: 0, audit: newDeviceAudit(), missExpected: 2},
		{idx: 1, audit: newDeviceAudit()},
		{idx: 2, audit: newDeviceAudit()},
	}
	r.from.Store(1)
	r.to.Store(1 << 62)
	cl := r.clients[0]
	deliver := func(from, n int, seq uint64) {
		r.onFrame(cl, pushFrame(t, r, from, n, seq))
	}
	deliver(1, 0, 1) // the partner's message: not a missed one
	deliver(2, 0, 1)
	if cl.doneAt.Load() != 0 || cl.missGot.Load() != 1 {
		t.Fatalf("after one of two missed messages: done %d, got %d", cl.doneAt.Load(), cl.missGot.Load())
	}
	deliver(2, 0, 1) // a duplicate does not count
	if cl.missGot.Load() != 1 {
		t.Fatalf("a duplicate was counted: got %d", cl.missGot.Load())
	}
	deliver(2, 1, 2)
	if cl.doneAt.Load() == 0 || r.caughtUp.Load() != 1 || cl.missGot.Load() != 2 {
		t.Fatalf("after both missed messages: done %d, caught up %d, got %d", cl.doneAt.Load(), r.caughtUp.Load(), cl.missGot.Load())
	}
	if r.delHist.TotalCount() != 0 {
		t.Fatalf("storm deliveries were recorded as send->delivery latency")
	}
}

// pushFrame is the push of message n of client from to conversation
// "c<from>" with seq, as a gateway sends it (binary envelope).
func pushFrame(tb testing.TB, r *runner, from, n int, seq uint64) *mpimv1.ServerFrame {
	tb.Helper()
	ev := &mpimv1.Event{Id: []byte(fmt.Sprintf("e-%d-%d", from, n)), Seq: seq, Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{
		ConversationId: fmt.Sprintf("c%d", from), ClientMsgId: r.clientMsgID(from, n, time.Now().UnixNano())}}}
	env, err := proto.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{
		InboxId: fmt.Sprintf("100-%d", seq+uint64(from)*1000), Type: "MessageSent", Envelope: env}}}
}
