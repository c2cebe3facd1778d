package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
)

var testSecret = []byte("0123456789abcdef-test-secret")

// fakeClock is a Clock that moves only when told: by Advance, or, when
// auto, by every SleepUntil (which then returns at once).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	auto    bool
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at   time.Time
	done chan struct{}
}

func newFakeClock(auto bool) *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), auto: auto}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	if c.auto || !t.After(c.now) {
		if t.After(c.now) {
			c.now = t
		}
		c.mu.Unlock()
		return ctx.Err()
	}
	w := fakeWaiter{at: t, done: make(chan struct{})}
	c.waiters = append(c.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves the clock by d and wakes the sleepers it passed.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
		} else {
			close(w.done)
		}
	}
	c.waiters = kept
}

// received is one request the receiver answered.
type received struct {
	p      Payload
	body   []byte
	key    string
	at     time.Time // the fake clock's time
	status int
}

// receiver is the webhook endpoint of a test: it checks every request's
// signature and answers with answer (200 when nil).
type receiver struct {
	tb     testing.TB
	clock  *fakeClock
	srv    *httptest.Server
	answer func(n int, p Payload, w http.ResponseWriter, req *http.Request) int

	mu      sync.Mutex
	arrived int // requests that arrived, answered or not
	reqs    []received
}

func newReceiver(tb testing.TB, clock *fakeClock) *receiver {
	tb.Helper()
	r := &receiver{tb: tb, clock: clock}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.tb.Errorf("receiver: reading body: %v", err)
		return
	}
	// Verified as docs/push.md shows, not with Sign: the test guards the
	// documented format.
	ts := req.Header.Get("X-Mpim-Timestamp")
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	if sec, err := strconv.ParseInt(ts, 10, 64); err != nil || sec > r.clock.Now().Unix() ||
		!hmac.Equal([]byte(want), []byte(req.Header.Get("X-Mpim-Signature"))) {
		r.tb.Errorf("receiver: bad signature %q at %q", req.Header.Get(HeaderSignature), req.Header.Get(HeaderTimestamp))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p Payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.tb.Errorf("receiver: body %s: %v", body, err)
	}
	r.mu.Lock()
	n := r.arrived
	r.arrived++
	r.mu.Unlock()
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(n, p, w, req)
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, received{p: p, body: body, key: req.Header.Get(HeaderIdempotency), at: r.clock.Now(), status: status})
	r.mu.Unlock()
	if status != 0 { // 0: the answer function answered (or hung up) itself
		w.WriteHeader(status)
	}
}

// requests returns the requests answered so far.
func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// testSender returns a Sender posting to url with the fake clock, a fresh
// registry and a dead-letter stream under the test's Redis prefix; edit
// adjusts the configuration first.
func testSender(tb testing.TB, url string, clock *fakeClock, edit func(*Config)) (*Sender, *prometheus.Registry) {
	tb.Helper()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	tb.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	cfg := Config{URL: url, Secret: testSecret, Window: DefaultWindow, DeadLetterKey: rt.Prefix + "push:dlq",
		Registerer: reg, Clock: clock, Rand: func() float64 { return 0.5 }}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // abandon what is unsettled: the test is over
		_ = s.Close(ctx)
	})
	return s, reg
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// note returns a notification to user u (a ULID-like id built from n) for
// event i.
func note(u, i int) Notification {
	return Notification{
		User:         userID(u),
		Devices:      []Device{{ID: "phone-1", Platform: PlatformAPNs, Token: "tok-" + strconv.Itoa(u), AppID: "com.example.chat"}},
		Conversation: "c/01HZY0000000000000000GROUP",
		Sender:       userID(999),
		SenderName:   "Alice",
		Text:         fmt.Sprintf("message %d", i),
		EventID:      fmt.Sprintf("1700000000000-%d", i),
		Seq:          int64(i),
		UnreadBadge:  new(int64(i)),
	}
}

func userID(n int) domain.UserID { return domain.UserID(fmt.Sprintf("u/01HZY%021d", n)) }

// waitSettled waits for batch b, failing tb if the sender never settles
// it (a hang guard, not a timing check).
func waitSettled(tb testing.TB, s *Sender, b Batch) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Wait(ctx, b); err != nil {
		tb.Fatalf("batch %d never settled: %v", b, err)
	}
}

// submit submits ns as one batch, failing tb on an error.
func submit(tb testing.TB, s *Sender, ns ...Notification) Batch {
	tb.Helper()
	b, err := s.Submit(context.Background(), ns)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// eventually polls cond, with step between polls, until it holds, failing
// tb after a minute (a hang guard, not a timing check).
func eventually(tb testing.TB, what string, step func(), cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("never: %s", what)
		}
		if step != nil {
			step()
		}
		time.Sleep(2 * time.Millisecond)
	}
}
