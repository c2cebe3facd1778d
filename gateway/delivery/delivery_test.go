package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

func TestNewReportsEveryConfigurationProblem(t *testing.T) {
	_, err := delivery.New(nil, delivery.Config{GatewayID: "gw 1", PageSize: -1, MaxInFlight: -2, RouteRefresh: time.Hour})
	if err == nil {
		t.Fatal("New accepted an invalid configuration")
	}
	for _, want := range []string{"gateway id", "page size", "max in flight", "route refresh", "Redis client"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestAttachRejectsMalformedInput(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, nil)
	ctx := context.Background()
	for name, attach := range map[string]func() error{
		"user":   func() error { _, err := h.Attach(ctx, "alice", "d1", newSink()); return err },
		"device": func() error { _, err := h.Attach(ctx, newUser(), "d 1", newSink()); return err },
		"sink":   func() error { _, err := h.Attach(ctx, newUser(), "d1", nil); return err },
	} {
		if err := attach(); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("malformed %s: %v, want an EInvalid error", name, err)
		}
	}
	if h.Devices() != 0 {
		t.Fatalf("%d devices attached after failed attaches", h.Devices())
	}
}

func TestCatchUpFromStoredCursorInOrderThenLiveWithoutGap(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.PollInterval = time.Hour })
	e.waitSubscribed(t, "gw-a")
	u := newUser()
	ids := e.add(t, u, 1200)
	e.setCursor(t, u, "phone", ids[199])

	s := newSink()
	d := h.attach(t, u, "phone", s)
	autoAck(t, d, s)
	want := ids[200:]
	s.waitFor(t, "catch-up", func() bool { return len(s.firsts()) >= len(want) })
	inOrder(t, "catch-up", s.firsts(), want)
	if n := len(s.syncCursors()); n != 0 {
		t.Fatalf("%d sync requests for a cursor inside the window", n)
	}

	live := e.project(t, u, 25)
	want = append(want, live...)
	s.waitFor(t, "live entries", func() bool { return len(s.firsts()) >= len(want) })
	inOrder(t, "catch-up then live", s.firsts(), want)
	// Counters move after the pushes of a read.
	waitFor(t, "the deliveries metric", nil, func() bool { return h.metric(t, "mpim_gateway_deliveries_total") >= float64(len(want)) })
	if got := h.metric(t, "mpim_gateway_deliveries_total"); got != float64(len(want)) {
		t.Errorf("deliveries %v, want %d", got, len(want))
	}
	if got := h.metric(t, "mpim_gateway_catchup_entries_total"); got < 1000 {
		t.Errorf("catch-up entries %v, want at least 1000", got)
	}
	waitFor(t, "the cursor to reach the last push", nil, func() bool { return e.cursor(t, u, "phone") == want[len(want)-1] })
}

func TestEntriesAppendedDuringCatchUpAreNeitherLostReorderedNorDuplicated(t *testing.T) {
	e := newEnv(t)
	// No position check: the catch-up and the notifications alone must
	// deliver everything. Small pages and a small in-flight bound make many
	// reads, pauses and resumptions interleave with the writers.
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) {
		c.PollInterval = time.Hour
		c.PageSize = 37
		c.MaxInFlight = 64
	})
	e.waitSubscribed(t, "gw-a")
	const users, rounds, before, during = 4, 3, 600, 900
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			for i := range users {
				t.Run(fmt.Sprintf("user %d", i), func(t *testing.T) {
					t.Parallel()
					u := newUser()
					ids := e.add(t, u, before)
					e.setCursor(t, u, "d", ids[49])
					want := append([]string(nil), ids[50:]...)
					var mu sync.Mutex
					var werr error
					writer := make(chan struct{})
					go func() { // appends during the catch-up, in batches of 1 to 13
						defer close(writer)
						for n := 0; n < during; {
							k := min(1+n%13, during-n)
							added, err := e.projectErr(u, k)
							if err != nil {
								werr = err
								return
							}
							mu.Lock()
							want = append(want, added...)
							mu.Unlock()
							n += k
						}
					}()
					s := newSink()
					s.slow.Store(i%2 == 0)
					d := h.attach(t, u, "d", s)
					autoAck(t, d, s)
					<-writer
					if werr != nil {
						t.Fatal(werr)
					}
					s.waitFor(t, "every entry", func() bool { return len(s.firsts()) >= len(want) })
					inOrder(t, "pushes", s.firsts(), want)
				})
			}
		})
		if t.Failed() {
			return
		}
	}
}

func TestLostNotificationIsRepairedByThePositionCheck(t *testing.T) {
	e := newEnv(t)
	h := e.hub(t, "gw-a", nil, nil)
	u := newUser()
	s := newSink()
	h.attach(t, u, "d", s)
	var want []string
	for round := range 3 { // after the first round only the position check can find entries
		want = append(want, e.add(t, u, 7)...) // no notification
		s.waitFor(t, fmt.Sprintf("round %d", round), func() bool { return len(s.firsts()) >= len(want) })
	}
	inOrder(t, "repaired", s.firsts(), want)
	if got := h.metric(t, "mpim_gateway_position_check_wakes_total"); got < 2 {
		t.Errorf("position check wakes %v, want at least 2", got)
	}
	if got := h.metric(t, "mpim_gateway_notifications_received_total"); got != 0 {
		t.Errorf("%v notifications received, want none", got)
	}
	if got := s.syncCursors(); len(got) != 1 || got[0] != "" {
		t.Errorf("sync requests %q, want one for a device without a cursor", got)
	}
}

// newResendEnv returns an environment and a hub on a fake clock whose
// pushes fall due for a resend after one second of it.
func newResendEnv(t *testing.T) (*env, *clock, *testHub) {
	t.Helper()
	e := newEnv(t)
	clk := newClock()
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) {
		c.Now = clk.Now
		c.AckTimeout = time.Second // of the fake clock
	})
	return e, clk, h
}

func TestUnacknowledgedPushesAreResentAcknowledgedAreNot(t *testing.T) {
	e, clk, h := newResendEnv(t)
	u := newUser()
	s := newSink()
	d := h.attach(t, u, "d", s)
	ids := e.project(t, u, 3)
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 3 })
	if err := d.Ack(context.Background(), ids[1]); err != nil { // acknowledges ids[0] too
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	s.waitFor(t, "a resend", func() bool { return len(s.resent()) > 0 })
	inOrder(t, "resends", s.resent(), ids[2:])

	// Acknowledge the resent entry, push one more, let both fall due: only
	// the new one comes again.
	if err := d.Ack(context.Background(), ids[2]); err != nil {
		t.Fatal(err)
	}
	more := e.project(t, u, 1)
	s.waitFor(t, "a new push", func() bool { return len(s.firsts()) == 4 })
	clk.Advance(2 * time.Second)
	s.waitFor(t, "the second resend", func() bool { return len(s.resent()) > 1 })
	inOrder(t, "resends", s.resent(), []string{ids[2], more[0]})
	waitFor(t, "the resends metric", nil, func() bool { return h.metric(t, "mpim_gateway_resends_total") >= 2 })
	if got := h.metric(t, "mpim_gateway_resends_total"); got != 2 {
		t.Errorf("resends metric %v, want 2", got)
	}
	inOrder(t, "first pushes", s.firsts(), append(ids, more...))
}

func TestCursorMovesOnlyForwardAndSurvivesReattachOnAnotherGateway(t *testing.T) {
	e := newEnv(t)
	a := e.hub(t, "gw-a", nil, nil)
	b := e.hub(t, "gw-b", nil, nil)
	ctx := context.Background()
	u := newUser()
	s := newSink()
	d, err := a.Attach(ctx, u, "d", s)
	if err != nil {
		t.Fatal(err)
	}
	ids := e.project(t, u, 10)
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 10 })

	if err := d.Ack(ctx, ids[5]); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{ids[3], ids[5], "99999999999999-0", "1-0"} { // older, repeated, never pushed
		if err := d.Ack(ctx, id); err != nil {
			t.Fatalf("ack %s: %v", id, err)
		}
	}
	if got := e.cursor(t, u, "d"); got != ids[5] {
		t.Fatalf("cursor %s, want %s", got, ids[5])
	}
	if err := d.Ack(ctx, "not-an-id"); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("malformed ack: %v, want an EInvalid error", err)
	}

	// Another attachment of the device moved the cursor further: this one's
	// older acknowledgement must not move it back.
	e.setCursor(t, u, "d", ids[7])
	if err := d.Ack(ctx, ids[6]); err != nil {
		t.Fatal(err)
	}
	if got := e.cursor(t, u, "d"); got != ids[7] {
		t.Fatalf("cursor %s moved back from %s", got, ids[7])
	}
	d.Detach(ctx, false)

	s2 := newSink()
	b.attach(t, u, "d", s2)
	s2.waitFor(t, "catch-up on the other gateway", func() bool { return len(s2.firsts()) == 2 })
	live := e.project(t, u, 3)
	s2.waitFor(t, "live on the other gateway", func() bool { return len(s2.firsts()) == 5 })
	inOrder(t, "resumed", s2.firsts(), append(ids[8:], live...))
	if n := len(s2.syncCursors()); n != 0 {
		t.Fatalf("%d sync requests on resume", n)
	}
}

func TestEveryDeviceOfAUserHasItsOwnCursorAndReceivesEverything(t *testing.T) {
	e := newEnv(t)
	a := e.hub(t, "gw-a", nil, nil)
	u := newUser()
	ctx := context.Background()
	phone, laptop := newSink(), newSink()
	dp := a.attach(t, u, "phone", phone)
	a.attach(t, u, "laptop", laptop)
	ids := e.project(t, u, 40)
	for name, s := range map[string]*sink{"phone": phone, "laptop": laptop} {
		s.waitFor(t, name, func() bool { return len(s.firsts()) == len(ids) })
		inOrder(t, name, s.firsts(), ids)
	}
	if err := dp.Ack(ctx, ids[39]); err != nil {
		t.Fatal(err)
	}
	if got, other := e.cursor(t, u, "phone"), e.cursor(t, u, "laptop"); got != ids[39] || other != "" {
		t.Fatalf("cursors phone %q laptop %q, want %q and none", got, other, ids[39])
	}
}

func TestSyncRequiredWhenEntriesLeftTheWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.MaxInFlight = 4; c.PageSize = 3 })

	t.Run("cursor older than the window: sync, then from the oldest entry", func(t *testing.T) {
		u := newUser()
		ids := e.add(t, u, 300)
		if err := e.rdb.XTrimMaxLen(ctx, e.keys.Inbox(u), 100).Err(); err != nil {
			t.Fatal(err)
		}
		e.setCursor(t, u, "d", ids[10])
		s := newSink()
		d := h.attach(t, u, "d", s)
		autoAck(t, d, s)
		s.waitFor(t, "the window", func() bool { return len(s.firsts()) == 100 })
		inOrder(t, "after sync", s.firsts(), ids[200:])
		inOrder(t, "sync requests", s.syncCursors(), []string{ids[10]})
	})

	t.Run("no cursor: sync, then from the inbox's end", func(t *testing.T) {
		u := newUser()
		e.add(t, u, 20)
		s := newSink()
		d := h.attach(t, u, "d", s)
		autoAck(t, d, s)
		ids := e.project(t, u, 5)
		s.waitFor(t, "new entries", func() bool { return len(s.firsts()) == 5 })
		inOrder(t, "after sync", s.firsts(), ids)
		inOrder(t, "sync requests", s.syncCursors(), []string{""})
	})

	t.Run("falling behind the window during the session", func(t *testing.T) {
		u := newUser()
		s := newSink()
		d := h.attach(t, u, "d", s)
		first := e.project(t, u, 10)
		s.waitFor(t, "in-flight bound", func() bool { return len(s.firsts()) == 4 }) // paused, unacknowledged
		later := e.add(t, u, 200)
		if err := e.rdb.XTrimMaxLen(ctx, e.keys.Inbox(u), 50).Err(); err != nil {
			t.Fatal(err)
		}
		autoAck(t, d, s)
		s.waitFor(t, "the rest of the window", func() bool { return len(s.firsts()) == 4+50 })
		inOrder(t, "after sync", s.firsts(), append(first[:4:4], later[150:]...))
		inOrder(t, "sync requests", s.syncCursors(), []string{"", first[3]})
	})
}

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
	e := newEnv(t)
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
	deadline := time.Now().Add(10 * time.Second)
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
