package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// isXRange matches XRANGE.
func isXRange(cmd redis.Cmder) bool { return strings.EqualFold(cmd.Name(), "xrange") }

// entryBy returns an inbox entry of type typ whose actor is device of user.
func entryBy(tb testing.TB, typ string, user domain.UserID, device string) inbox.Entry {
	tb.Helper()
	id := ulid.Make()
	env, err := proto.Marshal(&mpimv1.Event{Id: id[:], Aggregate: "d/test", OccurredAtMs: time.Now().UnixMilli(),
		Actor: &mpimv1.Actor{UserId: string(user), DeviceId: device}})
	if err != nil {
		tb.Fatal(err)
	}
	return inbox.Entry{EventID: id, Type: typ, Partition: 0, Position: "1-1", Version: 1, Seq: 1, Envelope: env}
}

// appendCarried appends entries to user's inbox as the inbox projector does
// (after reading the id before them, in one transaction) and returns the
// head that carries them.
func (e *env) appendCarried(tb testing.TB, user domain.UserID, entries ...inbox.Entry) inbox.Head {
	tb.Helper()
	ctx := context.Background()
	var before *redis.XMessageSliceCmd
	cmds := make([]*redis.StringCmd, len(entries))
	_, err := e.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		before = p.XRevRangeN(ctx, e.keys.Inbox(user), "+", "-", 1)
		for i := range entries {
			cmds[i] = p.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Inbox(user), Values: entries[i].AppendFields(nil)})
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := inbox.Head{User: user, Prev: "0-0"}
	if m := before.Val(); len(m) > 0 {
		h.Prev = m[0].ID
	}
	for i, c := range cmds {
		h.Entries = append(h.Entries, inbox.Carried{ID: c.Val(), Entry: entries[i]})
		h.Last = c.Val()
	}
	return h
}

// publish sends a notification of heads to gateway gw.
func (e *env) publish(tb testing.TB, gw string, heads ...inbox.Head) {
	tb.Helper()
	n := inbox.Notification{Users: heads}
	if err := e.rdb.Publish(context.Background(), e.keys.Notify(gw), n.Encode()).Err(); err != nil {
		tb.Fatal(err)
	}
}

// settle attaches a device of a fresh user on h and waits until a first
// live push reached it and no read of it is pending, so the device is idle
// at the inbox's end. (The push's notification may come while the
// attach's read runs, which then reads once more after the push.)
func settle(t *testing.T, e *env, h *testHub, user domain.UserID, device string) (*delivery.Device, *sink, []string) {
	t.Helper()
	s := newSink()
	d := h.attach(t, user, domain.DeviceID(device), s)
	ids := e.project(t, user, 1)
	s.waitFor(t, "the first push", func() bool { return len(s.firsts()) == 1 })
	s.waitFor(t, "the device idle after its first push", d.Idle)
	return d, s, ids
}

// carriedSetup starts a hub of gateway gw-1 whose XRANGEs are counted
// (without position checks) and a settled, auto-acknowledging device of a
// fresh user; want is what it was pushed so far.
func carriedSetup(t *testing.T) (e *env, h *testHub, xr *cmdCounter, user domain.UserID, s *sink, want []string) {
	t.Helper()
	e = newEnv(t)
	rdb, xr := e.countingClient(t, isXRange)
	h = e.hub(t, "gw-1", rdb, func(c *delivery.Config) { c.PollInterval = time.Hour })
	e.waitSubscribed(t, "gw-1")
	user = newUser()
	d, s, want := settle(t, e, h, user, "phone")
	autoAck(t, d, s)
	return e, h, xr, user, s, want
}

func TestCarriedEntriesArePushedInOrderWithoutReading(t *testing.T) {
	e, h, xr, user, s, want := carriedSetup(t)
	reads := xr.n.Load()
	for range 20 {
		head := e.appendCarried(t, user, entryBy(t, "MessageSent", "u/x", "dev"), entryBy(t, "MessageSent", "u/x", "dev"))
		for _, c := range head.Entries {
			want = append(want, c.ID)
		}
		e.publish(t, "gw-1", head)
	}
	s.waitFor(t, "every carried entry", func() bool { return len(s.firsts()) >= len(want) })
	inOrder(t, "pushes", s.firsts(), want)
	if n := xr.n.Load() - reads; n != 0 {
		t.Fatalf("%d XRANGEs for carried entries, want none", n)
	}
	if n := h.metric(t, "mpim_gateway_carried_deliveries_total"); n != 40 {
		t.Fatalf("carried deliveries metric %v, want 40", n)
	}
}

func TestCarriedEntriesAfterAGapAreReadInOrder(t *testing.T) {
	e, h, xr, user, s, want := carriedSetup(t)
	reads := xr.n.Load()
	// A notification was lost: these entries were never announced.
	want = append(want, e.add(t, user, 5)...)
	head := e.appendCarried(t, user, entryBy(t, "MessageSent", "u/x", "dev"), entryBy(t, "MessageSent", "u/x", "dev"))
	for _, c := range head.Entries {
		want = append(want, c.ID)
	}
	e.publish(t, "gw-1", head)
	s.waitFor(t, "every entry", func() bool { return len(s.firsts()) >= len(want) })
	inOrder(t, "pushes", s.firsts(), want)
	if xr.n.Load() == reads {
		t.Fatal("the gap was filled without reading the inbox")
	}
	if n := h.metric(t, "mpim_gateway_carried_deliveries_total"); n != 0 {
		t.Fatalf("carried deliveries metric %v after a gap, want 0", n)
	}
	if n := h.metric(t, "mpim_gateway_carried_misses_total"); n != 1 {
		t.Fatalf("carried misses metric %v, want 1", n)
	}
}
