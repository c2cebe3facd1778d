package delivery_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/redis/go-redis/v9"
)

func TestRoutesHaveDeadlinesRefreshedByHeartbeat(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	clk := newClock()
	mod := func(c *delivery.Config) { c.Now = clk.Now; c.RouteRefresh = 20 * time.Millisecond }
	a := e.hub(t, "gw-a", nil, mod)
	b := e.hub(t, "gw-b", nil, mod)
	u := newUser()

	t0 := clk.Now()
	d := a.attach(t, u, "phone", newSink())
	r, ok := e.route(t, u, "phone")
	if !ok || r.Gateway != "gw-a" || !r.Expires.Equal(t0.Add(inbox.RouteTTL)) {
		t.Fatalf("route %+v (present %v), want gw-a until %s", r, ok, t0.Add(inbox.RouteTTL))
	}
	if ttl := e.rdb.PTTL(ctx, e.keys.Presence(u)).Val(); ttl <= 0 || ttl > inbox.RouteTTL {
		t.Fatalf("presence key TTL %s", ttl)
	}
	t1 := clk.Advance(30 * time.Second)
	waitFor(t, "a heartbeat", nil, func() bool {
		r, _ := e.route(t, u, "phone")
		return r.Expires.Equal(t1.Add(inbox.RouteTTL))
	})

	t.Run("unclean detach leaves the route until its deadline", func(t *testing.T) {
		d.Detach(ctx, false)
		r, ok := e.route(t, u, "phone")
		if !ok || r.Gateway != "gw-a" {
			t.Fatalf("route %+v (present %v) after an unclean detach", r, ok)
		}
		if p := online(t, b, u); !p.Online {
			t.Fatal("offline before the route's deadline")
		}
		clk.Advance(inbox.RouteTTL)
		if p := online(t, b, u); p.Online || p.LastSeen.Before(t1) {
			t.Fatalf("presence %+v past the route's deadline, want offline, last seen from %s", p, t1)
		}
		clk.Advance(-inbox.RouteTTL)
	})

	t.Run("clean detach deletes the route", func(t *testing.T) {
		d := a.attach(t, u, "laptop", newSink())
		if _, ok := e.route(t, u, "laptop"); !ok {
			t.Fatal("no route after attach")
		}
		d.Detach(ctx, true)
		if r, ok := e.route(t, u, "laptop"); ok {
			t.Fatalf("route %+v after a clean detach", r)
		}
	})

	t.Run("a device that moved keeps its new route", func(t *testing.T) {
		old := a.attach(t, u, "tablet", newSink())
		a.attach(t, u, "watch", newSink()) // shows when a's heartbeats ran
		b.attach(t, u, "tablet", newSink())
		for range 2 { // the second pass starts after the first ended
			now := clk.Advance(time.Second)
			waitFor(t, "a heartbeat of gw-a", nil, func() bool {
				r, _ := e.route(t, u, "watch")
				return r.Expires.Equal(now.Add(inbox.RouteTTL))
			})
		}
		if r, _ := e.route(t, u, "tablet"); r.Gateway != "gw-b" {
			t.Fatalf("gw-a's heartbeat took the route of a device that moved to gw-b: %+v", r)
		}
		old.Detach(ctx, true)
		if r, _ := e.route(t, u, "tablet"); r.Gateway != "gw-b" {
			t.Fatalf("gw-a's clean detach deleted gw-b's route: %+v", r)
		}
	})
}

func online(tb testing.TB, h *testHub, u domain.UserID) delivery.Presence {
	tb.Helper()
	m, err := h.Online(context.Background(), []domain.UserID{u})
	if err != nil {
		tb.Fatal(err)
	}
	return m[u]
}

func TestOnlineAndLastSeen(t *testing.T) {
	e := newEnv(t)
	clk := newClock()
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.Now = clk.Now })
	ctx := context.Background()
	on, off, never := newUser(), newUser(), newUser()
	h.attach(t, on, "d", newSink())
	d := h.attach(t, off, "d", newSink())
	left := clk.Advance(10 * time.Second)
	d.Detach(ctx, true)
	clk.Advance(10 * time.Second) // within the online user's route deadline
	m, err := h.Online(ctx, []domain.UserID{on, off, never})
	if err != nil {
		t.Fatal(err)
	}
	if p := m[on]; !p.Online || !p.LastSeen.Equal(clk.Now()) {
		t.Errorf("online user: %+v", p)
	}
	if p := m[off]; p.Online || !p.LastSeen.Equal(left) {
		t.Errorf("user who left at %s: %+v", left, p)
	}
	if p := m[never]; p.Online || !p.LastSeen.IsZero() {
		t.Errorf("user never seen: %+v", p)
	}
	if _, err := h.Online(ctx, []domain.UserID{"bob"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("malformed user: %v, want an EInvalid error", err)
	}
}

func TestSubscriberReconnectsAfterItsConnectionIsKilled(t *testing.T) {
	e := newEnv(t)
	name := "mpim-delivery-test-" + strings.ToLower(strings.ReplaceAll(e.prefix, ":", ""))
	rdb := redis.NewClient(&redis.Options{Addr: e.addr, ClientName: name})
	t.Cleanup(func() { rdb.Close() })
	// No position check: only the subscriber brings news.
	h := e.hub(t, "gw-a", rdb, func(c *delivery.Config) { c.PollInterval = time.Hour })
	e.waitSubscribed(t, "gw-a")
	u := newUser()
	s := newSink()
	h.attach(t, u, "d", s)
	want := e.project(t, u, 3)
	s.waitFor(t, "pushes before the kill", func() bool { return len(s.firsts()) == 3 })

	killed := killPubSub(t, e, name)
	if killed == 0 {
		t.Fatal("found no subscriber connection to kill")
	}
	// Appended while the subscriber may be down: the notification is lost,
	// the re-check after subscribing again delivers it.
	want = append(want, e.project(t, u, 4)...)
	waitFor(t, "a reconnect", nil, func() bool { return h.metric(t, "mpim_gateway_subscriber_reconnects_total") >= 1 })
	s.waitFor(t, "entries appended during the outage", func() bool { return len(s.firsts()) == len(want) })
	e.waitSubscribed(t, "gw-a")
	want = append(want, e.project(t, u, 5)...)
	s.waitFor(t, "entries after the reconnect", func() bool { return len(s.firsts()) == len(want) })
	inOrder(t, "across the reconnect", s.firsts(), want)
}

// killPubSub kills the pub/sub connections of the client named name and
// returns how many it killed.
func killPubSub(tb testing.TB, e *env, name string) int {
	tb.Helper()
	ctx := context.Background()
	list, err := e.rdb.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		tb.Fatal(err)
	}
	killed := 0
	for line := range strings.SplitSeq(list, "\n") {
		fields := map[string]string{}
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] != name {
			continue
		}
		if err := e.rdb.Do(ctx, "CLIENT", "KILL", "ID", fields["id"]).Err(); err != nil {
			tb.Fatal(err)
		}
		killed++
	}
	return killed
}

func TestSignalReachesOnlyTheGatewaysOfOnlineRecipients(t *testing.T) {
	testSignalReachesOnlyOnlineRecipients(t, newEnv(t))
}

// On a Redis Cluster the signals go by sharded pub/sub (the hubs' cluster
// clients SPUBLISH and SSUBSCRIBE): the same deliveries, and no master
// runs a PUBLISH.
func TestSignalReachesOnlyTheGatewaysOfOnlineRecipientsOnACluster(t *testing.T) {
	e := newClusterEnv(t)
	publish, spublish := e.cluster.CommandCalls(t, "publish"), e.cluster.CommandCalls(t, "spublish")
	testSignalReachesOnlyOnlineRecipients(t, e)
	var sharded int64
	for m, n := range e.cluster.CommandCalls(t, "publish") {
		if n != publish[m] {
			t.Errorf("master %s ran %d PUBLISH, want 0", m, n-publish[m])
		}
	}
	for m, n := range e.cluster.CommandCalls(t, "spublish") {
		sharded += n - spublish[m]
	}
	if sharded < 3 { // two signal messages of gw-c, one of gw-a
		t.Errorf("the masters ran %d SPUBLISH, want at least 3", sharded)
	}
}

func testSignalReachesOnlyOnlineRecipients(t *testing.T, e *env) {
	ctx := context.Background()
	a, b, c := e.hub(t, "gw-a", nil, nil), e.hub(t, "gw-b", nil, nil), e.hub(t, "gw-c", nil, nil)
	for _, gw := range []string{"gw-a", "gw-b", "gw-c"} {
		e.waitSubscribed(t, gw)
	}
	x, y, w, offline := newUser(), newUser(), newUser(), newUser()
	x1, x2, yd, wd := newSink(), newSink(), newSink(), newSink()
	a.attach(t, x, "1", x1)
	a.attach(t, x, "2", x2)
	b.attach(t, y, "d", yd)
	c.attach(t, w, "d", wd)

	if err := c.Signal(ctx, []domain.UserID{x, y, offline}, delivery.Signal{From: string(w), Kind: "typing", Payload: []byte("d/x")}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*sink{"x1": x1, "x2": x2, "y": yd} {
		s.waitFor(t, "the signal on "+name, func() bool { return len(s.signalKinds()) == 1 })
		s.mu.Lock()
		got := s.signals[0]
		s.mu.Unlock()
		if got.From != string(w) || got.Kind != "typing" || string(got.Payload) != "d/x" {
			t.Errorf("%s got %+v", name, got)
		}
	}
	if got := c.metric(t, "mpim_gateway_signals_published_total"); got != 2 {
		t.Errorf("gw-c published %v signal messages, want one per gateway: 2", got)
	}
	// A signal published to gw-c by mistake would reach w before this one
	// (one channel, in order).
	if err := a.Signal(ctx, []domain.UserID{w}, delivery.Signal{From: string(x), Kind: "presence"}); err != nil {
		t.Fatal(err)
	}
	wd.waitFor(t, "the second signal", func() bool { return len(wd.signalKinds()) > 0 })
	inOrder(t, "signals of w", wd.signalKinds(), []string{"presence"})

	// On the sender's own gateway the signal is handed over directly.
	if err := a.Signal(ctx, []domain.UserID{x}, delivery.Signal{From: string(x), Kind: "self"}); err != nil {
		t.Fatal(err)
	}
	x2.waitFor(t, "a local signal", func() bool { return len(x2.signalKinds()) == 2 })
	if err := a.Signal(ctx, []domain.UserID{x}, delivery.Signal{Kind: "bad\nkind"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("malformed signal: %v, want an EInvalid error", err)
	}
}
