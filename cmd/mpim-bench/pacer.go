package main

import (
	"context"
	"slices"
	"time"
)

// pacer is the open loop's one clock: it offers the sends of every sender
// at the sender's rate, each sender at its own random phase of the
// interval (so that the offered load is spread over time, not in bursts of
// every sender at once), from one goroutine and one timer instead of a
// sleeping goroutine per sender. The k-th send it offers is slot k mod n's,
// intended at start + phase + (k / n) intervals; a send that is late (the
// pacer fell behind) is offered at once with its intended time unchanged,
// so the latency measured from it includes the delay.
type pacer struct {
	interval time.Duration   // between two sends of one sender
	phases   []time.Duration // each slot's offset in [0, interval), ascending
	senders  []int           // the sender of each slot
	now      func() time.Time
	sleep    func(time.Duration)
}

// newPacer paces senders at perSender sends/s each; phase(n) draws a phase
// in [0, n) nanoseconds.
func newPacer(senders []int, perSender float64, phase func(n int64) int64) *pacer {
	p := &pacer{interval: max(time.Duration(float64(time.Second)/perSender), time.Microsecond), now: time.Now, sleep: time.Sleep}
	type slot struct {
		phase  time.Duration
		sender int
	}
	slots := make([]slot, len(senders))
	for i, s := range senders {
		slots[i] = slot{phase: time.Duration(phase(int64(p.interval))), sender: s}
	}
	slices.SortFunc(slots, func(a, b slot) int { return int(a.phase - b.phase) })
	for _, s := range slots {
		p.phases = append(p.phases, s.phase)
		p.senders = append(p.senders, s.sender)
	}
	return p
}

// run offers sends from start on, in intended-time order, sleeping until
// each is due, until offer returns false or ctx ends.
func (p *pacer) run(ctx context.Context, start time.Time, offer func(sender int, intended time.Time) bool) {
	n := len(p.senders)
	if n == 0 {
		return
	}
	for k := 0; ctx.Err() == nil; k++ {
		i, round := k%n, k/n
		due := start.Add(p.phases[i] + time.Duration(round)*p.interval)
		if d := due.Sub(p.now()); d > 0 {
			p.sleep(d)
		}
		if !offer(p.senders[i], due) {
			return
		}
	}
}

// pace runs the open loop: one pacer offers every sender's sends at
// perSender sends/s, until sending stops. A sender whose connection ended,
// or with openWindow sends unanswered, skips its turn.
func (r *runner) pace(ctx context.Context, targets map[int]target, perSender float64, phase func(n int64) int64) {
	senders := make([]int, 0, len(targets))
	for i := range targets {
		senders = append(senders, i)
	}
	slices.Sort(senders)
	next := make(map[int]int, len(senders)) // each sender's message number
	p := newPacer(senders, perSender, phase)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	p.sleep = func(d time.Duration) { // cut short when sending stops
		t.Reset(d)
		select {
		case <-t.C:
		case <-r.sendingStopped:
		case <-ctx.Done():
		}
	}
	p.run(ctx, time.Unix(0, r.start.Load()), func(i int, intended time.Time) bool {
		cl := r.clients[i]
		select {
		case <-cl.c.Done():
			return !r.stopSending.Load()
		default:
		}
		if cl.inflight.Load() >= openWindow {
			r.unoffered.Add(1)
			return !r.stopSending.Load()
		}
		cl.inflight.Add(1)
		n := next[i]
		next[i]++
		return r.issue(ctx, cl, targets[i], n, intended.UnixNano(), func() { cl.inflight.Add(-1) })
	})
}

// openWindow bounds the sends of one open-loop sender waiting for an
// answer: the offered rate rules, not the answers, up to this.
const openWindow = 10_000
