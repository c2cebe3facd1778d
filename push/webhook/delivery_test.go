package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
)

func TestRetriesBackOffUntilAccepted(t *testing.T) {
	clock := newFakeClock(true) // every sleep moves the clock by its length
	r := newReceiver(t, clock)
	answers := []int{500, 502, 429, 503, 200}
	r.answer = func(n int, _ Payload, w http.ResponseWriter, _ *http.Request) int {
		if answers[n] == 429 {
			w.Header().Set("Retry-After", "7")
		}
		if answers[n] == 503 {
			w.Header().Set("Retry-After", "3600") // beyond MaxBackoff: cut to it
		}
		return answers[n]
	}
	s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.BaseBackoff = time.Second; c.MaxBackoff = time.Minute })
	b := submit(t, s, note(1, 1))
	waitSettled(t, s, b)
	reqs := r.requests()
	var gaps []time.Duration
	for i := 1; i < len(reqs); i++ {
		gaps = append(gaps, reqs[i].at.Sub(reqs[i-1].at))
		if reqs[i].key != reqs[0].key || string(reqs[i].body) != string(reqs[0].body) {
			t.Errorf("attempt %d: key %q body %s, want those of attempt 1", i+1, reqs[i].key, reqs[i].body)
		}
	}
	// Jitter 0.5 of 1 s, 2 s, 4 s (Retry-After 7 s is longer), 8 s (Retry-After cut to 1 min).
	want := []time.Duration{500 * time.Millisecond, time.Second, 7 * time.Second, time.Minute}
	if !slices.Equal(gaps, want) {
		t.Fatalf("waits between attempts %v, want %v", gaps, want)
	}
	for class, n := range map[string]float64{classServer: 3, classThrottled: 1, classRejected: 0} {
		if v := value(s.m.failures.WithLabelValues(class)); v != n {
			t.Errorf("failures{class=%s} %v, want %v", class, v, n)
		}
	}
}

func TestBackoffGrowsUnderItsCeiling(t *testing.T) {
	s := &Sender{cfg: Config{BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Rand: func() float64 { return 0.999 }}}
	prev := time.Duration(0)
	for n := 1; n <= 60; n++ {
		d := s.backoff(n, 0)
		if d < prev || d >= time.Second {
			t.Fatalf("attempt %d waits %s after %s: want growing, under 1 s", n, d, prev)
		}
		prev = d
	}
	s.cfg.Rand = func() float64 { return 0 }
	if d := s.backoff(3, 0); d != 0 {
		t.Errorf("full jitter at 0 waits %s, want 0", d)
	}
}

func TestRejectedCallIsDeadLetteredListedAndResent(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	r.answer = func(n int, _ Payload, w http.ResponseWriter, _ *http.Request) int {
		if n == 0 {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte("unknown token\n"))
			return 0
		}
		return http.StatusOK
	}
	s, _ := testSender(t, r.srv.URL, clock, nil)
	b := submit(t, s, note(1, 1))
	waitSettled(t, s, b)
	if n := len(r.requests()); n != 1 {
		t.Fatalf("a 400 was tried %d times, want once", n)
	}
	dls, err := s.DeadLetters(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	first := r.requests()[0]
	if len(dls) != 1 || dls[0].Status != 400 || dls[0].Reason != "400 unknown token" || dls[0].Attempts != 1 ||
		dls[0].Key != first.key || string(dls[0].Body) != string(first.body) || dls[0].User != string(userID(1)) {
		t.Fatalf("dead letters %+v, want the call with status 400 and its reason", dls)
	}
	if v := value(s.m.deadLettered); v != 1 {
		t.Errorf("dead-lettered metric %v, want 1", v)
	}
	if err := s.Resend(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	reqs := r.requests()
	if len(reqs) != 2 || reqs[1].status != 200 || reqs[1].key != first.key || string(reqs[1].body) != string(first.body) {
		t.Fatalf("re-sent call %+v, want the same key and body answered 200", reqs[len(reqs)-1])
	}
	if dls, err := s.DeadLetters(ctx, "", 10); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after a re-send: %+v, %v", dls, err)
	}
	t.Run("bad ids are refused", func(t *testing.T) {
		if err := s.Resend(ctx, dls[0].ID); !errors.Is(err, ErrNoDeadLetter) {
			t.Errorf("re-sending a deleted dead letter: %v", err)
		}
		for _, id := range []string{"", "x", "1-", "-1", "1-2-3", "1-x"} {
			if err := s.Resend(ctx, id); err == nil || !strings.Contains(err.Error(), "bad dead-letter id") {
				t.Errorf("Resend(%q): %v", id, err)
			}
			if _, err := s.DeadLetters(ctx, id+"!", 10); err == nil {
				t.Errorf("DeadLetters after %q: no error", id+"!")
			}
		}
		for _, n := range []int64{0, -1, maxListCount + 1} {
			if _, err := s.DeadLetters(ctx, "", n); err == nil {
				t.Errorf("DeadLetters count %d: no error", n)
			}
		}
	})
}

func TestFailingCallIsDeadLetteredAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	r.answer = func(int, Payload, http.ResponseWriter, *http.Request) int { return http.StatusServiceUnavailable }
	s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.MaxAttempts = 3 })
	b := submit(t, s, note(1, 1))
	waitSettled(t, s, b)
	dls, err := s.DeadLetters(ctx, "", 10)
	if err != nil || len(dls) != 1 || dls[0].Attempts != 3 || dls[0].Status != 503 || len(r.requests()) != 3 {
		t.Fatalf("after 3 answers 503: dead letters %+v (%v), %d requests", dls, err, len(r.requests()))
	}
	err = s.Resend(ctx, dls[0].ID)
	if err == nil || !strings.Contains(err.Error(), "dead-lettered anew") {
		t.Fatalf("re-sending to a failing endpoint: %v", err)
	}
	again, err := s.DeadLetters(ctx, "", 10)
	if err != nil || len(again) != 1 || again[0].ID == dls[0].ID || again[0].Key != dls[0].Key {
		t.Fatalf("dead letters after a failed re-send: %+v, %v; want one new entry with the same key", again, err)
	}
}

// TestReceiverDownThenUp sends to an address nobody listens on, then to a
// receiver that loses its first answer to each call, then to one that
// answers: every notification arrives, and a call that arrives twice
// carries the same key and body.
func TestReceiverDownThenUp(t *testing.T) {
	clock := newFakeClock(false)
	addr := testsvc.FreeAddr(t)
	r := newReceiver(t, clock)
	r.srv.Close()
	seen := make(map[string]bool)
	r.answer = func(_ int, p Payload, w http.ResponseWriter, _ *http.Request) int {
		r.mu.Lock()
		first := !seen[p.EventID]
		seen[p.EventID] = true
		r.mu.Unlock()
		if first { // handled, but the answer is lost
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return 0
		}
		return http.StatusOK
	}
	s, _ := testSender(t, "http://"+addr+"/push", clock, func(c *Config) { c.MaxAttempts = 50; c.Concurrency = 4 })
	const users, each = 20, 5
	var last Batch
	for i := range each {
		var batch []Notification
		for u := range users {
			batch = append(batch, note(u, i*users+u))
		}
		last = submit(t, s, batch...)
	}
	clock.Advance(DefaultWindow) // the calls go out, to nobody
	for range 3 {
		clock.Advance(time.Second) // a few rounds of refused connections
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	up := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(r.serve)}}
	up.Start()
	t.Cleanup(up.Close)
	// Move the clock past every backoff until all settle.
	eventually(t, "every call settles", func() { clock.Advance(time.Minute) }, func() bool { return s.Settled(last) })
	ctx := context.Background()
	bodies := make(map[string]string)
	count := make(map[string]int)
	for _, q := range r.requests() {
		if b, ok := bodies[q.key]; ok && b != string(q.body) {
			t.Errorf("key %s arrived with two bodies:\n%s\n%s", q.key, b, q.body)
		}
		if q.status == http.StatusOK {
			bodies[q.key] = string(q.body)
			count[string(q.p.User)] += q.p.Count
		}
	}
	for u := range users {
		if count[string(userID(u))] != each {
			t.Errorf("user %d: counts add to %d, want %d", u, count[string(userID(u))], each)
		}
	}
	if dls, err := s.DeadLetters(ctx, "", 10); err != nil || len(dls) != 0 {
		t.Errorf("dead letters: %+v, %v", dls, err)
	}
}
