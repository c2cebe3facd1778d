package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func TestBadConfigIsRefused(t *testing.T) {
	good := func() Config {
		return Config{URL: "https://push.example.com/hook", Secret: testSecret, Window: DefaultWindow, DeadLetterKey: "mpim:push:dlq"}
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled by New
	defer rdb.Close()
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"window 0", func(c *Config) { c.Window = 0 }, "collapse window must be 10ms..1m0s, got 0s"},
		{"window huge", func(c *Config) { c.Window = time.Hour }, "collapse window must be 10ms..1m0s, got 1h0m0s"},
		{"empty secret", func(c *Config) { c.Secret = nil }, "secret must be 16..1024 bytes, got 0"},
		{"short secret", func(c *Config) { c.Secret = []byte("short") }, "secret must be 16..1024 bytes, got 5"},
		{"no URL", func(c *Config) { c.URL = "" }, "URL must be an absolute http or https URL"},
		{"not a URL", func(c *Config) { c.URL = "::not a url" }, "URL must be an absolute http or https URL"},
		{"other scheme", func(c *Config) { c.URL = "ftp://push.example.com/" }, "URL must be an absolute http or https URL"},
		{"no host", func(c *Config) { c.URL = "http:///hook" }, "URL must be an absolute http or https URL"},
		{"URL too long", func(c *Config) { c.URL = "https://x/" + strings.Repeat("a", maxURLBytes) }, "URL must be"},
		{"unknown preview", func(c *Config) { c.Preview = "all" }, `preview must be none, sender or text, got "all"`},
		{"preview too long", func(c *Config) { c.MaxPreviewBytes = 5000 }, "max preview bytes must be 1..1024"},
		{"pending beyond calls", func(c *Config) { c.MaxCalls = 10; c.MaxPendingUsers = 11 }, "max pending users must be 1..max calls (10), got 11"},
		{"negative calls", func(c *Config) { c.MaxCalls = -1 }, "max calls must be 1..1000000, got -1"},
		{"bytes too small", func(c *Config) { c.MaxBytes = 1000 }, "max bytes must be"},
		{"per user negative", func(c *Config) { c.MaxPerUser = -3 }, "max notifications per call must be"},
		{"concurrency huge", func(c *Config) { c.Concurrency = 1000 }, "concurrency must be 1..256, got 1000"},
		{"timeout huge", func(c *Config) { c.Timeout = time.Hour }, "timeout must be positive and at most 1m0s"},
		{"attempts huge", func(c *Config) { c.MaxAttempts = 51 }, "max attempts must be 1..50, got 51"},
		{"backoff inverted", func(c *Config) { c.BaseBackoff = time.Minute; c.MaxBackoff = time.Second }, "backoff must satisfy"},
		{"no dead-letter key", func(c *Config) { c.DeadLetterKey = "" }, "dead-letter key must be 1..256 bytes, got 0"},
		{"dead-letter length huge", func(c *Config) { c.DeadLetterLen = 1 << 40 }, "dead-letter length must be 1..10000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			_, err := New(rdb, cfg)
			if err == nil || !strings.Contains(err.Error(), "webhook: "+tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("every problem at once", func(t *testing.T) {
		_, err := New(rdb, Config{})
		for _, want := range []string{"URL", "secret", "collapse window", "dead-letter key"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("zero config: %v, want a word on %s", err, want)
			}
		}
	})
	t.Run("no Redis client", func(t *testing.T) {
		if _, err := New(nil, good()); err == nil || !strings.Contains(err.Error(), "Redis client is required") {
			t.Fatalf("New(nil): %v", err)
		}
	})
	t.Run("the same registry twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		cfg := good()
		cfg.Registerer = reg
		s, err := New(rdb, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		if _, err := New(rdb, cfg); err == nil || err.Error() != "webhook: metrics already registered" {
			t.Fatalf("second New on one registry: %v", err)
		}
	})
}

func TestBadNotificationsAreRefused(t *testing.T) {
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	s, _ := testSender(t, r.srv.URL, clock, nil)
	for _, tc := range []struct {
		name string
		edit func(*Notification)
		want string
	}{
		{"token too long", func(n *Notification) { n.Devices[0].Token = strings.Repeat("t", MaxTokenBytes+1) }, "token of device phone-1 must be 1..4096 printable bytes, got 4097"},
		{"empty token", func(n *Notification) { n.Devices[0].Token = "" }, "token of device phone-1 must be"},
		{"unknown platform", func(n *Notification) { n.Devices[0].Platform = "pager" }, `unknown platform "pager"`},
		{"no devices", func(n *Notification) { n.Devices = nil }, "must carry 1..64 devices, got 0"},
		{"too many devices", func(n *Notification) { n.Devices = make([]Device, MaxDevices+1) }, "must carry 1..64 devices, got 65"},
		{"bad device id", func(n *Notification) { n.Devices[0].ID = "a b" }, "device id must be"},
		{"bad app id", func(n *Notification) { n.Devices[0].AppID = strings.Repeat("a", 300) }, "app id of device phone-1"},
		{"bad user", func(n *Notification) { n.User = "bob" }, `invalid user "bob"`},
		{"bad sender", func(n *Notification) { n.Sender = "u/x" }, `invalid sender "u/x"`},
		{"no event id", func(n *Notification) { n.EventID = "" }, "event id must be 1..256 printable bytes"},
		{"negative seq", func(n *Notification) { n.Seq = -1 }, "seq must not be negative"},
		{"negative badge", func(n *Notification) { n.UnreadBadge = new(int64(-1)) }, "unread badge must be 0..1000000000, got -1"},
		{"huge badge", func(n *Notification) { n.UnreadBadge = new(int64(MaxBadge + 1)) }, "unread badge must be 0..1000000000"},
		{"text too long", func(n *Notification) { n.Text = strings.Repeat("x", maxTextBytes+1) }, "text must be valid UTF-8"},
		{"text not UTF-8", func(n *Notification) { n.Text = "\xff" }, "text must be valid UTF-8"},
		{"sender name too long", func(n *Notification) { n.SenderName = strings.Repeat("n", 257) }, "sender name must be"},
		{"bad conversation", func(n *Notification) { n.Conversation = "c/\n" }, "conversation must be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := note(1, 1)
			n.Devices = append([]Device(nil), n.Devices...)
			tc.edit(&n)
			_, err := s.Submit(context.Background(), []Notification{note(2, 2), n})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "notification 1: "+tc.want) {
				t.Fatalf("Submit: %v, want %q of notification 1", err, tc.want)
			}
		})
	}
	b := submit(t, s, note(3, 3)) // nothing of the refused batches was added
	waitSettled(t, s, b)
	if reqs := r.requests(); len(reqs) != 1 || reqs[0].p.User != userID(3) {
		t.Fatalf("calls %+v, want only user 3's", reqs)
	}
}

// TestFullSenderWaitsAndSettlesInOrder holds the endpoint: Submit waits for
// room once MaxCalls calls are held (and gives up with its context), and a
// batch is not settled while a call of an earlier batch is unsettled.
func TestFullSenderWaitsAndSettlesInOrder(t *testing.T) {
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	hold := make(chan struct{})
	var release sync.Once
	unhold := func() { release.Do(func() { close(hold) }) }
	t.Cleanup(unhold) // before the receiver closes: it waits for its handlers
	r.answer = func(_ int, p Payload, _ http.ResponseWriter, _ *http.Request) int {
		if p.User == userID(1) {
			<-hold
		}
		return http.StatusOK
	}
	s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.MaxCalls = 2; c.MaxPendingUsers = 2 })
	b1 := submit(t, s, note(1, 1))
	b2 := submit(t, s, note(2, 2))
	eventually(t, "user 2's call settles", nil, func() bool { return s.heldCalls() == 1 })
	if s.Settled(b2) || s.Settled(b1) {
		t.Fatal("batch 2 settled while batch 1's call is in flight")
	}
	b3 := submit(t, s, note(3, 3)) // room for one more
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Submit(cancelled, []Notification{note(4, 4)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit with %d calls held: %v, want it to wait and give up", int(s.heldCalls()), err)
	}
	unhold()
	waitSettled(t, s, b3)
	b5 := submit(t, s, note(4, 4))
	waitSettled(t, s, b5)
}

// TestTimeoutIsRetried lets the first request hang: the sender gives up after
// Timeout (real time, long enough for a loaded machine to answer the retry)
// and tries again.
func TestTimeoutIsRetried(t *testing.T) {
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	r.answer = func(n int, _ Payload, _ http.ResponseWriter, req *http.Request) int {
		if n == 0 {
			<-req.Context().Done() // the sender gives up
		}
		return http.StatusOK
	}
	s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.Timeout = time.Second })
	b := submit(t, s, note(1, 1))
	waitSettled(t, s, b)
	if v := value(s.m.failures.WithLabelValues(classTimeout)); v != 1 {
		t.Fatalf("timeouts %v, want 1", v)
	}
}

func TestCloseSendsWhatIsCollapsing(t *testing.T) {
	clock := newFakeClock(false) // the window never ends by itself
	r := newReceiver(t, clock)
	s, _ := testSender(t, r.srv.URL, clock, nil)
	submit(t, s, note(1, 1), note(1, 2), note(2, 3))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reqs := r.requests(); len(reqs) != 2 {
		t.Fatalf("Close sent %d calls, want the 2 collapsing", len(reqs))
	}
}

func TestCloseReportsUnsettledCalls(t *testing.T) {
	clock := newFakeClock(false)
	r := newReceiver(t, clock)
	r.answer = func(int, Payload, http.ResponseWriter, *http.Request) int { return http.StatusInternalServerError }
	s, _ := testSender(t, r.srv.URL, clock, nil)
	submit(t, s, note(1, 1), note(2, 2))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Close(ctx) // flushes: both calls fail and wait on the stopped clock
	if err == nil || !strings.Contains(err.Error(), "closed with 2 calls unsettled") {
		t.Fatalf("Close: %v", err)
	}
	if _, err := s.Submit(context.Background(), []Notification{note(3, 3)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
}

func TestCloseEndsASubmitWaitingForRoom(t *testing.T) {
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	r.answer = func(int, Payload, http.ResponseWriter, *http.Request) int { <-hold; return http.StatusOK }
	s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.MaxCalls = 1; c.MaxPendingUsers = 1 })
	submit(t, s, note(1, 1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang guard
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, []Notification{note(2, 2)})
		done <- err
	}()
	eventually(t, "user 1's call is sent", nil, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.arrived == 1 })
	eventually(t, "the second Submit waits for room", nil, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.last == 2 })
	closed, stop := context.WithCancel(context.Background())
	stop()
	_ = s.Close(closed)
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting Submit after Close: %v, want ErrClosed", err)
	}
}
