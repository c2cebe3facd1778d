package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	mpimclient "github.com/mpim/mpim/client"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// client is one benchmark user with one device and one connection.
type client struct {
	idx      int
	url      string
	username string
	userID   string
	token    string
	c        *mpimclient.Conn

	audit *deviceAudit // used by c's reader goroutine until the run ends

	mu           sync.Mutex // guards latestPush, unacked, ackSent and ackConfirmed
	latestPush   string
	unacked      int    // pushes since the last ack sent
	ackSent      string // the inbox id of the last ack sent
	ackConfirmed string // the highest inbox id whose ack the server confirmed

	sends    []*sendRecord // appended by the goroutine sending for the client only (sender or pace)
	inflight atomic.Int64  // open loop: sends not answered yet
	firsts   atomic.Int64  // first deliveries of this run's messages

	// storm: the missed messages owed (set while offline), received after
	// the reconnect, when the last arrived (Unix ns) and when the resume
	// was answered
	missExpected int64
	missGot      atomic.Int64
	doneAt       atomic.Int64
	resumedAt    int64
}

// target is where a sender's messages go and who must receive them.
type target struct {
	userID, groupID string
	recipients      []int
}

// runner runs one scenario.
type runner struct {
	cfg     *Config
	prefix  string
	stderr  io.Writer
	clients []*client
	text    string

	heartbeat atomic.Int64 // nanoseconds, from the login answers

	// measurement window, in Unix nanoseconds; set before sending starts
	// (read by the connections' readers, which run from setup on)
	start, from, to atomic.Int64

	histMu          sync.Mutex
	ackHist         *hdrhistogram.Histogram // µs, send (intended) -> ack
	delHist         *hdrhistogram.Histogram // µs, send (intended) -> delivery to another device
	timeline        *timeline               // both, per interval of the measured window
	issued, answers atomic.Int64
	acked           atomic.Int64
	ackedIn         atomic.Int64 // acks within the window
	expected        atomic.Int64 // deliveries owed for acked sends
	delivered       atomic.Int64 // first deliveries
	deliveredIn     atomic.Int64
	rateLimited     atomic.Int64
	sendErrors      atomic.Int64
	firstErr        atomic.Pointer[string]
	stopSending     atomic.Bool
	sendingStopped  chan struct{} // closed with stopSending set (stopSenders)
	stopOnce        sync.Once
	cappedAt        atomic.Int64 // when --messages stopped sending
	unoffered       atomic.Int64 // open loop: sends skipped, their sender's window full

	caughtUp atomic.Int64 // storm: clients that received every missed message
}

func newRunner(cfg *Config, stderr io.Writer) *runner {
	return &runner{
		cfg:    cfg,
		prefix: "b" + strconv.FormatInt(time.Now().UnixNano()/1e6, 36),
		stderr: stderr,
		text:   strings.Repeat("x", cfg.TextBytes),

		sendingStopped: make(chan struct{}),
		ackHist:        hdrhistogram.New(1, 120_000_000, 3),
		delHist:        hdrhistogram.New(1, 120_000_000, 3),
		timeline: newTimeline(cfg.PlotInterval,
			cfg.Warmup+cfg.Duration+cfg.Drain+cfg.CatchupTimeout+30*time.Second),
	}
}

func (r *runner) noteErr(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.firstErr.CompareAndSwap(nil, &s)
}

// gatewayURL picks the gateway of client i.
func (r *runner) gatewayURL(ctx context.Context, i int) (string, error) {
	if r.cfg.Dispatch != "" {
		g, err := mpimclient.Dispatch(ctx, nil, r.cfg.Dispatch)
		if err != nil {
			return "", err
		}
		if err := loopbackURL(g.URL(), "ws"); err != nil {
			return "", fmt.Errorf("dispatch answered %w", err)
		}
		return g.URL(), nil
	}
	return r.cfg.Gateways[i%len(r.cfg.Gateways)], nil
}

// setup registers and logs in every user, each on its own connection, with
// cfg.Setup at a time. With keep false the connections are closed afterwards
// (the users keep their tokens for resume).
func (r *runner) setup(ctx context.Context, keep bool) error {
	r.clients = make([]*client, r.cfg.connections())
	for i := range r.clients {
		r.clients[i] = &client{idx: i, username: fmt.Sprintf("%s-%d", r.prefix, i), audit: newDeviceAudit()}
	}
	return parallel(ctx, len(r.clients), r.cfg.Setup, func(gctx context.Context, i int) error {
		cl := r.clients[i]
		{
			url, err := r.gatewayURL(gctx, i)
			if err != nil {
				return err
			}
			cl.url = url
			if err := r.connect(gctx, cl); err != nil {
				return err
			}
			if _, err := cl.c.Request(gctx, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{
				Username: cl.username, Password: r.cfg.Password, DisplayName: cl.username}}); err != nil {
				return fmt.Errorf("register %s: %w", cl.username, err)
			}
			resp, err := cl.c.Request(gctx, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{
				Username: cl.username, Password: r.cfg.Password, DeviceId: "bench-" + strconv.Itoa(i), Platform: "bench"}})
			if err != nil {
				return fmt.Errorf("login %s: %w", cl.username, err)
			}
			l := resp.GetLogin()
			cl.userID, cl.token = l.GetUserId(), l.GetToken()
			r.setHeartbeat(l.GetHeartbeatMs())
			if !keep {
				cl.c.Close()
				cl.c = nil
			}
			return nil
		}
	})
}

// resumeAll reconnects every user with its token, cfg.Setup at a time.
// timedSetup registers and logs in every user over short-lived connections
// (setup without keeping them), then runs each of then; it returns how long
// all of it took.
func (r *runner) timedSetup(ctx context.Context, then ...func(context.Context) error) (time.Duration, error) {
	start := time.Now()
	if err := r.setup(ctx, false); err != nil {
		return 0, fmt.Errorf("setup: %w", err)
	}
	for _, f := range then {
		if err := f(ctx); err != nil {
			return 0, fmt.Errorf("setup: %w", err)
		}
	}
	return time.Since(start), nil
}

func (r *runner) resumeAll(ctx context.Context) error {
	return parallel(ctx, len(r.clients), 4*r.cfg.Setup, func(gctx context.Context, i int) error {
		cl := r.clients[i]
		{
			if err := r.connect(gctx, cl); err != nil {
				return err
			}
			_, err := cl.c.Request(gctx, &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: cl.token}})
			if err != nil {
				return fmt.Errorf("resume %s: %w", cl.username, err)
			}
			return nil
		}
	})
}

func (r *runner) setHeartbeat(ms uint32) {
	if ms > 0 {
		r.heartbeat.Store(int64(time.Duration(ms) * time.Millisecond)) // the same for all
	}
}

func (r *runner) connect(ctx context.Context, cl *client) error {
	// The handler reads cl.c: the first push comes after the login or
	// resume answer, which the reader takes after cl.c is set.
	c, err := mpimclient.Dial(ctx, cl.url, &mpimclient.Options{ReadLimit: 1 << 20, Encoding: codecs[r.cfg.Codec],
		OnFrame: func(f *mpimv1.ServerFrame) { r.onFrame(cl, f) }})
	if err != nil {
		return err
	}
	cl.c = c
	return nil
}

// onFrame handles a frame that is not a response, on cl's reader goroutine.
func (r *runner) onFrame(cl *client, f *mpimv1.ServerFrame) {
	p := f.GetPush()
	if p == nil {
		return
	}
	now := time.Now().UnixNano()
	// Acks are cumulative (an ack covers every push before it): the latest
	// push is acknowledged once AckEvery pushes arrived since the last ack,
	// or by keepalive every AckInterval.
	cl.mu.Lock()
	cl.latestPush = p.GetInboxId()
	cl.unacked++
	due := r.cfg.AckInterval == 0 || (r.cfg.AckEvery > 0 && cl.unacked >= r.cfg.AckEvery)
	if due {
		cl.unacked, cl.ackSent = 0, cl.latestPush
	}
	cl.mu.Unlock()
	if due {
		r.ack(cl, p.GetInboxId())
	}
	if p.GetType() != "MessageSent" {
		return
	}
	// JSON clients get the event decoded, binary ones its encoding, read
	// here once for the few fields the audit needs.
	var ms sentFields
	var err error
	if ev := p.GetEvent(); ev != nil {
		ms, err = sentOfEvent(ev)
	} else {
		ms, err = sentOf(p.GetEnvelope())
	}
	if err != nil {
		r.noteErr("undecodable push envelope: %v", err)
		return
	}
	from, intended, ok := r.parseClientMsgID(ms.clientMsgID)
	if !ok {
		return // not this run's
	}
	first := cl.audit.push(delivery{InboxID: p.GetInboxId(), EventID: ms.eventID, ClientMsgID: ms.clientMsgID,
		Conversation: ms.conversation, Seq: ms.seq, Resend: p.GetResend()})
	if !first {
		return
	}
	r.delivered.Add(1)
	cl.firsts.Add(1)
	if now >= r.from.Load() && now < r.to.Load() {
		r.deliveredIn.Add(1)
	}
	if r.cfg.Scenario == "storm" {
		// A message a storm client missed while offline: its latency is
		// the offline time; the catch-up is measured per client instead.
		if cl.idx < r.cfg.Users && from >= r.cfg.Users {
			if got := cl.missGot.Add(1); got == cl.missExpected && cl.doneAt.CompareAndSwap(0, now) {
				r.caughtUp.Add(1)
			}
		}
		return
	}
	if from != cl.idx && intended >= r.from.Load() {
		r.record(seriesDelivery, now, now-intended)
	}
}

// record adds a latency sample of nanos taken at now (Unix ns) to the
// series' histogram and to the timeline.
func (r *runner) record(s series, now, nanos int64) {
	h := r.ackHist
	if s == seriesDelivery {
		h = r.delHist
	}
	us := max(nanos/1e3, 1)
	r.histMu.Lock()
	_ = h.RecordValue(min(us, h.HighestTrackableValue())) // in range by the clamp, so it cannot fail
	r.histMu.Unlock()
	r.timeline.record(s, time.Duration(now-r.from.Load()), us)
}

// ack acknowledges inboxID; the server's answer is recorded in the audit.
func (r *runner) ack(cl *client, inboxID string) {
	f := &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: inboxID}}}
	_ = cl.c.Go(context.Background(), f, func(resp *mpimv1.Response) { // an ack that is not sent stays unacked in the audit
		if resp.GetError() == nil {
			cl.audit.acked(inboxID)
			cl.mu.Lock()
			if later(inboxID, cl.ackConfirmed) {
				cl.ackConfirmed = inboxID
			}
			cl.mu.Unlock()
		}
	})
}

// clientMsgID encodes the sender and the intended send time, so that a
// receiver can measure latency without shared state.
func (r *runner) clientMsgID(from, n int, intended int64) string {
	return r.prefix + "." + strconv.Itoa(from) + "." + strconv.Itoa(n) + "." + strconv.FormatInt(intended, 10)
}

func (r *runner) parseClientMsgID(s string) (from int, intended int64, ok bool) {
	rest, found := strings.CutPrefix(s, r.prefix)
	if !found || rest == "" || rest[0] != '.' {
		return 0, 0, false
	}
	// from.n.intended, cut without allocating (this runs per delivery)
	fs, rest, ok1 := strings.Cut(rest[1:], ".")
	_, ts, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(ts, '.') >= 0 {
		return 0, 0, false
	}
	f, err1 := strconv.Atoi(fs)
	t, err2 := strconv.ParseInt(ts, 10, 64)
	if err1 != nil || err2 != nil || f < 0 || f >= len(r.clients) {
		return 0, 0, false
	}
	return f, t, true
}

// sender sends cl's messages to tg, closed loop with Window in flight,
// until sending stops. (The open loop is pace's.)
func (r *runner) sender(ctx context.Context, cl *client, tg target) {
	slots := make(chan struct{}, r.cfg.Window)
	for n := 0; ; n++ {
		if r.stopSending.Load() || ctx.Err() != nil {
			return
		}
		// A sender whose window is full of sends that are never answered
		// must still stop when sending does.
		select {
		case slots <- struct{}{}:
		case <-r.sendingStopped:
			return
		case <-ctx.Done():
			return
		case <-cl.c.Done():
			return
		}
		if !r.issue(ctx, cl, tg, n, time.Now().UnixNano(), func() { <-slots }) {
			return
		}
	}
}

// issue sends message n of cl to tg, intended at intended (Unix ns);
// release runs once it is answered (or failed). It reports false, without
// sending, when sending must stop: stopped, the measured window is over, or
// the --messages cap is reached. Only cl's sending goroutine calls it.
func (r *runner) issue(ctx context.Context, cl *client, tg target, n int, intended int64, release func()) bool {
	if r.stopSending.Load() || time.Now().UnixNano() >= r.to.Load() {
		release()
		return false
	}
	if n := r.issued.Add(1); r.cfg.Messages > 0 && n > int64(r.cfg.Messages) {
		r.issued.Add(-1)
		r.cappedAt.CompareAndSwap(0, time.Now().UnixNano())
		r.stopSenders()
		release()
		return false
	}
	rec := &sendRecord{ClientMsgID: r.clientMsgID(cl.idx, n, intended), From: cl.idx, Recipients: tg.recipients}
	cl.sends = append(cl.sends, rec)
	req := &mpimv1.SendRequest{ClientMsgId: rec.ClientMsgID, Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: r.text}
	if tg.groupID != "" {
		req.To = &mpimv1.SendRequest_GroupId{GroupId: tg.groupID}
	} else {
		req.To = &mpimv1.SendRequest_UserId{UserId: tg.userID}
	}
	r.send(ctx, cl, req, rec, intended, release)
	return true
}

// send sends req and handles its answer: rate-limited sends are retried with
// the same client message id after the advised wait.
func (r *runner) send(ctx context.Context, cl *client, req *mpimv1.SendRequest, rec *sendRecord, intended int64, release func()) {
	f := &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Send{Send: req}}
	err := cl.c.Go(ctx, f, func(resp *mpimv1.Response) {
		if e := resp.GetError(); e != nil {
			if e.GetCode() == "rate_limited" {
				r.rateLimited.Add(1)
				wait := max(time.Duration(e.GetRetryAfterMs())*time.Millisecond, 5*time.Millisecond)
				time.AfterFunc(wait, func() { r.send(ctx, cl, req, rec, intended, release) })
				return
			}
			r.answers.Add(1)
			r.sendErrors.Add(1)
			r.noteErr("send: %s: %s", e.GetCode(), e.GetMessage())
			release()
			return
		}
		now := time.Now().UnixNano()
		rec.Acked, rec.EventID, rec.Seq = true, string(resp.GetSend().GetEventId()), resp.GetSend().GetSeq()
		r.answers.Add(1)
		r.acked.Add(1)
		r.expected.Add(int64(len(rec.Recipients)))
		if now >= r.from.Load() && now < r.to.Load() {
			r.ackedIn.Add(1)
		}
		if intended >= r.from.Load() {
			r.record(seriesAck, now, now-intended)
		}
		release()
	})
	if err != nil {
		r.answers.Add(1)
		r.sendErrors.Add(1)
		r.noteErr("send: %v", err)
		release()
	}
}

// topology creates what the scenario needs (groups) and returns each
// sender's target, by client index.
func (r *runner) topology(ctx context.Context) (map[int]target, error) {
	out := map[int]target{}
	all := func(lo, hi int) []int {
		var s []int
		for i := lo; i < hi; i++ {
			s = append(s, i)
		}
		return s
	}
	switch r.cfg.Scenario {
	case "pairs", "push":
		// Clients alternate over the gateways, so the two of a pair sit on
		// different gateways; the sender alternates too (the first of one
		// pair, the second of the next), so that every gateway both sends
		// and delivers.
		for i := 0; i < len(r.clients); i += 2 {
			from, to := i, i+1
			if (i/2)%2 == 1 {
				from, to = to, from
			}
			out[from] = target{userID: r.clients[to].userID, recipients: []int{to}}
		}
	case "groups", "fanout":
		k, senders := r.cfg.GroupSize, r.cfg.GroupSize
		if r.cfg.Scenario == "fanout" {
			k, senders = len(r.clients), r.cfg.Senders
		}
		var mu sync.Mutex
		err := parallel(ctx, len(r.clients)/k, r.cfg.Setup, func(gctx context.Context, gi int) error {
			lo := gi * k
			{
				owner := r.clients[lo]
				var ids []string
				for _, m := range r.clients[lo+1 : lo+k] {
					ids = append(ids, m.userID)
				}
				resp, err := owner.c.Request(gctx, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{
					Name: owner.username, MemberIds: ids}})
				if err != nil {
					return fmt.Errorf("createGroup: %w", err)
				}
				gid := resp.GetCreateGroup().GetGroupId()
				mu.Lock()
				for i := lo; i < lo+senders; i++ {
					// Every member but the sender, which has its copy in
					// the send response.
					out[i] = target{groupID: gid, recipients: slices.Concat(all(lo, i), all(i+1, lo+k))}
				}
				mu.Unlock()
				return nil
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stopSenders stops the senders: those waiting for room in their window
// too.
func (r *runner) stopSenders() {
	r.stopOnce.Do(func() {
		r.stopSending.Store(true)
		close(r.sendingStopped)
	})
}

// inflight is how many sends await an answer.
func (r *runner) inflight() int64 { return r.issued.Load() - r.answers.Load() }

// waitFor polls cond until it holds or d passes; it reports whether it held.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// startProgress starts the clock of a run, empties the measured window and
// prints progress (see progress) until stop is called. The phase it prints
// is "setup" until setPhase names another.
func (r *runner) startProgress(ctx context.Context) (setPhase func(string), stop context.CancelFunc) {
	var phase atomic.Pointer[string]
	setPhase = func(s string) { phase.Store(&s) }
	setPhase("setup")
	r.start.Store(time.Now().UnixNano())
	r.from.Store(1 << 62)
	r.to.Store(1 << 62)
	pctx, stop := context.WithCancel(ctx)
	go r.progress(pctx, &phase)
	return setPhase, stop
}

// progress prints a line to stderr every cfg.Progress until ctx ends.
func (r *runner) progress(ctx context.Context, phase *atomic.Pointer[string]) {
	t := time.NewTicker(r.cfg.Progress)
	defer t.Stop()
	var lastAcked, lastDel int64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a, d := r.acked.Load(), r.delivered.Load()
			dt := now.Sub(last).Seconds()
			fmt.Fprintf(r.stderr, "mpim-bench: %-8s %6.1fs acked %d (%.0f/s) delivered %d (%.0f/s) in-flight %d rate-limited %d errors %d\n",
				*phase.Load(), time.Since(time.Unix(0, r.start.Load())).Seconds(), a, float64(a-lastAcked)/dt, d, float64(d-lastDel)/dt,
				r.inflight(), r.rateLimited.Load(), r.sendErrors.Load())
			lastAcked, lastDel, last = a, d, now
		}
	}
}

// closeAll closes every connection.
func (r *runner) closeAll() {
	var wg sync.WaitGroup
	for _, cl := range r.clients {
		if cl != nil && cl.c != nil {
			wg.Go(func() { cl.c.Close() })
		}
	}
	wg.Wait()
}

// parallel runs fn(ctx, i) for i in [0, n), at most limit at a time, and
// returns the first error; the others then see ctx cancelled.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

var errAuditFailed = errors.New("audit failed")
