package stacktest

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// nextPush returns the next push of c and its event, skipping nothing:
// any other frame fails the test.
func nextPush(tb testing.TB, c *gatewaytest.Client, enc frame.Encoding) (*mpimv1.Push, *mpimv1.Event) {
	tb.Helper()
	f, err := c.Next(gatewaytest.Ctx(tb))
	if err != nil || f.GetPush() == nil {
		tb.Fatalf("frame %v, %v; want a push", f, err)
	}
	p := f.GetPush()
	ev := p.GetEvent()
	if enc == frame.Proto {
		ev = &mpimv1.Event{}
		if err := proto.Unmarshal(p.GetEnvelope(), ev); err != nil {
			tb.Fatal(err)
		}
	}
	return p, ev
}

// nextSync expects the SyncRequired a device without a cursor gets first.
func nextSync(tb testing.TB, c *gatewaytest.Client) {
	tb.Helper()
	f, err := c.Next(gatewaytest.Ctx(tb))
	if err != nil || f.GetSyncRequired() == nil {
		tb.Fatalf("frame %v, %v; want sync_required", f, err)
	}
}

// TestEndToEndDeliveryWithTheRealHub runs the gateway on the real delivery
// hub and inbox projector: live pushes to every device but the sending one
// (the sender's other devices too), acknowledgements that survive a reconnect, typing and
// presence across the hub.
func TestEndToEndDeliveryWithTheRealHub(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := newEnv(t, gatewaytest.RealDelivery(t))
		e.runInbox(t)
		a, b := e.Login(t, enc, "amy"), e.Login(t, enc, "bob")
		nextSync(t, a.Conn)
		nextSync(t, b.Conn)
		a2 := e.Dial(t, enc)
		gatewaytest.OK(t, a2, gatewaytest.LoginReq("amy", "password-amy", "d2"))
		nextSync(t, a2)

		sent := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "hello", "c-1")).GetSend()
		for _, c := range []*gatewaytest.Client{b.Conn, a2} { // a.Conn, the sender, has it from the answer
			p, ev := nextPush(t, c, enc)
			if p.GetType() != "MessageSent" || ev.GetMessageSent().GetText() != "hello" || ev.GetSeq() != sent.GetSeq() ||
				!bytes.Equal(ev.GetId(), sent.GetEventId()) || p.GetInboxId() == "" {
				t.Fatalf("push %v (event %v), want the message sent as %v", p, ev, sent)
			}
			gatewaytest.OK(t, c, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: p.GetInboxId()}})
		}

		// b reconnects with its token: the acknowledged message is not
		// pushed again; the next one is.
		b.Conn.Close()
		b2 := e.Dial(t, enc)
		gatewaytest.OK(t, b2, gatewaytest.ResumeReq(b.Token))
		sent2 := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "again", "c-2")).GetSend()
		if p, ev := nextPush(t, b2, enc); ev.GetSeq() != sent2.GetSeq() || ev.GetMessageSent().GetText() != "again" {
			t.Fatalf("after resume: push %v (event %v), want only the new message", p, ev)
		}

		// Ephemeral signals and presence go through the hub.
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Typing{Typing: &mpimv1.TypingRequest{ConversationId: sent.GetConversationId()}})
		if s := nextSignal(t, b2); s.GetFromUserId() != a.ID || s.GetKind() != "typing" {
			t.Fatalf("signal %v", s)
		}
		gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.ID}})
		gatewaytest.OK(t, b2, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.ID}})
		e.project(t)
		ps := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Presence{Presence: &mpimv1.PresenceRequest{}}).GetPresence().GetUsers()
		if len(ps) != 1 || ps[0].GetUserId() != b.ID || !ps[0].GetOnline() {
			t.Fatalf("presence %v", ps)
		}
	})
}

// A device that connects again while its older connection is still open
// (a stale tab, a reconnect before the old socket died) takes over: the
// older connection is closed with 4001 and a reason, instead of staying
// open and receiving nothing; the newer one gets the pushes.
func TestSameDeviceAgainClosesTheOlderConnection(t *testing.T) {
	e := newEnv(t, gatewaytest.RealDelivery(t))
	e.runInbox(t)
	a, b := e.Login(t, frame.JSON, "ann"), e.Login(t, frame.Proto, "ben")
	nextSync(t, a.Conn)
	nextSync(t, b.Conn)
	again := e.Dial(t, frame.Proto)
	gatewaytest.OK(t, again, gatewaytest.ResumeReq(b.Token))
	nextSync(t, again) // b never acknowledged anything: no stored cursor
	select {
	case <-b.Conn.Done():
	case <-time.After(time.Minute): // a hang detector, not a bound on speed
		t.Fatal("the older connection of the device is still open")
	}
	if code, reason := b.Conn.CloseStatus(); code != 4001 || !strings.Contains(reason, "replaced") {
		t.Fatalf("older connection closed with %v %q (%v), want 4001 replaced", code, reason, b.Conn.Err())
	}
	sent := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "to the newer one", "c-1")).GetSend()
	if _, ev := nextPush(t, again, frame.Proto); ev.GetSeq() != sent.GetSeq() {
		t.Fatalf("newer connection got %v, want the message", ev)
	}
	gatewaytest.Ping(t, a.Conn)
}

// TestConcurrentSendersArriveGaplessAndInOrder has two users send to a third
// at the same time, over the real hub: the recipient gets every message
// once, each conversation's seqs 1..n in order.
func TestConcurrentSendersArriveGaplessAndInOrder(t *testing.T) {
	const n = 30
	e := newEnv(t, gatewaytest.RealDelivery(t))
	e.runInbox(t)
	a, b, c := e.Login(t, frame.Proto, "ada"), e.Login(t, frame.JSON, "bea"), e.Login(t, frame.Proto, "cal")
	nextSync(t, c.Conn)
	errs := make(chan error, 2)
	for _, u := range []*gatewaytest.User{a, b} {
		go func() {
			for i := range n {
				r, err := u.Conn.Call(gatewaytest.Ctx(t), gatewaytest.SendTo(c.ID, u.Name+" "+strconv.Itoa(i), u.Name+"-"+strconv.Itoa(i)))
				if err == nil && r.GetError() != nil {
					err = errors.New(r.GetError().GetMessage())
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	last := map[string]uint64{}
	var lastInbox string
	for range 2 * n {
		p, ev := nextPush(t, c.Conn, frame.Proto)
		conv := ev.GetMessageSent().GetConversationId()
		if ev.GetSeq() != last[conv]+1 {
			t.Fatalf("conversation %s: seq %d after %d", conv, ev.GetSeq(), last[conv])
		}
		last[conv] = ev.GetSeq()
		lastInbox = p.GetInboxId()
	}
	gatewaytest.OK(t, c.Conn, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: lastInbox}})
	if len(last) != 2 {
		t.Fatalf("conversations %v", last)
	}
}
