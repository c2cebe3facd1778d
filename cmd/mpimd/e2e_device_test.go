package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/client"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The client devices of the end-to-end tests (e2e_harness_test.go).

// msgKey identifies a message as its sender's client knows it.
type msgKey struct {
	conv, sender, clientMsgID string
}

// shownEvent is an event on a device's screen: pushed, not a duplicate, or
// a message the device sent, shown from its send's answer (own: the
// gateway does not echo it to the sending device).
type shownEvent struct {
	eventID, typ, inboxID string
	msg                   msgKey // MessageSent only
	seq                   uint64 // MessageSent only
	own                   bool   // from the send's answer, not pushed
}

// hole is a run of seqs, from..to, that a device's pushes of a
// conversation went past: allowed only where every one of them is a
// message the device sent itself (shown from its send's answer).
type hole struct {
	conv     string
	from, to uint64
	at       string // the client message id of the push after it
}

// deviceStats are a device's counts.
type deviceStats struct {
	pushes     int // every push, duplicates included
	dupPushes  int // pushes of an event id already shown (dropped by the client)
	resends    int // pushes marked resend
	syncs      int // sync_required frames
	outOfOrder int // messages shown with a seq at or below one shown before in their conversation
	gaps       int // messages pushed with a seq beyond the next one of their conversation, the device's own messages between them aside (counted by the audit)
	echoes     int // messages pushed to the device that sent them (its copy is the send's answer)
	reconnects int
	dialFails  int // reconnect attempts that failed (a dead gateway, still dispatched or known)
	ackErrors  int // acks answered with an error (other than unavailable during an outage the test causes)
	ackOutage  int // acks answered unavailable while the test held Redis down

	// Pushes the delivery contract (gateway/delivery) does not allow; each
	// fails the audit. An entry may be pushed again while it is not
	// acknowledged (marked resend on the connection that had it, or on the
	// device's next connection, from the stored cursor), and on a later
	// connection when its acknowledgement was not stored yet (redelivered).
	afterAck int // an entry at or before the device's acknowledged cursor, new to the device or on the connection that acknowledged it
	unmarked int // an entry pushed again on one connection without the resend mark, or marked resend though it was not pushed there before
	// redelivered counts entries acknowledged on an earlier connection of
	// the device and pushed again on a later one, under the inbox id the
	// device showed: allowed, since a gateway stores a device's cursor once
	// per AckInterval (internal/inbox: Cursor), so a connection that ends
	// (or a gateway that dies) before the write lets the next connection
	// start from the older stored cursor.
	redelivered int
	// redeliveredRefanned counts the redelivered entries whose event was
	// first shown under another inbox id (an event fanned out twice).
	redeliveredRefanned int
	// refanned counts events pushed again under another inbox id: the
	// inbox projector's fan-out is at least once, so an event is in an
	// inbox twice only if the test interrupted it (faultAllowance.refanout).
	refanned int
}

func (s *deviceStats) add(o deviceStats) {
	s.pushes += o.pushes
	s.dupPushes += o.dupPushes
	s.resends += o.resends
	s.syncs += o.syncs
	s.outOfOrder += o.outOfOrder
	s.gaps += o.gaps
	s.echoes += o.echoes
	s.reconnects += o.reconnects
	s.dialFails += o.dialFails
	s.ackErrors += o.ackErrors
	s.ackOutage += o.ackOutage
	s.afterAck += o.afterAck
	s.unmarked += o.unmarked
	s.refanned += o.refanned
	s.redelivered += o.redelivered
	s.redeliveredRefanned += o.redeliveredRefanned
}

// e2eConn is one connection of a device.
type e2eConn struct {
	c    *client.Conn
	gw   string        // the gateway's address
	kick chan struct{} // capacity 1: a push arrived, acknowledge it
	// settled is closed once dial decided whether the connection became
	// the device's (the receiver waits for it before reconnecting).
	settled chan struct{}
	// guarded by the device's mu
	lastInbox string          // the latest inbox id pushed on this connection
	acked     string          // the latest inbox id acknowledged on this connection
	pushed    map[string]bool // the inbox ids pushed on this connection
	n         int             // the device's how-many-th connection
	recent    []string        // the last inbox ids pushed on this connection, for a problem's message
}

// e2eDevice is a client device: it acknowledges every push (one ack covers
// all earlier ones), shows each event once (de-duplicated by event id),
// checks that each conversation's messages appear in seq order without
// gaps, and, unless offline, resumes with its token on whatever gateway it
// reaches when its connection ends.
type e2eDevice struct {
	cl   *e2eCluster
	user *e2eUser
	id   string
	enc  frame.Encoding

	wg sync.WaitGroup // the goroutines of its connections and reconnects

	mu        sync.Mutex
	token     string
	conn      *e2eConn      // nil while disconnected
	connected chan struct{} // closed while conn is set
	offline   bool          // the user closed the app: do not reconnect
	screen    []shownEvent
	inboxOf   map[string]string // event id -> the inbox id it was first shown under
	pushedAll map[string]bool   // every inbox id pushed to the device, on any connection
	acked     string            // the latest inbox id whose ack the server confirmed, on any connection
	ackedOn   string            // the connection acked was confirmed on
	conns     int               // connections made so far
	byMsg     map[msgKey][]int  // indexes into screen
	lastSeq   map[string]uint64 // per conversation, the last seq pushed
	ownSeqs   map[string]map[uint64]bool
	holes     []hole // seqs the pushes went past, for the audit to check against ownSeqs
	stats     deviceStats
	problems  []string // the first few order and delivery problems, for the failure message
	lastRetry string   // why the device's latest send was retried, for a timeout's message
}

// retried records why a send of d is being retried.
func (d *e2eDevice) retried(why string) {
	d.mu.Lock()
	d.lastRetry = time.Now().Format("15:04:05.000") + " " + why
	d.mu.Unlock()
}

func (d *e2eDevice) String() string { return d.user.name + "/" + d.id }

// login logs a new device of u in on gw and waits for the sync_required
// every new device gets first.
func (cl *e2eCluster) login(t *testing.T, u *e2eUser, device string, gw *mpimdProc, enc frame.Encoding) *e2eDevice {
	t.Helper()
	d := &e2eDevice{cl: cl, user: u, id: device, enc: enc, connected: make(chan struct{}),
		inboxOf: map[string]string{}, pushedAll: map[string]bool{}, byMsg: map[msgKey][]int{}, lastSeq: map[string]uint64{}, ownSeqs: map[string]map[uint64]bool{}}
	cl.mu.Lock()
	cl.devices = append(cl.devices, d)
	cl.mu.Unlock()
	if err := d.dialRetry(gw.addr); err != nil {
		t.Fatalf("%s: login on %s: %v", d, gw.name, err)
	}
	waitUntil(t, d.String()+" sync_required", func() bool { return d.snapshot().syncs >= 1 })
	return d
}

// dialRetry is dial, repeated for up to 30 s while the gateway answers
// unavailable (its MySQL late on a loaded machine).
func (d *e2eDevice) dialRetry(addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := d.dial(addr)
		if err == nil || !strings.Contains(err.Error(), "unavailable") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dial connects to the gateway at addr and logs in (first time) or resumes
// with the device's token.
func (d *e2eDevice) dial(addr string) error {
	ctx, cancel := context.WithTimeout(d.cl.ctx, 20*time.Second)
	defer cancel()
	d.mu.Lock()
	d.conns++
	n := d.conns
	d.mu.Unlock()
	cn := &e2eConn{gw: addr, kick: make(chan struct{}, 1), settled: make(chan struct{}), pushed: map[string]bool{}, n: n}
	// Frames are handled on the connection's reader, in arrival order, as
	// are the answers to acks (acker): the audit compares each push with
	// the acks confirmed before it, which another goroutine would reorder.
	// Pushes may follow the login response at once: receive from the start.
	c, err := client.Dial(ctx, "ws://"+addr+"/ws", &client.Options{Encoding: d.enc, OnFrame: func(f *mpimv1.ServerFrame) { d.frame(cn, f) }})
	if err != nil {
		return err
	}
	cn.c = c
	defer close(cn.settled)
	d.wg.Add(2)
	go d.receive(cn)
	go d.acker(cn)
	d.mu.Lock()
	token := d.token
	d.mu.Unlock()
	var req any = &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}}
	if token == "" {
		req = &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: d.user.name, Password: d.user.password(), DeviceId: d.id, Platform: "e2e"}}
	}
	r, err := c.Call(ctx, req)
	if err == nil && r.GetError() != nil {
		err = fmt.Errorf("%s: %s", r.GetError().GetCode(), r.GetError().GetMessage())
	}
	if err != nil {
		c.CloseNow()
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.offline || d.conn != nil {
		c.CloseNow()
		return fmt.Errorf("%s: connected while offline or connected already", d)
	}
	if token == "" {
		d.token = r.GetLogin().GetToken()
	}
	d.conn = cn
	close(d.connected)
	return nil
}

// frame handles a frame of cn that is not an awaited answer, on cn's
// reader.
func (d *e2eDevice) frame(cn *e2eConn, f *mpimv1.ServerFrame) {
	switch x := f.GetFrame().(type) {
	case *mpimv1.ServerFrame_Push:
		d.push(cn, x.Push)
	case *mpimv1.ServerFrame_SyncRequired:
		d.mu.Lock()
		d.stats.syncs++
		d.mu.Unlock()
	}
}

// receive waits until cn ends (its frames go to frame), then reconnects
// unless the device is offline or cn was not its connection.
func (d *e2eDevice) receive(cn *e2eConn) {
	defer d.wg.Done()
	for {
		// With OnFrame, Next only waits for the end.
		if _, err := cn.c.Next(context.Background()); err != nil {
			break
		}
	}
	<-cn.settled
	d.mu.Lock()
	current := d.conn == cn
	if current {
		d.conn, d.connected = nil, make(chan struct{})
	}
	again := current && !d.offline
	if again {
		d.wg.Add(1)
	}
	d.mu.Unlock()
	if again {
		go d.reconnect()
	}
}

// push shows a pushed event unless its id was shown before, checks the
// push against the delivery contract (checkRepush) and has it
// acknowledged.
func (d *e2eDevice) push(cn *e2eConn, p *mpimv1.Push) {
	ev, err := client.PushEvent(p)
	if err != nil {
		d.cl.t.Errorf("%s: %v", d, err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.pushes++
	if p.GetResend() {
		d.stats.resends++
	}
	id, inboxID := string(ev.GetId()), p.GetInboxId()
	if a := ev.GetActor(); ev.GetMessageSent() != nil && a.GetUserId() == d.user.id && a.GetDeviceId() == d.id {
		d.stats.echoes++
		d.problem("%s (event %x) is a message this device sent, pushed back to it", inboxID, id)
	}
	d.checkRepush(cn, inboxID, id, p.GetResend())
	cn.pushed[inboxID] = true
	d.pushedAll[inboxID] = true
	if cn.recent = append(cn.recent, inboxID); len(cn.recent) > 8 {
		cn.recent = cn.recent[1:]
	}
	if inboxAfter(inboxID, cn.lastInbox) {
		cn.lastInbox = inboxID
	}
	select {
	case cn.kick <- struct{}{}:
	default:
	}
	if _, shown := d.inboxOf[id]; shown {
		d.stats.dupPushes++
		return
	}
	d.inboxOf[id] = inboxID
	s := shownEvent{eventID: id, typ: p.GetType(), inboxID: inboxID}
	if m := ev.GetMessageSent(); m != nil {
		s.msg = msgKey{conv: m.GetConversationId(), sender: m.GetSenderId(), clientMsgID: m.GetClientMsgId()}
		s.seq = ev.GetSeq()
		last := d.lastSeq[s.msg.conv]
		switch {
		case s.seq <= last:
			d.stats.outOfOrder++
			d.problem("%s: seq %d after %d (%s)", s.msg.conv, s.seq, last, s.msg.clientMsgID)
		case s.seq > last+1:
			d.holes = append(d.holes, hole{conv: s.msg.conv, from: last + 1, to: s.seq - 1, at: s.msg.clientMsgID})
			d.lastSeq[s.msg.conv] = s.seq
		default:
			d.lastSeq[s.msg.conv] = s.seq
		}
		d.byMsg[s.msg] = append(d.byMsg[s.msg], len(d.screen))
	}
	d.screen = append(d.screen, s)
}

// sent shows m, a message the device sent, from its send's answer, once
// (a retry answered as a duplicate shows nothing new), and records its seq
// as the device's own: its pushes go past it.
func (d *e2eDevice) sent(m sentMsg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	own := d.ownSeqs[m.key.conv]
	if own == nil {
		own = map[uint64]bool{}
		d.ownSeqs[m.key.conv] = own
	}
	own[m.seq] = true
	if len(d.byMsg[m.key]) > 0 {
		return
	}
	d.byMsg[m.key] = append(d.byMsg[m.key], len(d.screen))
	d.screen = append(d.screen, shownEvent{eventID: m.eventID, typ: "MessageSent", msg: m.key, seq: m.seq, own: true})
}

// gapsLocked counts the holes of the device's pushes that are not only its
// own messages, telling detail of each; the caller holds d.mu.
func (d *e2eDevice) gapsLocked(detail func(format string, args ...any)) int {
	n := 0
	for _, h := range d.holes {
		for seq := h.from; seq <= h.to; seq++ {
			if !d.ownSeqs[h.conv][seq] {
				n++
				detail("%s: %s: seqs %d..%d skipped before %s, %d not sent by this device: a gap", d, h.conv, h.from, h.to, h.at, seq)
				break
			}
		}
	}
	return n
}

// checkRepush counts a push of inboxID (event eventID) that the delivery
// contract does not allow: one at or before the acknowledged cursor (but
// an entry pushed to the device before, pushed again on a connection that
// has not acknowledged it: redelivered from an older stored cursor), one
// repeated on a connection without the resend mark (or marked but new
// there), and an event pushed under a second inbox id. An entry is
// redelivered under its own inbox id, which is not always the one its
// event was first shown under: an event fanned out twice
// (faultAllowance.refanout) is in the inbox under two ids, both pushed in
// inbox order, and a later connection that starts from an older stored
// cursor pushes both again. The caller holds d.mu.
func (d *e2eDevice) checkRepush(cn *e2eConn, inboxID, eventID string, resend bool) {
	first, shown := d.inboxOf[eventID]
	switch {
	case !inboxAfter(inboxID, d.acked) && d.pushedAll[inboxID] && inboxAfter(inboxID, cn.acked):
		d.stats.redelivered++
		if first != inboxID {
			d.stats.redeliveredRefanned++
		}
	case !inboxAfter(inboxID, d.acked):
		d.stats.afterAck++
		d.problem("%s (event %x, shown before as %q, pushed to the device before: %v) pushed on connection %d (%s; acked there %s; pushed there before it %v) after the device's ack of %s on connection %s (resend %v)",
			inboxID, eventID, first, d.pushedAll[inboxID], cn.n, cn.gw, cn.acked, cn.recent, d.acked, d.ackedOn, resend)
	case resend != cn.pushed[inboxID]:
		d.stats.unmarked++
		d.problem("%s (event %x) pushed with resend %v, pushed on this connection before: %v", inboxID, eventID, resend, cn.pushed[inboxID])
	case shown && first != inboxID:
		d.stats.refanned++
		if !d.cl.faults.refanout.Load() {
			d.problem("event %x pushed as %s after %s", eventID, inboxID, first)
		}
	}
}

// problem records an order or delivery problem; the caller holds d.mu.
func (d *e2eDevice) problem(format string, args ...any) {
	if len(d.problems) < 5 {
		d.problems = append(d.problems, fmt.Sprintf(format, args...))
	}
}

// acker acknowledges the latest push of cn whenever pushes arrived, until
// cn ends: one ack covers every push before it.
func (d *e2eDevice) acker(cn *e2eConn) {
	defer d.wg.Done()
	for {
		select {
		case <-cn.kick:
		case <-cn.c.Done():
			return
		}
		d.mu.Lock()
		id, acked := cn.lastInbox, cn.acked
		d.mu.Unlock()
		if id == acked {
			continue
		}
		// The answer is taken on cn's reader, in order with the pushes
		// (ackAnswered); the connection ending or a late answer just ends
		// the wait (a later push acks again).
		answered := make(chan struct{})
		ctx, cancel := context.WithTimeout(d.cl.ctx, 10*time.Second)
		err := cn.c.Go(ctx, &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: id}}},
			func(r *mpimv1.Response) {
				d.ackAnswered(cn, id, r)
				close(answered)
			})
		if err == nil {
			select {
			case <-answered:
			case <-cn.c.Done():
			case <-ctx.Done():
			}
		}
		cancel()
	}
}

// ackAnswered records the answer to the ack of id on cn. An error fails
// the audit, except unavailable while the test holds Redis down.
func (d *e2eDevice) ackAnswered(cn *e2eConn, id string, r *mpimv1.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := r.GetError(); e != nil {
		if e.GetCode() == "unavailable" && d.cl.faults.outage.Load() {
			d.stats.ackOutage++
			return
		}
		d.stats.ackErrors++
		d.problem("ack %s: %s: %s", id, e.GetCode(), e.GetMessage())
		return
	}
	if inboxAfter(id, cn.acked) {
		cn.acked = id
	}
	if inboxAfter(id, d.acked) {
		d.acked = id
		d.ackedOn = fmt.Sprintf("%d (%s; pushed there up to it %v)", cn.n, cn.gw, cn.recent)
	}
}

// reconnect resumes the device on the first gateway it reaches.
func (d *e2eDevice) reconnect() {
	defer d.wg.Done()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, addr := range d.cl.candidates() {
			if d.isOffline() || d.cl.ctx.Err() != nil {
				return
			}
			err := d.dial(addr)
			d.mu.Lock()
			if err == nil {
				d.stats.reconnects++
			} else {
				d.stats.dialFails++
			}
			d.mu.Unlock()
			if err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			d.cl.t.Errorf("%s: could not reconnect within 30s", d)
			return
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-d.cl.ctx.Done():
			return
		}
	}
}

func (d *e2eDevice) isOffline() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.offline
}

// goOffline closes the device's connection for good (until goOnline).
func (d *e2eDevice) goOffline() {
	d.mu.Lock()
	d.offline = true
	cn := d.conn
	d.mu.Unlock()
	if cn != nil {
		cn.c.Close()
	}
	for {
		d.mu.Lock()
		gone := d.conn == nil
		d.mu.Unlock()
		if gone {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// goOnline resumes the device on gw.
func (d *e2eDevice) goOnline(t *testing.T, gw *mpimdProc) {
	t.Helper()
	d.mu.Lock()
	d.offline = false
	d.mu.Unlock()
	if err := d.dialRetry(gw.addr); err != nil {
		t.Fatalf("%s: resume on %s: %v", d, gw.name, err)
	}
}

// current returns the device's connection, waiting while it reconnects.
func (d *e2eDevice) current(ctx context.Context) (*e2eConn, error) {
	for {
		d.mu.Lock()
		cn, ch := d.conn, d.connected
		d.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// awaitOther waits until the device has a connection other than cn.
func (d *e2eDevice) awaitOther(ctx context.Context, cn *e2eConn) {
	for ctx.Err() == nil {
		d.mu.Lock()
		cur, ch := d.conn, d.connected
		d.mu.Unlock()
		switch {
		case cur == cn: // the receiver has not noticed the end yet
			time.Sleep(5 * time.Millisecond)
		case cur != nil:
			return
		default:
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}
	}
}

// gateway returns the address of the device's gateway ("" while
// disconnected).
func (d *e2eDevice) gateway() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return ""
	}
	return d.conn.gw
}

// allAcked reports whether the device is connected, was pushed something
// on this connection and acknowledged the latest push.
func (d *e2eDevice) allAcked() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn != nil && d.conn.lastInbox != "" && d.conn.acked == d.conn.lastInbox
}

// snapshot returns the device's counts.
func (d *e2eDevice) snapshot() deviceStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// shown returns the events on the device's screen, in order.
func (d *e2eDevice) shown() []shownEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.screen)
}

// do sends a request on the device's connection and returns the answer,
// which may be an error response; a connection failure fails the test.
func (d *e2eDevice) do(t *testing.T, req any) *mpimv1.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(d.cl.ctx, 30*time.Second)
	defer cancel()
	cn, err := d.current(ctx)
	if err != nil {
		t.Fatalf("%s: not connected: %v", d, err)
	}
	r, err := cn.c.Call(ctx, req)
	if err != nil {
		t.Fatalf("%s: %T: %v", d, req, err)
	}
	return r
}

// call sends a request on the device's connection; it must succeed.
func (d *e2eDevice) call(t *testing.T, req any) *mpimv1.Response {
	t.Helper()
	r := d.do(t, req)
	if e := r.GetError(); e != nil {
		t.Fatalf("%s: %T: %v", d, req, e)
	}
	return r
}

// eventually repeats req on the device's connection until check accepts the
// answer: queries read the read model, which follows the log.
func (d *e2eDevice) eventually(t *testing.T, what string, req any, check func(*mpimv1.Response) bool) *mpimv1.Response {
	t.Helper()
	var last *mpimv1.Response
	waitUntil(t, d.String()+": "+what, func() bool {
		r := d.do(t, req)
		// The read model may not hold the thing yet (a group just created
		// answers not_found until the projector has written it).
		if e := r.GetError(); e != nil {
			if e.GetCode() == "not_found" {
				return false
			}
			t.Fatalf("%s: %T: %v", d, req, e)
		}
		last = r
		return check(last)
	})
	return last
}
