package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
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
	// Without a notification only the position check wakes the reader (the
	// rounds above would time out otherwise); a round added while the
	// reader still ends its previous read is found by that read, so the
	// wakes can be fewer than the rounds after the first.
	if got := h.metric(t, "mpim_gateway_position_check_wakes_total"); got < 1 {
		t.Errorf("position check wakes %v, want at least 1", got)
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
	waitFor(t, "the cursor to reach "+ids[5], nil, func() bool { return e.cursor(t, u, "d") == ids[5] })
	if err := d.Ack(ctx, "not-an-id"); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("malformed ack: %v, want an EInvalid error", err)
	}

	// Another attachment of the device moved the cursor further: this one's
	// older acknowledgement must not move it back.
	e.setCursor(t, u, "d", ids[7])
	if err := d.Ack(ctx, ids[6]); err != nil {
		t.Fatal(err)
	}
	d.Detach(ctx, false) // stores the acknowledged cursor
	if got := e.cursor(t, u, "d"); got != ids[7] {
		t.Fatalf("cursor %s moved back from %s", got, ids[7])
	}

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
	waitFor(t, "the phone's cursor", nil, func() bool { return e.cursor(t, u, "phone") == ids[39] })
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
