package main

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// fakeClock is a clock whose sleeps advance it.
type fakeClock struct {
	now    time.Time
	sleeps int
}

func (c *fakeClock) install(p *pacer) {
	p.now = func() time.Time { return c.now }
	p.sleep = func(d time.Duration) { c.now = c.now.Add(d); c.sleeps++ }
}

// The pacer offers perSender sends per second to each sender, spread over
// each interval, never before a send is due, from counts on a fake clock.
func TestPacerOffersTheRate(t *testing.T) {
	const senders, perSender, seconds = 50, 30.0, 10
	ids := make([]int, senders)
	for i := range ids {
		ids[i] = 2 * i // the senders are client indexes, not 0..n-1
	}
	p := newPacer(ids, perSender, rand.New(rand.NewPCG(1, 2)).Int64N)
	start := time.Unix(1000, 0)
	clock := &fakeClock{now: start}
	clock.install(p)
	end := start.Add(seconds * time.Second)
	counts := map[int]int{}
	last := map[int]time.Time{}
	var prev time.Time
	p.run(context.Background(), start, func(s int, intended time.Time) bool {
		if !intended.Before(end) {
			return false
		}
		if clock.now.Before(intended) {
			t.Fatalf("sender %d offered at %s, before its intended time %s", s, clock.now.Sub(start), intended.Sub(start))
		}
		if intended.Before(prev) {
			t.Fatalf("offered out of intended-time order: %s after %s", intended.Sub(start), prev.Sub(start))
		}
		if l, ok := last[s]; ok && intended.Sub(l) != p.interval {
			t.Fatalf("sender %d: %s between two sends, want %s", s, intended.Sub(l), p.interval)
		}
		prev, last[s] = intended, intended
		counts[s]++
		return true
	})
	total := 0
	for _, id := range ids {
		c := counts[id]
		total += c
		if want := perSender * seconds; float64(c) < want-1 || float64(c) > want+1 {
			t.Errorf("sender %d: %d sends in %ds, want %.0f±1", id, c, seconds, want)
		}
	}
	if want := senders * perSender * seconds; float64(total) < want-senders || float64(total) > want+senders {
		t.Errorf("%d sends in all, want %.0f±%d", total, want, senders)
	}
	if len(counts) != senders {
		t.Errorf("%d senders offered, want %d", len(counts), senders)
	}
	if clock.sleeps > total+1 { // the one after the end too
		t.Errorf("%d sleeps for %d sends: more than one timer per send", clock.sleeps, total)
	}
}

// A pacer that falls behind (the offers took longer than the interval)
// offers the late sends at once, keeping their intended times: none is
// dropped and the delay shows in the latency measured from them.
func TestPacerCatchesUpWithoutMovingIntendedTimes(t *testing.T) {
	p := newPacer([]int{0, 1}, 100, func(int64) int64 { return 0 })
	start := time.Unix(1000, 0)
	clock := &fakeClock{now: start}
	clock.install(p)
	var intended []time.Duration
	p.run(context.Background(), start, func(_ int, at time.Time) bool {
		intended = append(intended, at.Sub(start))
		if len(intended) == 2 {
			clock.now = clock.now.Add(55 * time.Millisecond) // a stall
		}
		return len(intended) < 20
	})
	for k, d := range intended {
		if want := time.Duration(k/2) * 10 * time.Millisecond; d != want {
			t.Fatalf("send %d intended at %s, want %s", k, d, want)
		}
	}
	if clock.sleeps != 4 {
		// rounds 0..5 are due by the stall's end (55 ms): no sleep for them;
		// rounds 6..9 sleep once each (their first send).
		t.Errorf("%d sleeps, want 4", clock.sleeps)
	}
}
