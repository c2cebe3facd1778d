package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// The storm scenario: --users clients (in 1:1 pairs) register, log in and
// connect (resume with their tokens), exchange one message per pair and
// acknowledge it (so every device has a stored cursor), then all
// disconnect. While they are offline, --senders sender connections (users
// of their own, which stay online) send --missed messages to each of them,
// closed loop with --window in flight per sender. Each sender's user has a
// second device online, its witness: the gateway does not echo a message
// to the device that sent it, so the witness gets the sender's copies.
// Once every send is answered and the witnesses have every copy (the
// projection has caught up), every client reconnects at once (resume with its token,
// --reconnect-concurrency in flight) and catches up from its cursor.
// Catch-up time is measured from the reconnect start until a client has
// received every message it missed; then the run drains and is audited like
// the others.

// StormReport is the storm scenario's part of the report.
type StormReport struct {
	Clients         int   `json:"clients"`
	SenderConns     int   `json:"sender_connections"`
	MissedPerClient int   `json:"missed_per_client"`
	MissedSent      int64 `json:"missed_sent"`  // offline sends issued
	MissedAcked     int64 `json:"missed_acked"` // and acknowledged: what the clients must catch up

	OfflineSeconds     float64 `json:"offline_send_s"`
	OfflineSendsPerSec float64 `json:"offline_sends_acked_per_s"`
	// ProjectedBeforeReconnect: the senders' witnesses (their users'
	// other devices) had a copy of every offline message before the
	// reconnect (so the inboxes were written).
	ProjectedBeforeReconnect bool `json:"projected_before_reconnect"`

	ReconnectConcurrency int     `json:"reconnect_concurrency"`
	ReconnectSeconds     float64 `json:"reconnect_s"` // until every resume was answered
	ReconnectRetries     int64   `json:"reconnect_retries"`
	FirstReconnectError  string  `json:"first_reconnect_error,omitempty"` // of a retried attempt

	// Catch-up per client, from the reconnect start (all clients start
	// together) until the client received the last message it missed;
	// Total is the slowest client: the storm's catch-up time.
	CatchupP50Ms   float64 `json:"catchup_p50_ms"`
	CatchupP99Ms   float64 `json:"catchup_p99_ms"`
	CatchupTotalMs float64 `json:"catchup_total_ms"`
	// The same from each client's own resume answer.
	CatchupFromResumeP50Ms float64 `json:"catchup_from_resume_p50_ms"`
	CatchupFromResumeP99Ms float64 `json:"catchup_from_resume_p99_ms"`

	CaughtUp                int     `json:"caught_up"`
	AllCaughtUp             bool    `json:"all_caught_up"`
	CatchupTimeoutSeconds   float64 `json:"catchup_timeout_s"`
	CatchupDeliveries       int64   `json:"catchup_deliveries"`
	CatchupDeliveriesPerSec float64 `json:"catchup_deliveries_per_s"`
	CatchupServerCPUSeconds float64 `json:"catchup_server_cpu_s,omitempty"`
}

// runStorm runs the storm scenario.
func (r *runner) runStorm(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	setPhase, stopProgress := r.startProgress(ctx)
	defer stopProgress()

	// Register and log in over short-lived connections, then connect
	// everyone with resume: a large setup takes longer than the gateway's
	// idle timeout, which would close the first connections before the
	// keep-alives start.
	setupTime, err := r.timedSetup(ctx, r.resumeAll)
	if err != nil {
		return nil, err
	}
	n := cfg.Users
	clients, senders := r.clients[:n], r.clients[n:]
	witnesses, err := r.witnesses(ctx, senders)
	if err != nil {
		return nil, fmt.Errorf("storm: %w", err)
	}

	// Keep-alives (acks of the latest push, pings): the senders' for the
	// whole run, the clients' per connection.
	skctx, stopSenderKeepalive := context.WithCancel(ctx)
	defer stopSenderKeepalive()
	var skwg sync.WaitGroup
	for _, cl := range slices.Concat(senders, witnesses) {
		skwg.Go(func() { r.keepalive(skctx, cl) })
	}
	ckctx, stopClientKeepalive := context.WithCancel(ctx)
	defer stopClientKeepalive()
	var ckwg sync.WaitGroup
	for _, cl := range clients {
		ckwg.Go(func() { r.keepalive(ckctx, cl) })
	}

	setPhase("prime")
	r.start.Store(time.Now().UnixNano())
	if err := r.prime(ctx, clients); err != nil {
		return nil, fmt.Errorf("storm: prime: %w", err)
	}

	// Everyone offline.
	setPhase("offline")
	stopClientKeepalive()
	ckwg.Wait()
	if err := parallel(ctx, n, 4*cfg.Setup, func(_ context.Context, i int) error {
		clients[i].c.Close()
		return nil
	}); err != nil {
		return nil, err
	}

	// The missed messages, sent while the clients are offline.
	offStart := time.Now()
	r.from.Store(offStart.UnixNano())
	r.to.Store(offStart.Add(cfg.Duration).UnixNano())
	var swg sync.WaitGroup
	for j, s := range senders {
		var to []int
		for i := j; i < n; i += len(senders) {
			to = append(to, i)
		}
		swg.Go(func() { r.stormSender(ctx, s, witnesses[j].idx, to) })
	}
	swg.Wait()
	if !waitFor(ctx, cfg.Drain, func() bool { return r.inflight() <= 0 }) {
		return nil, fmt.Errorf("storm: %d offline sends still unanswered after --drain %s", r.inflight(), cfg.Drain)
	}
	offTime := time.Since(offStart)
	r.to.Store(time.Now().UnixNano())
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// What each client missed (every answer is in: the records are ours to
	// read) and what each sender's witness must have received.
	st := &StormReport{Clients: n, SenderConns: len(senders), MissedPerClient: cfg.Missed,
		ReconnectConcurrency: cfg.Reconnects, CatchupTimeoutSeconds: cfg.CatchupTimeout.Seconds()}
	own := make([]int64, len(senders))
	for j, s := range senders {
		for _, rec := range s.sends {
			st.MissedSent++
			if rec.Acked {
				st.MissedAcked++
				own[j]++
				clients[rec.Recipients[1]].missExpected++
			}
		}
	}
	st.OfflineSeconds = offTime.Seconds()
	st.OfflineSendsPerSec = float64(st.MissedAcked) / offTime.Seconds()
	st.ProjectedBeforeReconnect = waitFor(ctx, cfg.Drain, func() bool {
		for j, w := range witnesses {
			if w.firsts.Load() < own[j] {
				return false
			}
		}
		return true
	})

	// The storm: everyone reconnects at once.
	setPhase("catch-up")
	cpu := newCPUSampler(cfg.Pids)
	cpu.begin()
	stormStart := time.Now()
	for _, cl := range clients {
		if cl.missExpected == 0 { // nothing to catch up
			cl.doneAt.Store(stormStart.UnixNano())
			r.caughtUp.Add(1)
		}
	}
	rctx, stopKeepalive := context.WithCancel(ctx)
	defer stopKeepalive()
	var kwg sync.WaitGroup
	var retries atomic.Int64
	var firstRetryErr atomic.Pointer[string]
	err = parallel(ctx, n, cfg.Reconnects, func(gctx context.Context, i int) error {
		cl := clients[i]
		if err := r.reconnect(gctx, cl, stormStart.Add(cfg.CatchupTimeout), func(err error) {
			retries.Add(1)
			s := err.Error()
			firstRetryErr.CompareAndSwap(nil, &s)
		}); err != nil {
			return err
		}
		kwg.Go(func() { r.keepalive(rctx, cl) })
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storm: reconnect: %w", err)
	}
	st.ReconnectSeconds = time.Since(stormStart).Seconds()
	st.ReconnectRetries = retries.Load()
	if e := firstRetryErr.Load(); e != nil {
		st.FirstReconnectError = *e
	}
	st.AllCaughtUp = waitFor(ctx, cfg.CatchupTimeout-time.Since(stormStart), func() bool { return r.caughtUp.Load() >= int64(n) })
	cpu.end()
	st.CatchupServerCPUSeconds = cpu.seconds()
	st.summarise(clients, stormStart)

	// Drain everything (the witnesses' copies too), then audit.
	setPhase("drain")
	drainStart := time.Now()
	deliveredAll := waitFor(ctx, cfg.Drain, func() bool { return r.delivered.Load() >= r.expected.Load() })
	stopKeepalive()
	stopSenderKeepalive()
	kwg.Wait()
	skwg.Wait()
	ackedAll := r.flushAcks(ctx, max(cfg.Drain-time.Since(drainStart), 2*time.Second))
	drainTime := time.Since(drainStart)
	rss := rssOf(cfg.Pids)
	stopProgress()
	audit := r.closeAndAudit()

	rep := r.report(len(senders), offTime)
	rep.Storm = st
	rep.Warmup = 0
	rep.SetupSeconds = setupTime.Seconds()
	rep.DrainSeconds = drainTime.Seconds()
	rep.AllAnswered, rep.AllDelivered, rep.AllAcked = true, deliveredAll, ackedAll
	rep.setAudit(audit)
	rep.ServerCPUSeconds = st.CatchupServerCPUSeconds
	if rep.ServerCPUSeconds > 0 && st.CatchupDeliveries > 0 {
		rep.ServerCPUPerMessageUs = rep.ServerCPUSeconds * 1e6 / float64(st.CatchupDeliveries)
	}
	rep.ServerRSSBytes = rss
	return rep, nil
}

// prime sends one message from each client to its partner (the pairs of
// the pairs scenario) and waits until every client has its partner's
// message (its own is not echoed) and the server has confirmed its
// acknowledgement: its device then has a
// stored cursor to catch up from. (A device without one is new to the
// server and would start at its inbox's end.)
func (r *runner) prime(ctx context.Context, clients []*client) error {
	cfg := r.cfg
	limit := cfg.Drain + 10*time.Second
	err := parallel(ctx, len(clients), 4*cfg.Setup, func(gctx context.Context, i int) error {
		cl, peer := clients[i], clients[i^1]
		intended := time.Now().UnixNano()
		rec := &sendRecord{ClientMsgID: r.clientMsgID(cl.idx, 0, intended), From: cl.idx, Recipients: []int{peer.idx}}
		cl.sends = append(cl.sends, rec)
		r.issued.Add(1)
		answered := make(chan struct{})
		r.send(ctx, cl, &mpimv1.SendRequest{ClientMsgId: rec.ClientMsgID, Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: r.text,
			To: &mpimv1.SendRequest_UserId{UserId: peer.userID}}, rec, intended, func() { close(answered) })
		select {
		case <-answered:
		case <-gctx.Done():
			return context.Cause(gctx)
		case <-time.After(limit):
			return fmt.Errorf("%s: no answer to a send within %s", cl.username, limit)
		}
		if !rec.Acked {
			return fmt.Errorf("%s: send failed: %s", cl.username, r.errText())
		}
		return nil
	})
	if err != nil {
		return err
	}
	primed := func(cl *client) bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		return cl.firsts.Load() >= 1 && cl.latestPush != "" && cl.ackConfirmed == cl.latestPush
	}
	if !waitFor(ctx, limit, func() bool {
		for _, cl := range clients {
			if !primed(cl) {
				return false
			}
		}
		return true
	}) {
		missing := 0
		for _, cl := range clients {
			if !primed(cl) {
				missing++
			}
		}
		return fmt.Errorf("%d of %d clients lack a delivery or a confirmed ack after %s", missing, len(clients), limit)
	}
	return nil
}

func (r *runner) errText() string {
	if e := r.firstErr.Load(); e != nil {
		return *e
	}
	return "no answer"
}

// stormSender sends cfg.Missed messages to each of the clients to, round
// robin (one to each, then the next round), with cfg.Window in flight,
// until done, the offline time limit or the end of ctx. Each must reach
// its recipient and witness, the index of the sender's user's other
// device.
func (r *runner) stormSender(ctx context.Context, cl *client, witness int, to []int) {
	sctx, cancel := context.WithDeadline(ctx, time.Unix(0, r.to.Load()))
	defer cancel()
	slots := make(chan struct{}, r.cfg.Window)
	n := 0
	for range r.cfg.Missed {
		for _, i := range to {
			select {
			case slots <- struct{}{}:
			case <-sctx.Done():
				return
			case <-cl.c.Done():
				return
			}
			intended := time.Now().UnixNano()
			rec := &sendRecord{ClientMsgID: r.clientMsgID(cl.idx, n, intended), From: cl.idx, Recipients: []int{witness, i}}
			n++
			cl.sends = append(cl.sends, rec)
			r.issued.Add(1)
			// ctx, not sctx: a rate-limited retry after the time limit
			// is still this send.
			r.send(ctx, cl, &mpimv1.SendRequest{ClientMsgId: rec.ClientMsgID, Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: r.text,
				To: &mpimv1.SendRequest_UserId{UserId: r.clients[i].userID}}, rec, intended, func() { <-slots })
		}
	}
}

// witnesses logs each sender's user in on a second device (its own
// connection to the sender's gateway), cfg.Setup at a time, and adds them
// to the run's clients (and its audit): the witness of senders[j] is the
// j-th returned.
func (r *runner) witnesses(ctx context.Context, senders []*client) ([]*client, error) {
	ws := make([]*client, len(senders))
	for j, s := range senders {
		ws[j] = &client{idx: len(r.clients) + j, url: s.url, username: s.username, userID: s.userID, audit: newDeviceAudit()}
	}
	err := parallel(ctx, len(ws), r.cfg.Setup, func(gctx context.Context, j int) error {
		w := ws[j]
		if err := r.connect(gctx, w); err != nil {
			return err
		}
		resp, err := w.c.Request(gctx, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{
			Username: w.username, Password: r.cfg.Password, DeviceId: "bench-" + strconv.Itoa(senders[j].idx) + "-witness", Platform: "bench"}})
		if err != nil {
			return fmt.Errorf("witness login %s: %w", w.username, err)
		}
		w.token = resp.GetLogin().GetToken()
		return nil
	})
	r.clients = append(r.clients, ws...)
	return ws, err
}

// reconnect dials cl's gateway again and resumes its session, retrying a
// failed attempt (a refused or reset connection under the storm) with a
// short backoff until deadline; retry is told of every failed attempt that
// is retried. It sets cl.resumedAt to when the resume's answer arrived.
func (r *runner) reconnect(ctx context.Context, cl *client, deadline time.Time, retry func(error)) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithDeadline(ctx, deadline)
		err := r.connect(actx, cl)
		if err == nil {
			if err = r.resume(actx, cl); err != nil {
				cl.c.Close()
				err = fmt.Errorf("resume %s: %w", cl.username, err)
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || attempt >= 5 || time.Now().Add(backoff).After(deadline) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (attempt %d)", err, attempt)
		}
		retry(err)
		time.Sleep(backoff)
		backoff *= 2
	}
}

// resume resumes cl's session on its new connection and records when the
// answer arrived (on the reader goroutine, before any push of the catch-up
// is handled).
func (r *runner) resume(ctx context.Context, cl *client) error {
	type answer struct {
		resp *mpimv1.Response
		at   int64
	}
	ch := make(chan answer, 1)
	f := &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: cl.token}}}
	if err := cl.c.Go(ctx, f, func(resp *mpimv1.Response) { ch <- answer{resp, time.Now().UnixNano()} }); err != nil {
		return err
	}
	select {
	case a := <-ch:
		if e := a.resp.GetError(); e != nil {
			return fmt.Errorf("%s: %s", e.GetCode(), e.GetMessage())
		}
		cl.resumedAt = a.at
		return nil
	case <-cl.c.Done():
		return fmt.Errorf("connection ended: %w", cl.c.Err())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// summarise fills in the catch-up figures from the clients' times.
func (st *StormReport) summarise(clients []*client, start time.Time) {
	var fromStart, fromResume []time.Duration
	for _, cl := range clients {
		st.CatchupDeliveries += cl.missGot.Load()
		done := cl.doneAt.Load()
		if done == 0 {
			continue
		}
		fromStart = append(fromStart, time.Duration(done-start.UnixNano()))
		fromResume = append(fromResume, time.Duration(max(done-cl.resumedAt, 0)))
	}
	st.CaughtUp = len(fromStart)
	st.AllCaughtUp = st.CaughtUp == len(clients)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	st.CatchupP50Ms, st.CatchupP99Ms = ms(quantile(fromStart, 0.5)), ms(quantile(fromStart, 0.99))
	st.CatchupFromResumeP50Ms, st.CatchupFromResumeP99Ms = ms(quantile(fromResume, 0.5)), ms(quantile(fromResume, 0.99))
	total := quantile(fromStart, 1)
	if !st.AllCaughtUp {
		total = time.Duration(st.CatchupTimeoutSeconds * 1e9) // at least
	}
	st.CatchupTotalMs = ms(total)
	if total > 0 {
		st.CatchupDeliveriesPerSec = float64(st.CatchupDeliveries) / total.Seconds()
	}
}

// quantile returns the q-quantile (nearest rank) of ds, 0 if it is empty;
// it sorts ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
