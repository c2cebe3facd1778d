package main

import (
	"bytes"
	"testing"
	"time"
)

func TestTimelineRecordsPerInterval(t *testing.T) {
	tl := newTimeline(500*time.Millisecond, 2*time.Second) // 4 intervals
	// Interval 0: 1 ms acks; interval 1: nothing; interval 2: 10 ms acks
	// and 20 ms deliveries; interval 3: one delivery.
	for range 100 {
		tl.record(seriesAck, 100*time.Millisecond, 1000)
		tl.record(seriesAck, 1200*time.Millisecond, 10_000)
		tl.record(seriesDelivery, 1499*time.Millisecond, 20_000)
	}
	tl.record(seriesDelivery, 1999*time.Millisecond, 5000)
	tl.record(seriesAck, 2*time.Second, 1000)     // after the last interval
	tl.record(seriesAck, -time.Millisecond, 1000) // before the start
	got := tl.report()
	if got.IntervalSeconds != 0.5 || got.Dropped != 2 {
		t.Fatalf("interval %g, dropped %d; want 0.5 and 2", got.IntervalSeconds, got.Dropped)
	}
	if len(got.Points) != 3 {
		t.Fatalf("%d points, want 3 (the empty interval is left out): %+v", len(got.Points), got.Points)
	}
	near := func(v, want float64) bool { return v >= want*0.98 && v <= want*1.02 }
	p0, p2, p3 := got.Points[0], got.Points[1], got.Points[2]
	if p0.At != 0 || p0.Ack.Count != 100 || !near(p0.Ack.P50, 1) || !near(p0.Ack.P999, 1) || p0.Delivery.Count != 0 {
		t.Errorf("interval 0 = %+v", p0)
	}
	if p2.At != 1 || p2.Ack.Count != 100 || !near(p2.Ack.P99, 10) || p2.Delivery.Count != 100 || !near(p2.Delivery.P50, 20) {
		t.Errorf("interval 2 = %+v", p2)
	}
	if p3.At != 1.5 || p3.Ack.Count != 0 || p3.Delivery.Count != 1 || !near(p3.Delivery.Max, 5) {
		t.Errorf("interval 3 = %+v", p3)
	}
}

func TestTimelineIsBounded(t *testing.T) {
	tl := newTimeline(10*time.Millisecond, 24*time.Hour)
	if tl.n != maxIntervals {
		t.Fatalf("%d intervals, want the cap %d", tl.n, maxIntervals)
	}
	if tl := newTimeline(time.Second, 0); tl.n != 1 {
		t.Fatalf("an empty span has %d intervals, want 1", tl.n)
	}
}

// The runner records every latency sample into its overall histogram and
// into the timeline, by the time since the measured window started.
func TestRunnerRecordFeedsTheTimeline(t *testing.T) {
	r := newRunner(&Config{TextBytes: 1, PlotInterval: time.Second, Duration: 10 * time.Second}, &bytes.Buffer{})
	from := time.Now().UnixNano()
	r.from.Store(from)
	r.record(seriesAck, from+int64(500*time.Millisecond), int64(2*time.Millisecond))
	r.record(seriesAck, from+int64(3500*time.Millisecond), int64(4*time.Millisecond))
	r.record(seriesDelivery, from+int64(3600*time.Millisecond), int64(8*time.Millisecond))
	if r.ackHist.TotalCount() != 2 || r.delHist.TotalCount() != 1 {
		t.Fatalf("histograms hold %d acks and %d deliveries, want 2 and 1", r.ackHist.TotalCount(), r.delHist.TotalCount())
	}
	tl := r.timeline.report()
	if len(tl.Points) != 2 || tl.Points[0].At != 0 || tl.Points[1].At != 3 {
		t.Fatalf("timeline points = %+v, want intervals 0 and 3", tl.Points)
	}
	if tl.Points[1].Ack.Count != 1 || tl.Points[1].Delivery.Count != 1 || tl.Points[0].Delivery.Count != 0 {
		t.Fatalf("timeline points = %+v", tl.Points)
	}
}
