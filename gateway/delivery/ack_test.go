package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/redis/go-redis/v9"
)

// cursorWrite matches the cursor scripts (EVALSHA/EVAL on a ":cursor:"
// key).
func cursorWrite(cmd redis.Cmder) bool {
	args := cmd.Args()
	if name := strings.ToLower(cmd.Name()); (name == "evalsha" || name == "eval") && len(args) > 3 {
		key, _ := args[3].(string)
		return strings.Contains(key, ":cursor:")
	}
	return false
}

// pushedDevice attaches device "d" of a new user to h and projects n
// entries into its inbox; it returns once all n were pushed.
func (e *env) pushedDevice(tb testing.TB, h *testHub, n int) (domain.UserID, *delivery.Device, []string) {
	tb.Helper()
	u, s := newUser(), newSink()
	d := h.attach(tb, u, "d", s)
	ids := e.project(tb, u, n)
	s.waitFor(tb, "pushes", func() bool { return len(s.firsts()) == n })
	return u, d, ids
}

// Acknowledgements only update memory: with an interval longer than the
// test, a stream of acks writes no cursor, and the detach writes the
// highest one, once.
func TestAcksWriteNoCursorUntilTheDetachWritesTheLast(t *testing.T) {
	e := newEnv(t)
	rdb, writes := e.countingClient(t, cursorWrite)
	a := e.hub(t, "gw-a", rdb, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
	ctx := context.Background()
	u, d, ids := e.pushedDevice(t, a, 30)
	base := writes.n.Load()
	for _, id := range ids {
		if err := d.Ack(ctx, id); err != nil {
			t.Fatalf("ack %s: %v", id, err)
		}
	}
	if err := d.Ack(ctx, ids[3]); err != nil { // older: changes nothing
		t.Fatal(err)
	}
	// The first ack of a device without a stored cursor is stored at once
	// (TestANewDeviceResumesFromItsFirstAck), the others only in memory.
	if n, cur := writes.n.Load()-base, e.cursor(t, u, "d"); n != 1 || cur != ids[0] {
		t.Fatalf("%d cursor writes, cursor %q before the interval: want 1 and the first ack %s, later acks must only update memory", n, cur, ids[0])
	}
	d.Detach(ctx, false)
	if n, cur := writes.n.Load()-base, e.cursor(t, u, "d"); n != 2 || cur != ids[len(ids)-1] {
		t.Fatalf("after the detach: %d cursor writes, cursor %q; want 2 and %s", n, cur, ids[len(ids)-1])
	}
}

// Under a steady stream of acks the cursor is written at most once per
// interval, and reaches the last acknowledged id without a detach.
func TestAckedCursorIsWrittenAtMostOncePerInterval(t *testing.T) {
	e := newEnv(t)
	rdb, writes := e.countingClient(t, cursorWrite)
	const interval = 100 * time.Millisecond
	a := e.hub(t, "gw-a", rdb, func(c *delivery.Config) { c.AckInterval = interval })
	ctx := context.Background()
	u, d, ids := e.pushedDevice(t, a, 40)
	base := writes.n.Load() + 1 // the first ack is stored at once
	start := time.Now()
	for _, id := range ids {
		if err := d.Ack(ctx, id); err != nil {
			t.Fatalf("ack %s: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the cursor to reach the last ack", nil, func() bool { return e.cursor(t, u, "d") == ids[len(ids)-1] })
	ticks := int64(time.Since(start)/interval) + 1
	if n := writes.n.Load() - base; n > ticks || n >= int64(len(ids)) {
		t.Fatalf("%d cursor writes for %d acks over %d intervals: want at most one per interval", n, len(ids), ticks)
	}
}

// A gateway killed after acknowledgements it had not stored yet: the
// device, attached again elsewhere, is pushed everything after the last
// stored cursor (the unacknowledged entries and those acknowledged within
// the last interval, the same event ids again), in order, and nothing
// before it.
func TestAGatewayKilledWithinTheIntervalRedeliversFromTheStoredCursor(t *testing.T) {
	e := newEnv(t)
	doomed := redis.NewClient(&redis.Options{Addr: e.addr})
	a := e.hub(t, "gw-a", doomed, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
	ctx := context.Background()
	u, d, ids := e.pushedDevice(t, a, 10)
	if err := d.Ack(ctx, ids[0]); err != nil { // a new device's first ack: stored at once
		t.Fatal(err)
	}
	e.setCursor(t, u, "d", ids[4]) // stored by an earlier interval
	if err := d.Ack(ctx, ids[7]); err != nil {
		t.Fatal(err)
	}
	// The kill, within the interval: the gateway's Redis connection is
	// gone, so the ack is never stored and no detach runs.
	doomed.Close()
	if got := e.cursor(t, u, "d"); got != ids[4] {
		t.Fatalf("cursor %s, want the stored %s", got, ids[4])
	}

	b := e.hub(t, "gw-b", nil, nil)
	s2 := newSink()
	b.attach(t, u, domain.DeviceID("d"), s2)
	s2.waitFor(t, "re-delivery", func() bool { f := s2.firsts(); return len(f) > 0 && f[len(f)-1] == ids[9] })
	inOrder(t, "re-delivered", s2.firsts(), ids[5:])
	if n := len(s2.syncCursors()); n != 0 {
		t.Fatalf("%d sync requests on resume", n)
	}
}

// A device that attaches again on the same gateway before its acknowledged
// cursor was stored (the new connection replaces the old one, whose detach
// then stores nothing) resumes after what it acknowledged, not from the
// older stored cursor.
func TestReattachOnTheSameGatewayResumesAfterAnUnstoredAck(t *testing.T) {
	e := newEnv(t)
	a := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
	u, d, ids := e.pushedDevice(t, a, 10)
	if err := d.Ack(context.Background(), ids[6]); err != nil {
		t.Fatal(err)
	}
	s2 := newSink()
	a.attach(t, u, "d", s2)
	s2.waitFor(t, "the pushes after the ack", func() bool { f := s2.firsts(); return len(f) > 0 && f[len(f)-1] == ids[9] })
	inOrder(t, "resumed", s2.firsts(), ids[7:])
}

// The first acknowledgement of a new device is stored at once, not at the
// next interval: a gateway killed before it would store it leaves the
// device resumable, and on its next attachment (on another gateway) the
// device is pushed what arrived while it was away, without being treated
// as new (a new device starts at the inbox's end and would skip those).
func TestANewDeviceResumesFromItsFirstAck(t *testing.T) {
	e := newEnv(t)
	doomed := redis.NewClient(&redis.Options{Addr: e.addr})
	a := e.hub(t, "gw-a", doomed, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
	u := newUser()
	e.project(t, u, 2) // in the inbox before the device's first attachment
	s := newSink()
	d := a.attach(t, u, "d", s)
	ids := e.project(t, u, 3)
	s.waitFor(t, "pushes", func() bool { return len(s.firsts()) == 3 })
	if got := e.cursor(t, u, "d"); got != "" {
		t.Fatalf("cursor %q before any ack, want none", got)
	}
	for _, id := range ids[:2] {
		if err := d.Ack(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.cursor(t, u, "d"); got != ids[0] {
		t.Fatalf("cursor %q after the first acks, want the first one stored at once, %s", got, ids[0])
	}
	doomed.Close() // the kill: the second ack is never stored, no detach runs
	away := e.project(t, u, 2)

	b := e.hub(t, "gw-b", nil, nil)
	s2 := newSink()
	b.attach(t, u, "d", s2)
	s2.waitFor(t, "re-delivery", func() bool { f := s2.firsts(); return len(f) > 0 && f[len(f)-1] == away[1] })
	inOrder(t, "resumed", s2.firsts(), append(ids[1:], away...))
	if n := len(s2.syncCursors()); n != 0 {
		t.Fatalf("%d sync requests on resume: the device was taken for new", n)
	}
}
