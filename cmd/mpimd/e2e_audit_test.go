package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The senders of the end-to-end tests and the audit of what their
// messages' recipients show.

// sentMsg is a message whose send the server acknowledged.
type sentMsg struct {
	key     msgKey
	eventID string
	seq     uint64
	to      []*e2eUser // every member of the conversation, the sender included
}

// sendStats count what senders went through. They are safe for concurrent
// use through count; read them once the senders are done.
type sendStats struct {
	mu          sync.Mutex
	acked       int
	retries     int // sends repeated with the same client message id
	duplicates  int // answered with duplicate: the first attempt had been appended
	rateLimited int
	failed      int // answered unavailable or conflict (then retried with the same client message id)
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
			select {
			case <-cn.c.Done():
				d.awaitOther(ctx, cn)
			default:
			}
			continue
		}
		if e := r.GetError(); e != nil {
			switch e.GetCode() {
			case "rate_limited":
				st.count(func(s *sendStats) { s.rateLimited++ })
				time.Sleep(time.Duration(max(e.GetRetryAfterMs(), 1)) * time.Millisecond)
				continue
			case "unavailable", "conflict":
				st.count(func(s *sendStats) { s.retries++; s.failed++ })
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
		return sentMsg{key: msgKey{conv: res.GetConversationId(), sender: d.user.id, clientMsgID: req.GetClientMsgId()},
			eventID: string(res.GetEventId()), seq: res.GetSeq(), to: to}, nil
	}
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
	stats      deviceStats
	details    []string
}

func (a *deliveryAudit) detail(format string, args ...any) {
	if len(a.details) < 10 {
		a.details = append(a.details, fmt.Sprintf(format, args...))
	}
}

// ok reports whether every acknowledged message is shown exactly once, as
// acknowledged, in order, on every device of every member.
func (a deliveryAudit) ok() bool {
	return a.missing == 0 && a.twice == 0 && a.mismatched == 0 && a.unacked == 0 && a.stats.outOfOrder == 0 && a.stats.gaps == 0
}

func (a deliveryAudit) String() string {
	return fmt.Sprintf("%d deliveries checked: %d acked but never shown, %d shown twice after de-duplication, %d shown unlike acked, "+
		"%d shown but never acked, %d out of order, %d gaps; %d pushes, %d duplicate pushes before de-duplication (%d marked resend), %d reconnects (%d failed attempts), %d ack errors%s",
		a.checked, a.missing, a.twice, a.mismatched, a.unacked, a.stats.outOfOrder, a.stats.gaps, a.stats.pushes, a.stats.dupPushes,
		a.stats.resends, a.stats.reconnects, a.stats.dialFails, a.stats.ackErrors, strings.Join(append([]string{""}, a.details...), "\n\t"))
}

// audit checks sent against what devs show: a message counts for the
// devices of the users it was sent to.
func audit(sent []sentMsg, devs []*e2eDevice) deliveryAudit {
	var a deliveryAudit
	acked := make(map[msgKey]bool, len(sent))
	for _, m := range sent {
		acked[m.key] = true
	}
	for _, d := range devs {
		d.mu.Lock()
		a.stats.add(d.stats)
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
			if !acked[k] {
				a.unacked++
				a.detail("%s: %s shown, never acked", d, k.clientMsgID)
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
	deadline := time.Now().Add(45 * time.Second)
	for {
		a := audit(sent, devs)
		if a.missing == 0 {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not delivered within 45s: %v", what, a)
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
