package webhook

import (
	"context"
	"testing"
)

// BenchmarkSubmitCollapsing admits notifications for 100 users whose calls
// are collapsing (the window never ends): the cost of merging one.
func BenchmarkSubmitCollapsing(b *testing.B) {
	clock := newFakeClock(false)
	r := newReceiver(b, clock)
	s, _ := testSender(b, r.srv.URL, clock, func(c *Config) { c.MaxPerUser = 1_000_000 })
	ns := make([]Notification, 100)
	for u := range ns {
		ns[u] = note(u, u)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Submit(ctx, ns[i%100:i%100+1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendOneCall sends one call per notification (MaxPerUser 1) to
// a local receiver and waits for it: the whole path, signing included.
func BenchmarkSendOneCall(b *testing.B) {
	clock := newFakeClock(true)
	r := newReceiver(b, clock)
	s, _ := testSender(b, r.srv.URL, clock, func(c *Config) { c.MaxPerUser = 1 })
	n := note(1, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		waitSettled(b, s, submit(b, s, n))
	}
	b.StopTimer()
	if got := len(r.requests()); got != b.N {
		b.Fatalf("%d requests for %d notifications", got, b.N)
	}
}
