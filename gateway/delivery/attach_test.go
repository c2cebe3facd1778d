package delivery_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

func TestInFlightBoundPausesReadingUntilAcknowledged(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.MaxInFlight = 10; c.PageSize = 4 })
	u := newUser()
	s := newSink()
	d := h.attach(t, u, "d", s)
	ids := e.project(t, u, 30)
	s.waitFor(t, "the in-flight bound", func() bool { return len(s.firsts()) >= 10 })
	if err := d.Ack(context.Background(), ids[4]); err != nil { // 5 left in flight: half the bound
		t.Fatal(err)
	}
	s.waitFor(t, "reading to resume", func() bool { return len(s.firsts()) >= 15 })
	// Nothing is acknowledged any more: no push beyond the bound can come.
	inOrder(t, "bounded", s.firsts(), ids[:15])
}

func TestRefusingSinkDetachesTheDevice(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, nil)
	u := newUser()
	s := newSink()
	d := h.attach(t, u, "d", s)
	s.fail.Store(true)
	e.project(t, u, 3)
	waitFor(t, "the device to be detached", nil, func() bool { return h.Devices() == 0 })
	if got := h.metric(t, "mpim_gateway_sink_failures_total"); got != 1 {
		t.Errorf("sink failures %v, want 1", got)
	}
	if _, ok := e.route(t, u, "d"); !ok {
		t.Fatal("a detach by the hub deleted the route")
	}
	d.Detach(context.Background(), true) // the session closes cleanly afterwards
	if _, ok := e.route(t, u, "d"); ok {
		t.Fatal("the session's clean detach left the route")
	}
	if err := d.Ack(context.Background(), "1-0"); err != nil {
		t.Fatalf("ack on a detached device: %v", err)
	}
}

func TestReattachReplacesTheOldAttachment(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, nil)
	ctx := context.Background()
	u := newUser()
	old, fresh := newSink(), newSink()
	d1 := h.attach(t, u, "d", old)
	h.attach(t, u, "d", fresh)
	if h.Devices() != 1 {
		t.Fatalf("%d devices after a re-attach, want 1", h.Devices())
	}
	if n, m := old.replaced.Load(), fresh.replaced.Load(); n != 1 || m != 0 {
		t.Fatalf("Replaced called %d times on the old sink and %d on the new, want 1 and 0", n, m)
	}
	d1.Detach(ctx, true) // the old session ends after the new one began
	if _, ok := e.route(t, u, "d"); !ok {
		t.Fatal("the replaced attachment's clean detach deleted the new route")
	}
	ids := e.project(t, u, 3)
	fresh.waitFor(t, "pushes to the new attachment", func() bool { return len(fresh.firsts()) == 3 })
	inOrder(t, "new attachment", fresh.firsts(), ids)
	if n := len(old.firsts()); n != 0 {
		t.Fatalf("the replaced attachment got %d pushes", n)
	}
}

// A device that attaches to another gateway while its attachment here is
// live (a client that reconnected elsewhere before its old connection
// died) takes it over: this gateway hears of it through its signal channel,
// lets the old attachment go (its sink is told) without touching the route,
// and only the new attachment receives.
func TestAttachOnAnotherGatewayReplacesTheOldAttachment(t *testing.T) {
	e := newEnv(t)
	ha, hb := e.hub(t, "gw-a", nil, nil), e.hub(t, "gw-b", nil, nil)
	e.waitSubscribed(t, "gw-a") // signals published before it subscribed are lost
	u := newUser()
	old, fresh := newSink(), newSink()
	ha.attach(t, u, "d", old)
	// Another device of the user stays where it is.
	other := newSink()
	ha.attach(t, u, "d2", other)
	hb.attach(t, u, "d", fresh)
	deadline := time.Now().Add(patience)
	for old.replaced.Load() == 0 || ha.Devices() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("gw-a: Replaced called %d times, %d devices attached; want 1 and 1 (d2)", old.replaced.Load(), ha.Devices())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r, ok := e.route(t, u, "d"); !ok || r.Gateway != "gw-b" {
		t.Fatalf("route %+v %v, want gw-b's", r, ok)
	}
	ids := e.project(t, u, 3)
	fresh.waitFor(t, "pushes to the new attachment", func() bool { return len(fresh.firsts()) == 3 })
	other.waitFor(t, "pushes to the other device", func() bool { return len(other.firsts()) == 3 })
	inOrder(t, "new attachment", fresh.firsts(), ids)
	if n := len(old.firsts()); n != 0 {
		t.Fatalf("the replaced attachment got %d pushes", n)
	}
	if n := other.replaced.Load() + fresh.replaced.Load(); n != 0 {
		t.Fatalf("Replaced called %d times on attachments that were not replaced", n)
	}
	// Reserved kinds cannot be sent as signals.
	if err := ha.Signal(context.Background(), []domain.UserID{u}, delivery.Signal{From: "d", Kind: "!replaced"}); err == nil {
		t.Fatal("a signal of a reserved kind was accepted")
	}
}

// A takeover signal that arrives after the device came back (here, then
// on gw-b, then here again before gw-b's signal was handled) is older than
// the attachment here and leaves it alone: the route names this gateway
// again. The same signal while the route names gw-b lets the attachment go.
func TestLateTakeoverSignalLeavesTheNewerAttachment(t *testing.T) {
	e := newEnv(t)
	ha, hb := e.hub(t, "gw-a", nil, nil), e.hub(t, "gw-b", nil, nil)
	e.waitSubscribed(t, "gw-a")
	e.waitSubscribed(t, "gw-b")
	u := newUser()
	first, second, third := newSink(), newSink(), newSink()
	ha.attach(t, u, "d", first)
	hb.attach(t, u, "d", second)
	first.waitFor(t, "gw-a letting the first attachment go", func() bool { return first.replaced.Load() == 1 })
	ha.attach(t, u, "d", third)
	second.waitFor(t, "gw-b letting the second attachment go", func() bool { return second.replaced.Load() == 1 })
	if r, ok := e.route(t, u, "d"); !ok || r.Gateway != "gw-a" {
		t.Fatalf("route %+v %v, want gw-a's", r, ok)
	}
	// gw-b's signal of the second attach, late, as the channel would carry it.
	late := string(u) + "\nd\n!replaced\n"
	if err := e.rdb.Publish(context.Background(), e.keys.Signal("gw-a"), late).Err(); err != nil {
		t.Fatal(err)
	}
	// A signal published after the late one is handled after it: once gw-a
	// has passed it on, the late one was handled.
	if err := hb.Signal(context.Background(), []domain.UserID{u}, delivery.Signal{From: "x", Kind: "typing"}); err != nil {
		t.Fatal(err)
	}
	third.waitFor(t, "the typing signal after the late takeover", func() bool {
		return len(third.signalKinds()) == 1 || third.replaced.Load() > 0
	})
	if n := third.replaced.Load(); n != 0 || ha.Devices() != 1 {
		t.Fatalf("the late signal replaced the newer attachment: Replaced called %d times, %d devices on gw-a", n, ha.Devices())
	}
	ids := e.project(t, u, 2)
	third.waitFor(t, "pushes to the attachment that came back", func() bool { return len(third.firsts()) == 2 })
	inOrder(t, "attachment that came back", third.firsts(), ids)

	// While the route names another gateway, the same signal takes effect.
	if err := e.rdb.HSet(context.Background(), e.keys.Presence(u), "d",
		inbox.Route{Gateway: "gw-b", Expires: time.Now().Add(time.Minute)}.Encode()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.Publish(context.Background(), e.keys.Signal("gw-a"), late).Err(); err != nil {
		t.Fatal(err)
	}
	third.waitFor(t, "a takeover signal while the route names gw-b", func() bool { return third.replaced.Load() == 1 })
}

// envelope decodes a pushed envelope.
func envelope(tb testing.TB, d delivery.Delivery) *mpimv1.Event {
	tb.Helper()
	ev := new(mpimv1.Event)
	if err := proto.Unmarshal(d.Envelope, ev); err != nil {
		tb.Fatalf("push %s: %v", d.InboxID, err)
	}
	return ev
}

func TestPushedEnvelopesCarryVersionAndSeq(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, nil)
	u := newUser()
	s := newSink()
	h.attach(t, u, "d", s)
	ids := e.project(t, u, 3) // versions and seqs 1, 2, 3
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 3 })
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, d := range s.pushes {
		ev := envelope(t, d)
		if d.InboxID != ids[i] || ev.GetVersion() != uint64(i+1) || ev.GetSeq() != uint64(i+1) || string(ev.GetId()) != string(d.EventID[:]) || d.Type != "MessageSent" {
			t.Errorf("push %d: %s version %d seq %d type %s", i, d.InboxID, ev.GetVersion(), ev.GetSeq(), d.Type)
		}
	}
}

// latencySink is a sink that records the push-to-ack latencies it hears.
type latencySink struct {
	*sink
	mu  sync.Mutex
	got []time.Duration
}

func (s *latencySink) Acked(latency time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, latency)
}

// An acknowledgement reports, for every push it takes out of flight, the
// time since the push was first delivered: a resend does not restart it,
// and an acknowledgement of nothing in flight reports nothing.
func TestAcknowledgementsReportLatencyFromTheFirstPush(t *testing.T) {
	e, clk, h := newResendEnv(t)
	u := newUser()
	s := &latencySink{sink: newSink()}
	d := h.attach(t, u, "d", s)
	ids := e.project(t, u, 3)
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 3 })
	if d.Covers("1-0") || !d.Covers(ids[0]) || !d.Covers(ids[2]) || d.Covers("bad") {
		t.Fatal("Covers disagrees with the pushes in flight")
	}
	clk.Advance(2 * time.Second)
	s.waitFor(t, "resends", func() bool { return len(s.resent()) == 3 })
	clk.Advance(time.Second)
	if err := d.Ack(context.Background(), ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(context.Background(), ids[1]); err != nil { // acknowledged already
		t.Fatal(err)
	}
	s.mu.Lock()
	got := slices.Clone(s.got)
	s.mu.Unlock()
	if len(got) != 2 || got[0] < 3*time.Second || got[1] < 3*time.Second {
		t.Fatalf("latencies %v, want two of at least 3s (from the first push, not the resend)", got)
	}
	if d.Covers(ids[1]) || !d.Covers(ids[2]) {
		t.Fatal("Covers after the acknowledgement")
	}
}
