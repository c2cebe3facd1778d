package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The timeline: besides the run's overall histograms, every latency sample
// is also recorded into a histogram of its interval (by when the answer or
// delivery arrived, counted from the start of the measured window), so that
// the report can show how the percentiles moved during the run (the JSON's
// timeline and the PNG plot).

// series names a latency the timeline records.
type series int

const (
	seriesAck      series = iota // send (intended) -> ack
	seriesDelivery               // send (intended) -> delivery to another device
	numSeries
)

// maxIntervals bounds the timeline's memory: samples later than this many
// intervals after the start are counted as dropped.
const maxIntervals = 3600

// timeline holds per-interval HDR histograms of microseconds. Histograms are
// created on the first sample of their interval. It is safe for concurrent
// use.
type timeline struct {
	interval time.Duration
	n        int // intervals kept

	mu      sync.Mutex
	hists   [numSeries][]*hdrhistogram.Histogram
	dropped int64
}

// newTimeline returns a timeline of intervals of d (1s if d is not
// positive) covering span (at most maxIntervals intervals).
func newTimeline(d, span time.Duration) *timeline {
	if d <= 0 {
		d = time.Second
	}
	n := int(min((span+d-1)/d, maxIntervals))
	t := &timeline{interval: d, n: max(n, 1)}
	for s := range t.hists {
		t.hists[s] = make([]*hdrhistogram.Histogram, t.n)
	}
	return t
}

// record adds a sample of us microseconds to series s, in the interval of
// since (the time elapsed from the start of the measured window when the
// sample was taken). Samples before the start or after the last interval
// are dropped.
func (t *timeline) record(s series, since time.Duration, us int64) {
	i := int64(since / t.interval)
	t.mu.Lock()
	defer t.mu.Unlock()
	if since < 0 || i >= int64(t.n) {
		t.dropped++
		return
	}
	h := t.hists[s][i]
	if h == nil {
		// 2 significant digits: 1% resolution is plenty for a plot and
		// keeps a histogram at ~20 KiB.
		h = hdrhistogram.New(1, 120_000_000, 2)
		t.hists[s][i] = h
	}
	_ = h.RecordValue(min(max(us, 1), h.HighestTrackableValue())) // in range by the clamp, so it cannot fail
}

// IntervalLatency is one interval of the timeline. At is the interval's
// start in seconds from the start of the measured window.
type IntervalLatency struct {
	At       float64 `json:"t_s"`
	Ack      Latency `json:"send_ack"`
	Delivery Latency `json:"send_delivery"`
}

// Timeline is the report's form of a timeline: only intervals with
// samples, in time order.
type Timeline struct {
	IntervalSeconds float64           `json:"interval_s"`
	Points          []IntervalLatency `json:"points"`
	Dropped         int64             `json:"dropped_samples,omitempty"`
}

// report summarises every interval that has a sample.
func (t *timeline) report() Timeline {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := Timeline{IntervalSeconds: t.interval.Seconds(), Dropped: t.dropped, Points: []IntervalLatency{}}
	for i := 0; i < t.n; i++ {
		a, d := t.hists[seriesAck][i], t.hists[seriesDelivery][i]
		if a == nil && d == nil {
			continue
		}
		p := IntervalLatency{At: (time.Duration(i) * t.interval).Seconds()}
		if a != nil {
			p.Ack = latencyOf(a)
		}
		if d != nil {
			p.Delivery = latencyOf(d)
		}
		out.Points = append(out.Points, p)
	}
	return out
}
