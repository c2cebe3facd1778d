package webhook

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOneSignedCallCarriesTheFields(t *testing.T) {
	clock := newFakeClock(true)
	r := newReceiver(t, clock)
	s, reg := testSender(t, r.srv.URL, clock, func(c *Config) { c.Preview = PreviewText; c.MaxPreviewBytes = 12 })
	n := note(1, 7)
	n.Devices = append(n.Devices, Device{ID: "tablet", Platform: PlatformFCM, Token: "fcm-token"})
	b := submit(t, s, n)
	waitSettled(t, s, b)
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d calls, want 1", len(reqs))
	}
	got := reqs[0]
	want := Payload{User: n.User, Devices: n.Devices, Conversation: n.Conversation, Sender: n.Sender,
		Preview: "Alice: messa", EventID: n.EventID, Seq: 7, UnreadBadge: new(int64(7)), Count: 1}
	if got.key != n.EventID {
		t.Errorf("Idempotency-Key %q, want the event id %q", got.key, n.EventID)
	}
	if !slices.Equal(got.p.Devices, want.Devices) {
		t.Errorf("devices %+v, want %+v", got.p.Devices, want.Devices)
	}
	if !reflect.DeepEqual(got.p, want) {
		t.Errorf("payload %+v, want %+v", got.p, want)
	}
	if !s.Settled(b) {
		t.Error("batch not settled after Wait")
	}
	if v := value(s.m.calls); v != 1 {
		t.Errorf("requests metric %v, want 1", v)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 6 {
		t.Errorf("registry gathers %d metric families, want 6: %v", len(mfs), err)
	}
}

func TestPreviewModes(t *testing.T) {
	n := note(1, 1)
	n.Text = "héllo wörld"
	for _, tc := range []struct {
		mode PreviewMode
		max  int
		want string
	}{
		{PreviewNone, 100, ""},
		{PreviewSender, 100, "Alice"},
		{PreviewText, 100, "Alice: héllo wörld"},
		{PreviewText, 9, "Alice: h"}, // not into the middle of é
	} {
		if got := n.payload(tc.mode, tc.max).Preview; got != tc.want {
			t.Errorf("%s cut to %d: %q, want %q", tc.mode, tc.max, got, tc.want)
		}
	}
}

func TestSignatureVerifies(t *testing.T) {
	body := []byte(`{"user":"u/x"}`)
	sig := Sign(testSecret, 1700000000, body)
	if !strings.HasPrefix(sig, "v1=") || !Verify(testSecret, 1700000000, body, sig) {
		t.Fatalf("signature %q does not verify", sig)
	}
	for name, ok := range map[string]bool{
		"other body":      Verify(testSecret, 1700000000, []byte(`{"user":"u/y"}`), sig),
		"other timestamp": Verify(testSecret, 1700000001, body, sig),
		"other secret":    Verify([]byte("another secret of 16+"), 1700000000, body, sig),
	} {
		if ok {
			t.Errorf("%s verifies", name)
		}
	}
}

func TestBurstToOneUserCollapses(t *testing.T) {
	t.Run("into one call within the window", func(t *testing.T) {
		clock := newFakeClock(false)
		r := newReceiver(t, clock)
		s, _ := testSender(t, r.srv.URL, clock, nil)
		var last Batch
		for i := 1; i <= 50; i++ {
			last = submit(t, s, note(1, i))
		}
		if s.Settled(1) {
			t.Fatal("batch 1 settled before its window ended")
		}
		clock.Advance(DefaultWindow)
		waitSettled(t, s, last)
		reqs := r.requests()
		if len(reqs) != 1 || reqs[0].p.Count != 50 || reqs[0].key != note(1, 50).EventID {
			t.Fatalf("calls %+v, want one of count 50 keyed by the last event", reqs)
		}
		if v := value(s.m.collapsed); v != 49 {
			t.Errorf("collapsed metric %v, want 49", v)
		}
	})
	t.Run("into a few calls early when a call is full", func(t *testing.T) {
		clock := newFakeClock(false)
		r := newReceiver(t, clock)
		s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.MaxPerUser = 20 })
		var last Batch
		for i := 1; i <= 50; i++ {
			last = submit(t, s, note(1, i))
		}
		clock.Advance(DefaultWindow)
		waitSettled(t, s, last)
		reqs := r.requests()
		sum := 0
		for i, q := range reqs {
			sum += q.p.Count
			if q.p.Count > 30 || (i > 0 && q.p.Seq <= reqs[i-1].p.Seq) {
				t.Errorf("call %d: count %d, seq %d after %d", i, q.p.Count, q.p.Seq, reqs[max(i-1, 0)].p.Seq)
			}
		}
		if sum != 50 || len(reqs) < 2 || len(reqs) > 3 || reqs[len(reqs)-1].p.Seq != 50 {
			t.Fatalf("%d calls with counts adding to %d, want 2..3 adding to 50, the last at seq 50", len(reqs), sum)
		}
	})
	t.Run("a new user beyond the pending bound sends the oldest early", func(t *testing.T) {
		clock := newFakeClock(false)
		r := newReceiver(t, clock)
		got := make(chan Payload, 3)
		r.answer = func(_ int, p Payload, _ http.ResponseWriter, _ *http.Request) int { got <- p; return http.StatusOK }
		s, _ := testSender(t, r.srv.URL, clock, func(c *Config) { c.MaxPendingUsers = 2 })
		b := submit(t, s, note(1, 1), note(2, 2))
		submit(t, s, note(3, 3))
		select {
		case p := <-got:
			if p.User != userID(1) {
				t.Fatalf("early call to %s, want the oldest pending, %s", p.User, userID(1))
			}
		case <-time.After(time.Minute):
			t.Fatal("no call went early with the pending bound reached")
		}
		if s.Settled(b) {
			t.Fatalf("batch %d settled with user 2 still collapsing", b)
		}
	})
}

// TestUnknownBadgeIsLeftOut: a notification without a badge makes a body
// without unreadBadge (a relay then leaves the icon as it is), while a
// known badge of 0 is sent as 0 (the icon is cleared).
func TestUnknownBadgeIsLeftOut(t *testing.T) {
	n := note(1, 1)
	n.UnreadBadge = nil
	p := n.payload(PreviewSender, 100)
	if body := p.marshal(); strings.Contains(string(body), "unreadBadge") {
		t.Errorf("body without a badge: %s", body)
	}
	n.UnreadBadge = new(int64(0))
	p = n.payload(PreviewSender, 100)
	if body := p.marshal(); !strings.Contains(string(body), `"unreadBadge":0`) {
		t.Errorf("body with badge 0: %s", body)
	}
	*n.UnreadBadge = 5
	if *p.UnreadBadge != 0 {
		t.Error("the payload shares its badge with the notification")
	}
}
