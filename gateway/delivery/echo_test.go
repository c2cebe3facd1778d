package delivery_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/redis/go-redis/v9"
)

// echoSetup starts a hub and attaches two devices of one user, "phone" and
// "laptop", both with a stored cursor at the inbox's start (so neither is
// new), and waits until the hub listens for notifications.
func echoSetup(tb testing.TB, mod func(*delivery.Config)) (e *env, h *testHub, u domain.UserID, phone, laptop *sink, dPhone, dLaptop *delivery.Device) {
	tb.Helper()
	e = newEnv(tb)
	h = e.hub(tb, "gw-1", nil, mod)
	e.waitSubscribed(tb, "gw-1")
	u = newUser()
	e.setCursor(tb, u, "phone", "0-1")
	e.setCursor(tb, u, "laptop", "0-1")
	phone, laptop = newSink(), newSink()
	dPhone = h.attach(tb, u, "phone", phone)
	dLaptop = h.attach(tb, u, "laptop", laptop)
	return e, h, u, phone, laptop, dPhone, dLaptop
}

// ids returns the inbox ids of a head's entries.
func ids(h inbox.Head) []string {
	var out []string
	for _, c := range h.Entries {
		out = append(out, c.ID)
	}
	return out
}

// A message sent by the phone is not pushed to the phone, whether the
// notification carries it or the phone reads its inbox; the laptop (the
// same user's other device) gets it, and the phone gets everything else,
// including the laptop's messages and its own edits.
func TestSendingDeviceGetsNoEchoItsOtherDevicesDo(t *testing.T) {
	for _, carried := range []bool{true, false} {
		name := "read from the inbox"
		if carried {
			name = "carried by the notification"
		}
		t.Run(name, func(t *testing.T) {
			e, h, u, phone, laptop, _, _ := echoSetup(t, nil)
			head := e.appendCarried(t, u,
				entryBy(t, "MessageSent", u, "phone"),
				entryBy(t, "MessageSent", "u/x", "dev"),
				entryBy(t, "MessageSent", u, "laptop"),
				entryBy(t, "MessageEdited", u, "phone"),
				entryBy(t, "MessageSent", u, "phone"))
			if carried {
				e.publish(t, "gw-1", head)
			} else if err := e.notifyRoutes(u, head.Last); err != nil {
				t.Fatal(err)
			}
			all := ids(head)
			laptop.waitFor(t, "the laptop's pushes", func() bool { return len(laptop.firsts()) >= len(all)-1 })
			inOrder(t, "laptop", laptop.firsts(), []string{all[0], all[1], all[3], all[4]})
			waitFor(t, "the phone's echoes skipped", phone.changed, func() bool {
				return h.metric(t, "mpim_gateway_echoes_skipped_total") == 3
			})
			inOrder(t, "phone", phone.firsts(), []string{all[1], all[2], all[3]})
		})
	}
}

// A device whose only new entries are its own messages gets its cursor
// moved past them (stored at the next interval), so its next connection
// does not read them again; attached again it is pushed nothing of them.
func TestOwnEchoesMoveTheCursorWithoutAnAck(t *testing.T) {
	e, h, u, phone, _, dPhone, _ := echoSetup(t, nil)
	head := e.appendCarried(t, u, entryBy(t, "MessageSent", u, "phone"), entryBy(t, "MessageSent", u, "phone"))
	e.publish(t, "gw-1", head)
	waitFor(t, "the phone's cursor past its echoes", nil, func() bool { return e.cursor(t, u, "phone") == head.Last })
	if n := len(phone.firsts()); n != 0 {
		t.Fatalf("%d pushes to the sending device, want none", n)
	}
	dPhone.Detach(context.Background(), true)
	again := newSink()
	h.attach(t, u, "phone", again)
	later := e.project(t, u, 1)
	again.waitFor(t, "the next push", func() bool { return len(again.firsts()) > 0 })
	inOrder(t, "after reattaching", again.firsts(), later)
}

// An echo behind a push in flight is acknowledged with that push: the
// acknowledgement of the push moves the cursor through the echoes right
// after it (up to the next push, or the last entry), not only to the push.
func TestAckOfAPushCoversTheEchoesAfterIt(t *testing.T) {
	for _, c := range []struct {
		name   string
		ownAt  []bool // the entries, true for the phone's own
		pushes int    // of them pushed to the phone
		want   int    // the entry the cursor is at after the ack of the first
	}{
		{"between two pushes", []bool{false, true, false, true, true}, 2, 1},
		{"after the last push", []bool{false, true, true}, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, h, u, phone, _, dPhone, _ := echoSetup(t, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
			var entries []inbox.Entry
			owns := 0
			for _, own := range c.ownAt {
				if own {
					owns++
					entries = append(entries, entryBy(t, "MessageSent", u, "phone"))
				} else {
					entries = append(entries, entryBy(t, "MessageSent", "u/x", "dev"))
				}
			}
			head := e.appendCarried(t, u, entries...)
			e.publish(t, "gw-1", head)
			all := ids(head)
			phone.waitFor(t, "the pushes", func() bool { return len(phone.firsts()) == c.pushes })
			waitFor(t, "the echoes skipped", nil, func() bool { return h.metric(t, "mpim_gateway_echoes_skipped_total") == float64(owns) })
			if err := dPhone.Ack(context.Background(), all[0]); err != nil {
				t.Fatal(err)
			}
			dPhone.Detach(context.Background(), false) // stores the acknowledged cursor
			if got := e.cursor(t, u, "phone"); got != all[c.want] {
				t.Fatalf("cursor %s after acknowledging %s, want the echo %s", got, all[0], all[c.want])
			}
		})
	}
}

// A new device (no stored cursor) whose first entry is its own message
// stores its cursor at that echo, as it would its first acknowledgement:
// after a gateway kill it resumes there on another gateway and is not
// taken for new.
func TestANewDeviceWhoseFirstEntryIsItsEchoResumesAfterIt(t *testing.T) {
	e := newEnv(t)
	doomed := redis.NewClient(&redis.Options{Addr: e.addr})
	a := e.hub(t, "gw-a", doomed, func(c *delivery.Config) { c.AckInterval = 5 * time.Second })
	e.waitSubscribed(t, "gw-a")
	u := newUser()
	e.project(t, u, 1) // before the device's first attachment
	s := newSink()
	a.attach(t, u, "d", s)
	waitFor(t, "the sync request", s.changed, func() bool { return len(s.syncCursors()) == 1 })
	head := e.appendCarried(t, u, entryBy(t, "MessageSent", u, "d"))
	e.publish(t, "gw-a", head)
	waitFor(t, "the cursor at the echo", nil, func() bool { return e.cursor(t, u, "d") == head.Last })
	doomed.Close()
	away := e.project(t, u, 2)

	b := e.hub(t, "gw-b", nil, nil)
	s2 := newSink()
	b.attach(t, u, "d", s2)
	s2.waitFor(t, "re-delivery", func() bool { f := s2.firsts(); return len(f) > 0 && f[len(f)-1] == away[1] })
	inOrder(t, "resumed", s2.firsts(), away)
	if n := len(s2.syncCursors()); n != 0 {
		t.Fatalf("%d sync requests on resume: the device was taken for new", n)
	}
	if n := len(s.firsts()); n != 0 {
		t.Fatalf("%d pushes to the sending device, want none", n)
	}
}

// An entry whose envelope is malformed is not taken for an echo: the
// device that the entry's type names as sender still gets it (the
// envelope check errs towards a push, never towards a loss).
func TestAMalformedEnvelopeIsPushedNotSkipped(t *testing.T) {
	e, _, u, phone, _, _, _ := echoSetup(t, nil)
	bad := entryBy(t, "MessageSent", u, "phone")
	bad.Envelope = slices.Concat(bad.Envelope, []byte{0x2a, 0x7f}) // actor field cut short
	head := e.appendCarried(t, u, bad)
	e.publish(t, "gw-1", head)
	phone.waitFor(t, "the push", func() bool { return len(phone.firsts()) == 1 })
	inOrder(t, "phone", phone.firsts(), ids(head))
}
