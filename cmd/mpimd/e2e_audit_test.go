package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The senders of the end-to-end tests and the audit of what their
// messages' recipients show.

// sentMsg is a message whose send the server acknowledged.
type sentMsg struct {
	key       msgKey
	eventID   string
	seq       uint64
	to        []*e2eUser // every member of the conversation, the sender included
	duplicate bool       // answered as a duplicate: an earlier attempt had been appended
}

// faultAllowance is what a test does on purpose that the audits would
// otherwise count as failures. Everything else fails them.
type faultAllowance struct {
	// outage: the test holds Redis down; sends and acks may be answered
	// unavailable (neither counts towards maxSilentRetries or the ack
	// errors).
	outage atomic.Bool
	// refanout: the test may interrupt the inbox projector between its
	// inbox appends and its checkpoint (SIGKILL of the projector or of
	// Redis, a lost ZooKeeper session), which then appends the batch
	// again: an event may be pushed under a second inbox id.
	refanout atomic.Bool
}

// maxSilentRetries bounds the sends of one test (one sendStats) answered
// unavailable or conflict outside an outage the test causes. The harness
// retries them with the same client message id, unseen by the app, so a
// stack that failed sends now and then would otherwise pass every audit. A
// healthy stack answers none: conflict reaches a client only when all of a
// command's decide-and-append attempts (16) lost a race, unavailable only
// when a Redis call failed or timed out. 5 leaves room for a rare Redis
// timeout on a loaded 2-core machine; a stack failing sends systematically
// (a few percent of hundreds of sends) goes over it.
const maxSilentRetries = 5

// sendStats count what senders went through. They are safe for concurrent
// use through count; read them once the senders are done.
type sendStats struct {
	mu          sync.Mutex
	acked       int
	retries     int // sends repeated with the same client message id
	duplicates  int // answered with duplicate: the first attempt had been appended
	rateLimited int
	failed      int // answered unavailable or conflict outside an outage (then retried with the same client message id)
	outage      int // answered unavailable or conflict while the test held Redis down (retried too)
	dropped     int // sends whose connection was dropped right after their frame was written (sendDropped)
	dropDups    int // retries of those answered as duplicates, with the original event id
}

func (s *sendStats) count(f func(s *sendStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// send sends a text message with clientMsgID until the server acknowledges
// it: across reconnects, and when rate limited, it sends again with the same
// client message id. to are the members of the conversation.
func (d *e2eDevice) send(ctx context.Context, req *mpimv1.SendRequest, to []*e2eUser, st *sendStats) (sentMsg, error) {
	for {
		cn, err := d.current(ctx)
		if err != nil {
			return sentMsg{}, fmt.Errorf("%s: send %s: %w", d, req.GetClientMsgId(), err)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		r, err := cn.c.Call(cctx, &mpimv1.ClientFrame_Send{Send: req})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return sentMsg{}, fmt.Errorf("%s: send %s: %w", d, req.GetClientMsgId(), err)
			}
			// No answer: the connection ended (or the answer is late).
			// Retry with the same client message id, on the next
			// connection if this one is gone.
			st.count(func(s *sendStats) { s.retries++ })
			d.retried(fmt.Sprintf("send %s: %v", req.GetClientMsgId(), err))
			select {
			case <-cn.c.Done():
				d.awaitOther(ctx, cn)
			default:
			}
			continue
		}
		if e := r.GetError(); e != nil {
			d.retried(fmt.Sprintf("send %s: %s (%s)", req.GetClientMsgId(), e.GetCode(), e.GetMessage()))
			switch e.GetCode() {
			case "rate_limited":
				st.count(func(s *sendStats) { s.rateLimited++ })
				time.Sleep(time.Duration(max(e.GetRetryAfterMs(), 1)) * time.Millisecond)
				continue
			case "unavailable", "conflict":
				if err := st.silentRetry(d.cl.faults.outage.Load()); err != nil {
					return sentMsg{}, fmt.Errorf("%s: send %s: %s (%s): %w", d, req.GetClientMsgId(), e.GetCode(), e.GetMessage(), err)
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return sentMsg{}, fmt.Errorf("%s: send %s: %s: %s", d, req.GetClientMsgId(), e.GetCode(), e.GetMessage())
		}
		res := r.GetSend()
		st.count(func(s *sendStats) {
			s.acked++
			if res.GetDuplicate() {
				s.duplicates++
			}
		})
		m := sentMsg{key: msgKey{conv: res.GetConversationId(), sender: d.user.id, clientMsgID: req.GetClientMsgId()},
			eventID: string(res.GetEventId()), seq: res.GetSeq(), to: to, duplicate: res.GetDuplicate()}
		d.sent(m) // the device's copy: it is not pushed back to it
		return m, nil
	}
}

// silentRetry counts a send answered unavailable or conflict, to be
// retried; an error once more than maxSilentRetries were outside an
// outage.
func (s *sendStats) silentRetry(outage bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retries++
	if outage {
		s.outage++
		return nil
	}
	s.failed++
	if s.failed > maxSilentRetries {
		return fmt.Errorf("%d sends of this test answered unavailable or conflict outside an outage, more than %d", s.failed, maxSilentRetries)
	}
	return nil
}

// sendDropped writes req on the device's connection and drops the
// connection at once, before its answer can be read (the app killed, the
// network gone right after the send), then sends req again with the same
// client message id until it is acknowledged, on the device's next
// connection. The gateway handles a frame it has read even when the
// connection ends meanwhile, so the retry normally finds the first attempt
// appended: the idempotency record must answer it as a duplicate, with the
// original event id, and append nothing.
func (d *e2eDevice) sendDropped(ctx context.Context, req *mpimv1.SendRequest, to []*e2eUser, st *sendStats) (sentMsg, error) {
	cn, err := d.current(ctx)
	if err != nil {
		return sentMsg{}, fmt.Errorf("%s: send %s: %w", d, req.GetClientMsgId(), err)
	}
	written := cn.c.Go(ctx, &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Send{Send: req}}, nil) == nil
	cn.c.CloseNow()
	if written {
		st.count(func(s *sendStats) { s.dropped++; s.retries++ })
	}
	d.awaitOther(ctx, cn)
	m, err := d.send(ctx, req, to, st)
	if err == nil && written && m.duplicate {
		st.count(func(s *sendStats) { s.dropDups++ })
	}
	return m, err
}

// toUser and toGroup are send requests.
func toUser(u *e2eUser, clientMsgID string) *mpimv1.SendRequest {
	return &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: u.id}, ClientMsgId: clientMsgID, Text: "hi " + clientMsgID}
}

func toGroup(g, clientMsgID string) *mpimv1.SendRequest {
	return &mpimv1.SendRequest{To: &mpimv1.SendRequest_GroupId{GroupId: g}, ClientMsgId: clientMsgID, Text: "hi " + clientMsgID}
}

// ledger collects acknowledged sends from several senders.
type ledger struct {
	mu   sync.Mutex
	msgs []sentMsg
}

func (l *ledger) add(m sentMsg) {
	l.mu.Lock()
	l.msgs = append(l.msgs, m)
	l.mu.Unlock()
}

func (l *ledger) all() []sentMsg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// deliveryAudit is what the devices show of the acknowledged sends.
type deliveryAudit struct {
	checked    int // (acknowledged message, recipient device) pairs
	missing    int // acknowledged but not shown
	twice      int // shown more than once (under different event ids)
	mismatched int // shown with another event id or seq than acknowledged
	unacked    int // messages shown that no acknowledged send accounts for
	nonMember  int // messages shown on a device of a user the message was not sent to
	refanout   bool
	stats      deviceStats
	details    []string
}

func (a *deliveryAudit) detail(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

// ok reports whether every acknowledged message is shown exactly once, as
// acknowledged, in order, on every device of every member (the sending
// device from its send's answer, never pushed) and on no other device, and whether every push kept the delivery contract and every ack
// was answered (deviceStats: the exceptions a test may allow).
func (a deliveryAudit) ok() bool {
	return a.missing == 0 && a.twice == 0 && a.mismatched == 0 && a.unacked == 0 && a.nonMember == 0 &&
		a.stats.outOfOrder == 0 && a.stats.gaps == 0 && a.stats.echoes == 0 && a.stats.afterAck == 0 && a.stats.unmarked == 0 &&
		(a.stats.refanned == 0 || a.refanout) && a.stats.ackErrors == 0
}

func (a deliveryAudit) String() string {
	return fmt.Sprintf("%d deliveries checked: %d acked but never shown, %d shown twice after de-duplication, %d shown unlike acked, "+
		"%d shown but never acked, %d shown to non-members, %d out of order, %d gaps, %d pushed back to their sending device; %d pushes, %d duplicate pushes before de-duplication "+
		"(%d marked resend; not allowed: %d after the ack, %d repeated unmarked or marked but new; %d under a second inbox id, allowed %v; "+
		"%d acknowledged on an earlier connection pushed again on a later one (%d of them under an event's second inbox id), allowed), "+
		"%d reconnects (%d failed attempts), %d ack errors (%d more answered unavailable during an outage)%s",
		a.checked, a.missing, a.twice, a.mismatched, a.unacked, a.nonMember, a.stats.outOfOrder, a.stats.gaps, a.stats.echoes, a.stats.pushes, a.stats.dupPushes,
		a.stats.resends, a.stats.afterAck, a.stats.unmarked, a.stats.refanned, a.refanout, a.stats.redelivered, a.stats.redeliveredRefanned,
		a.stats.reconnects, a.stats.dialFails, a.stats.ackErrors, a.stats.ackOutage, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// audit checks sent against what devs show: a message counts for the
// devices of the users it was sent to, and must not be shown on any other.
func audit(sent []sentMsg, devs []*e2eDevice) deliveryAudit {
	var a deliveryAudit
	acked := make(map[msgKey]sentMsg, len(sent))
	for _, m := range sent {
		acked[m.key] = m
	}
	for i, d := range devs {
		if i == 0 {
			a.refanout = d.cl.faults.refanout.Load()
		}
		d.mu.Lock()
		a.stats.add(d.stats)
		a.stats.gaps += d.gapsLocked(a.detail)
		for _, p := range d.problems {
			a.detail("%s: %s", d, p)
		}
		for _, m := range sent {
			if !slices.Contains(m.to, d.user) {
				continue
			}
			a.checked++
			idx := d.byMsg[m.key]
			switch {
			case len(idx) == 0:
				a.missing++
				a.detail("%s: %s (seq %d) never shown", d, m.key.clientMsgID, m.seq)
				continue
			case len(idx) > 1:
				a.twice++
				a.detail("%s: %s shown %d times", d, m.key.clientMsgID, len(idx))
			}
			if s := d.screen[idx[0]]; s.eventID != m.eventID || s.seq != m.seq {
				a.mismatched++
				a.detail("%s: %s shown as seq %d, acked as seq %d", d, m.key.clientMsgID, s.seq, m.seq)
			}
		}
		for k := range d.byMsg {
			m, ok := acked[k]
			switch {
			case !ok:
				a.unacked++
				a.detail("%s: %s shown, never acked", d, k.clientMsgID)
			case !slices.Contains(m.to, d.user):
				a.nonMember++
				a.detail("%s: %s shown, sent to a conversation %s is not in", d, k.clientMsgID, d.user.name)
			}
		}
		d.mu.Unlock()
	}
	return a
}

// waitDelivered waits until every message of sent is shown on devs (or
// the wait times out), and returns the final audit.
func waitDelivered(t *testing.T, what string, sent []sentMsg, devs []*e2eDevice) deliveryAudit {
	t.Helper()
	// A hang detector, not a latency bound: a loaded 2-core machine runs
	// several process tests at once.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		a := audit(sent, devs)
		if a.missing == 0 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not delivered within 2 minutes: %v", what, a)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inboxAfter reports whether inbox id a comes after b ("" is before
// everything).
func inboxAfter(a, b string) bool {
	if b == "" {
		return a != ""
	}
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	ams, _ := strconv.ParseUint(am, 10, 64)
	bms, _ := strconv.ParseUint(bm, 10, 64)
	if ams != bms {
		return ams > bms
	}
	asq, _ := strconv.ParseUint(as, 10, 64)
	bsq, _ := strconv.ParseUint(bs, 10, 64)
	return asq > bsq
}
