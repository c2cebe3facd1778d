package main

import (
	"context"
	"strings"
	"testing"

	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// Checks of the audits themselves: each must fail on what it is there to
// catch, so that a clean audit in the fault and e2e tests means something.

// One client message id appended under two event ids (the idempotency
// record of the first send deleted before the second) fails the log audit.
func TestAuditLogCatchesAClientMessageIDAppendedTwice(t *testing.T) {
	w := commandtest.New(t, commandtest.Options{Partitions: 4})
	ctx := context.Background()
	alice := commandtest.Register(t, w.Svc, "alice", "Alice")
	bob := commandtest.Register(t, w.Svc, "bob", "Bob")
	conv := domain.DirectConversation(alice.User, bob.User)
	msg := domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "once", ClientMsgID: "m1"}
	first, err := w.Svc.Send(ctx, alice, msg)
	if err != nil {
		t.Fatal(err)
	}
	sent := []sentMsg{{key: msgKey{conv: string(conv), sender: string(alice.User), clientMsgID: "m1"}, eventID: string(first.EventID[:]), seq: first.Seq}}
	// The log of commandtest is not trimmed: it is read from the stream.
	store := openLog(t, w.Addr, w.Prefix, 4)
	if la := checkLog(t, store, 4, store.ReadPartition, sent, logAudit{}); !la.clean(1) {
		t.Fatalf("the log audit fails a clean log: %v", la)
	}
	keys, err := w.RDB.Keys(ctx, w.Prefix+"*i:send:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("idempotency keys %v, %v; want one", keys, err)
	}
	if err := w.RDB.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	again, err := w.Svc.Send(ctx, alice, msg)
	if err != nil || again.Duplicate || again.EventID == first.EventID {
		t.Fatalf("send after deleting the idempotency record: %+v, %v; want a second message", again, err)
	}
	la := checkLog(t, store, 4, store.ReadPartition, sent, logAudit{})
	if la.clean(1) || la.dupClient != 1 {
		t.Fatalf("the log audit passes a client message id appended twice: %v", la)
	}
	t.Logf("caught: %v", la)
}

// auditFixture is a device of bob, offline, fed pushes by hand.
type auditFixture struct {
	t                *testing.T
	ann, bob, eve    *e2eUser
	d                *e2eDevice
	cn               *e2eConn
	conv, eveConv    string
	sentToBob, toEve sentMsg
}

func newAuditFixture(t *testing.T) *auditFixture {
	f := &auditFixture{t: t, ann: &e2eUser{name: "ann", id: "u/ann"}, bob: &e2eUser{name: "bob", id: "u/bob"}, eve: &e2eUser{name: "eve", id: "u/eve"}}
	f.d = &e2eDevice{cl: &e2eCluster{t: t}, user: f.bob, id: "phone", inboxOf: map[string]string{}, pushedAll: map[string]bool{}, byMsg: map[msgKey][]int{}, lastSeq: map[string]uint64{}, ownSeqs: map[string]map[uint64]bool{}}
	f.cn = f.newConn()
	f.conv, f.eveConv = "d/ann.bob", "d/ann.eve"
	f.sentToBob = sentMsg{key: msgKey{f.conv, f.ann.id, "a1"}, eventID: eventID(1), seq: 1, to: []*e2eUser{f.ann, f.bob}}
	f.toEve = sentMsg{key: msgKey{f.eveConv, f.ann.id, "a2"}, eventID: eventID(2), seq: 1, to: []*e2eUser{f.ann, f.eve}}
	return f
}

func (f *auditFixture) newConn() *e2eConn {
	return &e2eConn{kick: make(chan struct{}, 1), pushed: map[string]bool{}}
}

func eventID(n byte) string { return string(append(make([]byte, 15), n)) }

// push pushes m's event to bob's device as inbox entry inboxID.
func (f *auditFixture) push(cn *e2eConn, m sentMsg, inboxID string, resend bool) {
	f.pushBy(cn, m, inboxID, resend, "phone")
}

// pushBy is push of an event made by the sender's device device.
func (f *auditFixture) pushBy(cn *e2eConn, m sentMsg, inboxID string, resend bool, device string) {
	ev := &mpimv1.Event{Id: []byte(m.eventID), Seq: m.seq, Actor: &mpimv1.Actor{UserId: m.key.sender, DeviceId: device},
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{
			ConversationId: m.key.conv, SenderId: m.key.sender, ClientMsgId: m.key.clientMsgID}}}
	env, err := proto.Marshal(ev)
	if err != nil {
		f.t.Fatal(err)
	}
	f.d.push(cn, &mpimv1.Push{InboxId: inboxID, Type: "MessageSent", Envelope: env, Resend: resend})
}

// bobSends is a message of bob's device in the conversation with ann,
// with seq, shown on the device from its send's answer.
func (f *auditFixture) bobSends(clientMsgID string, id byte, seq uint64) sentMsg {
	m := sentMsg{key: msgKey{f.conv, f.bob.id, clientMsgID}, eventID: eventID(id), seq: seq, to: []*e2eUser{f.ann, f.bob}}
	f.d.sent(m)
	return m
}

// annSays is a message of ann's in the conversation with bob, with seq.
func (f *auditFixture) annSays(clientMsgID string, id byte, seq uint64) sentMsg {
	return sentMsg{key: msgKey{f.conv, f.ann.id, clientMsgID}, eventID: eventID(id), seq: seq, to: []*e2eUser{f.ann, f.bob}}
}

// ack confirms bob's ack of inboxID on cn.
func (f *auditFixture) ack(cn *e2eConn, inboxID string) {
	f.d.ackAnswered(cn, inboxID, &mpimv1.Response{Result: &mpimv1.Response_Ack{Ack: &mpimv1.Done{}}})
}

// The device audit passes what the delivery contract allows (a resend
// before the ack, a push again on the next connection before the ack) and
// fails, each on its own: a push after the ack, a repeat on one connection
// without the resend mark, a resend of an entry never pushed there, an
// event under a second inbox id (unless the test interrupts the inbox
// projector), an ack error, and a message shown to a non-member.
func TestDeviceAuditCatchesForbiddenPushes(t *testing.T) {
	allowed := newAuditFixture(t)
	allowed.push(allowed.cn, allowed.sentToBob, "1-1", false)
	allowed.push(allowed.cn, allowed.sentToBob, "1-1", true) // the ack timed out
	next := allowed.newConn()                                // the connection dropped before the ack
	allowed.push(next, allowed.sentToBob, "1-1", false)
	allowed.ack(next, "1-1")
	if a := audit([]sentMsg{allowed.sentToBob}, []*e2eDevice{allowed.d}); !a.ok() || a.stats.dupPushes != 2 {
		t.Fatalf("allowed repeats fail the audit: %v", a)
	}
	// The device's own messages are shown from their answers, not pushed:
	// the pushes of the conversation go past their seqs.
	own := newAuditFixture(t)
	own.push(own.cn, own.sentToBob, "1-1", false)
	mine := own.bobSends("b1", 5, 2)
	after := own.annSays("a5", 6, 3)
	own.push(own.cn, after, "1-2", false)
	if a := audit([]sentMsg{own.sentToBob, mine, after}, []*e2eDevice{own.d}); !a.ok() || a.checked != 3 {
		t.Fatalf("the device's own message, shown from its answer, fails the audit: %v", a)
	}

	for _, c := range []struct {
		name  string
		do    func(f *auditFixture)
		count func(a deliveryAudit) int
	}{
		{"a push after the ack of an entry never shown", func(f *auditFixture) {
			second := f.sentToBob
			second.key.clientMsgID, second.eventID, second.seq = "a3", eventID(3), 2
			f.push(f.cn, second, "1-2", false)
			f.ack(f.cn, "1-2")
			f.push(f.newConn(), f.sentToBob, "1-1", false)
		}, func(a deliveryAudit) int { return a.stats.afterAck }},
		{"a resend after the ack", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.ack(f.cn, "1-1")
			f.push(f.cn, f.sentToBob, "1-1", true)
		}, func(a deliveryAudit) int { return a.stats.afterAck }},
		{"an unmarked repeat on one connection", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.push(f.cn, f.sentToBob, "1-1", false)
		}, func(a deliveryAudit) int { return a.stats.unmarked }},
		{"a resend of an entry new on the connection", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", true)
		}, func(a deliveryAudit) int { return a.stats.unmarked }},
		{"an event under a second inbox id", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.push(f.cn, f.sentToBob, "1-2", false)
		}, func(a deliveryAudit) int { return a.stats.refanned }},
		{"an ack error", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.d.ackAnswered(f.cn, "1-1", &mpimv1.Response{Result: &mpimv1.Response_Error{Error: &mpimv1.Error{Code: "unavailable"}}})
		}, func(a deliveryAudit) int { return a.stats.ackErrors }},
		{"a message never shown on a member's device", func(f *auditFixture) {}, func(a deliveryAudit) int { return a.missing }},
		{"a message pushed back to the device that sent it", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.pushBy(f.cn, f.bobSends("b1", 5, 2), "1-2", false, "phone")
		}, func(a deliveryAudit) int { return a.stats.echoes }},
		{"a gap of a message the device did not send", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.bobSends("b1", 5, 2)
			f.push(f.cn, f.annSays("a5", 6, 4), "1-2", false) // seq 3 skipped
		}, func(a deliveryAudit) int { return a.stats.gaps }},
		{"a message to a non-member", func(f *auditFixture) {
			f.push(f.cn, f.sentToBob, "1-1", false)
			f.push(f.cn, f.toEve, "1-2", false)
		}, func(a deliveryAudit) int { return a.nonMember }},
	} {
		f := newAuditFixture(t)
		c.do(f)
		a := audit([]sentMsg{f.sentToBob, f.toEve}, []*e2eDevice{f.d})
		if a.ok() || c.count(a) != 1 {
			t.Errorf("%s: the audit passes it or counts it %d times: %v", c.name, c.count(a), a)
		} else {
			t.Logf("%s caught: %s", c.name, strings.SplitN(a.String(), "\n", 2)[1])
		}
	}

	// An event under a second inbox id is allowed when the test interrupts
	// the inbox projector, and an unavailable ack during an outage.
	f := newAuditFixture(t)
	f.d.cl.faults.refanout.Store(true)
	f.d.cl.faults.outage.Store(true)
	f.push(f.cn, f.sentToBob, "1-1", false)
	f.d.ackAnswered(f.cn, "1-1", &mpimv1.Response{Result: &mpimv1.Response_Error{Error: &mpimv1.Error{Code: "unavailable"}}})
	f.push(f.cn, f.sentToBob, "1-2", false)
	if a := audit([]sentMsg{f.sentToBob}, []*e2eDevice{f.d}); !a.ok() || a.stats.refanned != 1 || a.stats.ackOutage != 1 {
		t.Fatalf("allowed faults fail the audit: %v", a)
	}
	// An entry acknowledged on one connection and pushed again on the next
	// one (its cursor was not stored yet) is allowed, under the inbox id it
	// was shown with; not under another one.
	k := newAuditFixture(t)
	k.push(k.cn, k.sentToBob, "1-1", false)
	k.ack(k.cn, "1-1")
	k.push(k.newConn(), k.sentToBob, "1-1", false)
	if a := audit([]sentMsg{k.sentToBob}, []*e2eDevice{k.d}); !a.ok() || a.stats.redelivered != 1 {
		t.Fatalf("a redelivery on the next connection fails the audit: %v", a)
	}
	k = newAuditFixture(t)
	k.push(k.cn, k.sentToBob, "1-1", false)
	k.ack(k.cn, "1-1")
	k.push(k.newConn(), k.sentToBob, "1-0", false)
	if a := audit([]sentMsg{k.sentToBob}, []*e2eDevice{k.d}); a.ok() || a.stats.afterAck != 1 {
		t.Fatalf("an acknowledged event pushed under an earlier inbox id passes the audit: %v", a)
	}
	// An event fanned out twice (the test interrupts the inbox projector)
	// is in the inbox under two ids, both pushed in inbox order; the next
	// connection, from an older stored cursor, pushes both again: each is
	// redelivered under its own inbox id. (The audit took the second for a
	// push after the ack: the fault tests' rare "pushed after the device's
	// ack" failures.) An entry at or before the ack that was never pushed
	// to the device is still caught, under either id.
	r := newAuditFixture(t)
	r.d.cl.faults.refanout.Store(true)
	other := r.annSays("a3", 3, 2)
	r.push(r.cn, r.sentToBob, "1-1", false)
	r.push(r.cn, other, "1-2", false)
	r.push(r.cn, r.sentToBob, "1-3", false) // the second fan-out
	r.ack(r.cn, "1-3")
	again := r.newConn()
	for _, id := range []string{"1-1", "1-2", "1-3"} {
		m := r.sentToBob
		if id == "1-2" {
			m = other
		}
		r.push(again, m, id, false)
	}
	if a := audit([]sentMsg{r.sentToBob, other}, []*e2eDevice{r.d}); !a.ok() || a.stats.redelivered != 3 || a.stats.redeliveredRefanned != 1 {
		t.Fatalf("a redelivery of an event's two inbox ids on the next connection fails the audit: %v", a)
	}
	r = newAuditFixture(t)
	r.d.cl.faults.refanout.Store(true)
	r.push(r.cn, r.sentToBob, "1-1", false)
	r.push(r.cn, other, "1-3", false)
	r.ack(r.cn, "1-3")
	r.push(r.newConn(), r.sentToBob, "1-2", false) // its second id, never pushed before
	if a := audit([]sentMsg{r.sentToBob, other}, []*e2eDevice{r.d}); a.ok() || a.stats.afterAck != 1 {
		t.Fatalf("an acknowledged event's second inbox id, never pushed before, passes the audit: %v", a)
	}
}
