package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/push/webhook"
)

// The push scenario ("offline push"): the pairs of the pairs scenario, but
// the receiving half registers a push token and goes offline, so that
// every message reaches its receiver as a webhook call of mpimd's push
// projector (docs/push.md). mpim-bench is the webhook: an HTTP server on
// --push-listen that checks every call's signature under the secret of
// --push-secret-file and records when it arrived. Before the measured
// sending, each sender primes its receiver (one message, sent again until a
// call for the receiver arrives), so that the token is in the read model
// and the route is gone. A message of seq s arrived with the first call to
// its receiver that carries seq s or later: a user's calls go one at a time
// in log order, each carrying the notifications collapsed into it. Send ->
// webhook latency is from the intended send time to that call's arrival
// (both on this machine's clock). Every acked message of the warm-up and
// measured window must arrive within --drain after sending stops; one
// that does not is a lost push and fails the audit, as does a call whose
// signature or fields are wrong.

// PushReport is the push scenario's part of the report.
type PushReport struct {
	Receivers int `json:"receivers"`
	// Calls: webhook calls for this run's receivers; CallsPerSec: those
	// that arrived in the measured window, per second.
	Calls       int64   `json:"calls"`
	CallsPerSec float64 `json:"calls_per_s"`
	// Notifications: the calls' counts summed; Collapsed: notifications
	// that rode in a call with others (Notifications - Calls).
	Notifications int64 `json:"notifications"`
	Collapsed     int64 `json:"collapsed"`
	// Repeated: calls whose idempotency key an earlier call had (allowed:
	// at least once).
	Repeated int64 `json:"repeated"`
	// Foreign: calls for users of other runs (answered, not counted).
	Foreign int64 `json:"foreign"`
	// BadCalls: calls refused for a wrong signature, timestamp or body.
	BadCalls     int64  `json:"bad_calls"`
	FirstBadCall string `json:"first_bad_call,omitempty"`
	// Messages: acked messages of the warm-up and measured window that
	// must arrive; Arrived: those a call carried within the wait.
	Messages    int64   `json:"messages"`
	Arrived     int64   `json:"arrived"`
	Lost        int64   `json:"lost"`
	WaitSeconds float64 `json:"wait_s"`
	// SendWebhook: intended send time -> arrival of the call that carried
	// the message, for messages intended in the measured window.
	SendWebhook  Latency `json:"send_webhook"`
	PrimeSeconds float64 `json:"prime_s"`
}

// pushCallAt is when a call for one receiver arrived (Unix ns) and the
// latest seq and count it carried.
type pushCallAt struct {
	at    int64
	seq   int64
	count int
}

// pushReceiver is the scenario's webhook endpoint. Calls for users it does
// not expect are answered 200 and counted as foreign.
type pushReceiver struct {
	secret []byte
	now    func() time.Time

	mu        sync.Mutex
	tokens    map[string]string // user id -> the token its call must name
	calls     map[string][]pushCallAt
	keys      map[string]bool
	repeated  int64
	foreign   int64
	bad       int64
	firstBad  string
	arrivedCh chan struct{} // signalled (not blocking) on each good call
}

func newPushReceiver(secret []byte) *pushReceiver {
	return &pushReceiver{secret: secret, now: time.Now, tokens: map[string]string{},
		calls: map[string][]pushCallAt{}, keys: map[string]bool{}, arrivedCh: make(chan struct{}, 1)}
}

// expect makes calls for user, naming token among their devices, this
// run's.
func (p *pushReceiver) expect(user, token string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokens[user] = token
}

// maxPushBody bounds a call's body (mpimd's are a few hundred bytes).
const maxPushBody = 1 << 20

// maxPushSkew is how far a call's timestamp may be from this clock.
const maxPushSkew = 5 * time.Minute

func (p *pushReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := p.now()
	status, pl, err := p.check(req, at)
	if err != nil {
		p.mu.Lock()
		p.bad++
		if p.firstBad == "" {
			p.firstBad = err.Error()
		}
		p.mu.Unlock()
		http.Error(w, err.Error(), status)
		return
	}
	p.mu.Lock()
	key := req.Header.Get(webhook.HeaderIdempotency)
	want, ours := p.tokens[string(pl.User)]
	switch {
	case !ours:
		p.foreign++
	case !slices.ContainsFunc(pl.Devices, func(d webhook.Device) bool { return d.Token == want }):
		p.bad++
		if p.firstBad == "" {
			p.firstBad = fmt.Sprintf("call for %s lacks its device's token", pl.User)
		}
		p.mu.Unlock()
		http.Error(w, "the receiver's token is missing", http.StatusBadRequest)
		return
	default:
		if p.keys[key] {
			p.repeated++
		}
		p.keys[key] = true
		p.calls[string(pl.User)] = append(p.calls[string(pl.User)], pushCallAt{at: at.UnixNano(), seq: pl.Seq, count: pl.Count})
	}
	p.mu.Unlock()
	select {
	case p.arrivedCh <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
}

// check verifies a call received at now as docs/push.md tells a relay to:
// the signature over the exact body, a timestamp near now, then the body's
// fields. It returns the status to answer a bad call with.
func (p *pushReceiver) check(req *http.Request, now time.Time) (int, *webhook.Payload, error) {
	if req.Method != http.MethodPost {
		return http.StatusMethodNotAllowed, nil, fmt.Errorf("method %s, want POST", req.Method)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Body, maxPushBody))
	if err != nil {
		return http.StatusBadRequest, nil, fmt.Errorf("body: %w", err)
	}
	ts, err := strconv.ParseInt(req.Header.Get(webhook.HeaderTimestamp), 10, 64)
	if err != nil {
		return http.StatusUnauthorized, nil, fmt.Errorf("timestamp %q: %w", req.Header.Get(webhook.HeaderTimestamp), err)
	}
	if skew := now.Sub(time.Unix(ts, 0)).Abs(); skew > maxPushSkew {
		return http.StatusUnauthorized, nil, fmt.Errorf("timestamp %d is %s from this clock", ts, skew.Round(time.Second))
	}
	if !webhook.Verify(p.secret, ts, body, req.Header.Get(webhook.HeaderSignature)) {
		return http.StatusUnauthorized, nil, errors.New("signature does not match the body under the secret")
	}
	var pl webhook.Payload
	if err := json.Unmarshal(body, &pl); err != nil {
		return http.StatusBadRequest, nil, fmt.Errorf("body: %w", err)
	}
	switch {
	case pl.User == "" || pl.EventID == "" || pl.Count < 1 || len(pl.Devices) == 0:
		return http.StatusBadRequest, nil, fmt.Errorf("body lacks user, eventId, devices or a count >= 1: %.200s", body)
	case req.Header.Get(webhook.HeaderIdempotency) != pl.EventID:
		return http.StatusBadRequest, nil, fmt.Errorf("%s %q is not the eventId %q", webhook.HeaderIdempotency, req.Header.Get(webhook.HeaderIdempotency), pl.EventID)
	}
	return http.StatusOK, &pl, nil
}

// callsFor returns a copy of the calls that arrived for user so far.
func (p *pushReceiver) callsFor(user string) []pushCallAt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls[user])
}

// pushMessage is an acked message to an offline receiver: its seq in the
// pair's conversation and its intended send time (Unix ns).
type pushMessage struct {
	seq      int64
	intended int64
}

// pushArrivals returns, for each message, when the call that carried it
// arrived (Unix ns; 0: none did): the first call, in arrival order, whose
// seq is at least the message's.
func pushArrivals(msgs []pushMessage, calls []pushCallAt) []int64 {
	calls = slices.Clone(calls)
	slices.SortStableFunc(calls, func(a, b pushCallAt) int { return int(a.at - b.at) })
	// best[i]: the highest seq carried by calls[:i+1]
	best := make([]int64, len(calls))
	for i, c := range calls {
		best[i] = c.seq
		if i > 0 {
			best[i] = max(best[i], best[i-1])
		}
	}
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		j, _ := slices.BinarySearchFunc(best, m.seq, func(b, s int64) int {
			if b < s {
				return -1
			}
			return 1
		})
		if j < len(calls) {
			out[i] = calls[j].at
		}
	}
	return out
}

// readPushSecret reads the webhook secret as mpimd reads it: 16..1024
// bytes, a trailing newline dropped.
func readPushSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if len(b) < 16 || len(b) > 1024 {
		return nil, fmt.Errorf("%s: the secret must have 16..1024 bytes, has %d", path, len(b))
	}
	return b, nil
}

// pushScenario is a push scenario's state: the receiver serving the
// webhook and, by sender, the index of its offline receiver.
type pushScenario struct {
	recv      *pushReceiver
	srv       *http.Server
	receivers map[int]int
	primed    time.Duration
}

// startPush serves the webhook on --push-listen, then, for each pair of
// targets, registers a push token on the receiver's device, closes its
// connection and makes the target one without a recipient device; then it
// primes every receiver (primePush).
func (r *runner) startPush(ctx context.Context, targets map[int]target) (*pushScenario, error) {
	ln, err := net.Listen("tcp", r.cfg.PushListen)
	if err != nil {
		return nil, fmt.Errorf("push-listen: %w", err)
	}
	ps := &pushScenario{recv: newPushReceiver(r.cfg.pushSecret), receivers: map[int]int{}}
	ps.srv = &http.Server{Handler: ps.recv, ReadHeaderTimeout: 5 * time.Second}
	go ps.srv.Serve(ln) // ends with ErrServerClosed at close
	senders := slices.Sorted(maps.Keys(targets))
	err = parallel(ctx, len(senders), r.cfg.Setup, func(gctx context.Context, k int) error {
		cl := r.clients[targets[senders[k]].recipients[0]]
		defer cl.c.Close() // offline from here, whether the token was taken or not
		token := "mpim-bench." + cl.username
		if _, err := cl.c.Request(gctx, &mpimv1.ClientFrame_RegisterPushToken{RegisterPushToken: &mpimv1.RegisterPushTokenRequest{
			Platform: "custom", Token: token, AppId: "mpim-bench"}}); err != nil {
			return fmt.Errorf("registerPushToken %s: %w", cl.username, err)
		}
		ps.recv.expect(cl.userID, token)
		return nil
	})
	for _, s := range senders {
		i := targets[s].recipients[0]
		ps.receivers[s] = i
		r.clients[i].c = nil // offline on purpose: not a dropped connection
		targets[s] = target{userID: targets[s].userID}
	}
	if err == nil {
		start := time.Now()
		err = r.primePush(ctx, ps)
		ps.primed = time.Since(start)
	}
	if err != nil {
		ps.close()
		return nil, err
	}
	return ps, nil
}

// primeRetry is how long priming waits for a receiver's call before its
// sender sends it another message.
const primeRetry = 3 * time.Second

// primePush has each sender send its receiver a message, again every
// primeRetry, until a call for every receiver arrived, for at most --drain
// plus 10 s: then the receiver's token is in the read model, its route is
// gone and the push projector runs.
func (r *runner) primePush(ctx context.Context, ps *pushScenario) error {
	limit := time.Now().Add(r.cfg.Drain + 10*time.Second)
	n := map[int]int{}
	primed := func(i int) bool { return len(ps.recv.callsFor(r.clients[i].userID)) > 0 }
	all := func() bool {
		for _, i := range ps.receivers {
			if !primed(i) {
				return false
			}
		}
		return true
	}
	for {
		waiting := 0
		for s, i := range ps.receivers {
			if primed(i) {
				continue
			}
			waiting++
			cl := r.clients[s]
			intended := time.Now().UnixNano()
			rec := &sendRecord{ClientMsgID: r.clientMsgID(s, n[s], intended), From: s}
			n[s]++
			cl.sends = append(cl.sends, rec)
			r.issued.Add(1)
			r.send(ctx, cl, &mpimv1.SendRequest{ClientMsgId: rec.ClientMsgID, Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: r.text,
				To: &mpimv1.SendRequest_UserId{UserId: r.clients[i].userID}}, rec, intended, func() {})
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(limit) {
			return fmt.Errorf("push: %d of %d offline receivers got no webhook call on %s within %s (is mpimd's push projector running with --push-webhook-url http://%s/ and this secret?); first bad call: %s",
				waiting, len(ps.receivers), r.cfg.PushListen, r.cfg.Drain+10*time.Second, r.cfg.PushListen, cmp.Or(ps.recv.firstBadCall(), "none"))
		}
		deadline := time.After(primeRetry)
	wait:
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline:
				break wait
			case <-ps.recv.arrivedCh:
				if all() {
					return nil
				}
			}
		}
	}
}

func (p *pushReceiver) firstBadCall() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstBad
}

// pushMessages returns, by receiver index, the acked messages of sends
// intended from the run's start (the warm-up) on.
func (r *runner) pushMessages(ps *pushScenario) map[int][]pushMessage {
	out := map[int][]pushMessage{}
	start := r.start.Load()
	for s, i := range ps.receivers {
		for _, rec := range r.clients[s].sends {
			_, intended, ok := r.parseClientMsgID(rec.ClientMsgID)
			if ok && rec.Acked && intended >= start {
				out[i] = append(out[i], pushMessage{seq: int64(rec.Seq), intended: intended})
			}
		}
	}
	return out
}

// lostPushes counts the messages no call carried yet.
func (r *runner) lostPushes(ps *pushScenario, msgs map[int][]pushMessage) int64 {
	var lost int64
	for i, ms := range msgs {
		for _, at := range pushArrivals(ms, ps.recv.callsFor(r.clients[i].userID)) {
			if at == 0 {
				lost++
			}
		}
	}
	return lost
}

// finishPush waits, at most wait, until every message arrived, stops the
// webhook and sums up; the send -> webhook latencies of the messages
// intended in the measured window go to the delivery series.
func (r *runner) finishPush(ctx context.Context, ps *pushScenario, wait time.Duration, measured time.Duration) *PushReport {
	msgs := r.pushMessages(ps)
	waited := time.Now()
	waitFor(ctx, wait, func() bool { return r.lostPushes(ps, msgs) == 0 })
	ps.close()
	rep := &PushReport{Receivers: len(ps.receivers), WaitSeconds: time.Since(waited).Seconds(), PrimeSeconds: ps.primed.Seconds()}
	from, to := r.from.Load(), r.to.Load()
	var inWindow int64
	for i, ms := range msgs {
		calls := ps.recv.callsFor(r.clients[i].userID)
		for _, c := range calls {
			if c.at >= from && c.at < to {
				inWindow++
			}
		}
		for k, at := range pushArrivals(ms, calls) {
			rep.Messages++
			if at == 0 {
				rep.Lost++
				continue
			}
			rep.Arrived++
			if ms[k].intended >= from {
				r.record(seriesDelivery, at, at-ms[k].intended)
			}
		}
	}
	rv := ps.recv
	rv.mu.Lock()
	for _, calls := range rv.calls {
		for _, c := range calls {
			rep.Calls++
			rep.Notifications += int64(c.count)
		}
	}
	rep.Collapsed = rep.Notifications - rep.Calls
	rep.Repeated, rep.Foreign, rep.BadCalls, rep.FirstBadCall = rv.repeated, rv.foreign, rv.bad, rv.firstBad
	rv.mu.Unlock()
	if s := measured.Seconds(); s > 0 {
		rep.CallsPerSec = float64(inWindow) / s
	}
	r.histMu.Lock()
	rep.SendWebhook = latencyOf(r.delHist)
	r.histMu.Unlock()
	return rep
}

// close stops serving the webhook; mpimd's calls then fail and are retried.
func (ps *pushScenario) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = ps.srv.Shutdown(ctx) // what is still open after a second is cut: the run is over
}
