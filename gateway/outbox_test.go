package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testOutbox returns an outbox of at most frames frames, a budget of
// budget bytes and a hard bound of hard bytes, with unregistered metrics.
func testOutbox(frames, budget, hard int, drain time.Duration) (*outbox, *int) {
	peak := new(int)
	cfg := Config{SendQueue: frames, OutboxBytes: budget, OutboxHardBytes: hard, OutboxDrainTimeout: drain}
	return newOutbox(&cfg, outboxMetrics{bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "b"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{Name: "p"}), peak: func(n int) { *peak = max(*peak, n) }}), peak
}

// pushOf is a delivery of n envelope bytes.
func pushOf(id string, n int) outFrame {
	return outFrame{push: &Delivery{InboxID: id, Type: "T", Envelope: make([]byte, n)}}
}

func ids(fs []outFrame) string {
	var out []string
	for _, f := range fs {
		switch {
		case f.push != nil:
			out = append(out, f.push.InboxID)
		case f.close != nil:
			out = append(out, "close")
		default:
			out = append(out, "frame")
		}
	}
	return strings.Join(out, " ")
}

func TestOutboxKeepsOrderAndHoldsDeliveriesUntilReleased(t *testing.T) {
	o, _ := testOutbox(8, 1<<20, 2<<20, time.Second)
	o.push(pushOf("1-0", 1), true)
	o.hold()
	o.push(pushOf("2-0", 1), true) // held
	o.push(outFrame{frame: &mpimv1.ServerFrame{}}, false)
	if got := ids(o.take(nil)); got != "1-0 frame" {
		t.Fatalf("took %q before the release, want the held delivery behind the response", got)
	}
	if why := o.release(); why != "" {
		t.Fatal(why)
	}
	o.push(pushOf("3-0", 1), true)
	if got := ids(o.take(nil)); got != "2-0 3-0" {
		t.Fatalf("took %q after the release", got)
	}
	o.hold()
	o.push(pushOf("4-0", 1), true)
	o.dropHeld()
	if got := ids(o.take(nil)); got != "" {
		t.Fatalf("took %q after the held deliveries were dropped", got)
	}
}

func TestOutboxBoundsFramesAndBytes(t *testing.T) {
	o, peak := testOutbox(2, 1000, 4000, time.Second)
	if ok, why := o.push(pushOf("1-0", 10000), false); !ok || why != "" {
		t.Fatalf("an empty queue refused one large frame: %s", why)
	}
	if ok, why := o.push(pushOf("2-0", 1), false); ok || !strings.Contains(why, "over 4000 bytes") {
		t.Fatalf("a frame over the hard bound: %v %q", ok, why)
	}
	if *peak < 10000 {
		t.Fatalf("peak %d, want the large frame's bytes", *peak)
	}
	batch := o.take(nil)
	o.wrote(batch[0].size)
	o.push(pushOf("3-0", 1), false)
	o.push(pushOf("4-0", 1), false)
	if ok, why := o.push(pushOf("5-0", 1), false); ok || !strings.Contains(why, "send queue full") {
		t.Fatalf("a third frame of two: %v %q", ok, why)
	}
	if ok, _ := o.push(outFrame{close: &closeFrame{}}, false); !ok {
		t.Fatal("a full queue refused the close instruction")
	}
	o.close()
	if ok, why := o.push(pushOf("6-0", 1), false); ok || why != "" {
		t.Fatalf("a closed outbox: %v %q, want a silent refusal", ok, why)
	}
	if got := ids(o.take(nil)); got != "3-0 4-0 close" {
		t.Fatalf("took %q after closing, want what was queued before", got)
	}
}

func TestOutboxReaderWaitsUntilDrained(t *testing.T) {
	o, _ := testOutbox(8, 1000, 1<<20, 10*time.Second)
	if why := o.waitUnder(nil); why != "" {
		t.Fatalf("an empty queue: %q", why)
	}
	o.push(pushOf("1-0", 2000), false)
	done := make(chan string)
	go func() { done <- o.waitUnder(nil) }()
	// The reader pauses (it counts the pause before it waits) and stays
	// paused until the writer drains the queue.
	testsvc.Eventually(t, time.Minute, "the reader's pause", func() bool { return metricValue(t, o.m.pauses) == 1 })
	select {
	case why := <-done:
		t.Fatalf("returned over the budget: %q", why)
	default:
	}
	f := o.take(nil)[0]
	o.wrote(f.size)
	if why := <-done; why != "" {
		t.Fatalf("after the drain: %q", why)
	}
}

func TestOutboxReaderWaitTimesOut(t *testing.T) {
	o, _ := testOutbox(8, 1000, 1<<20, 20*time.Millisecond)
	o.push(pushOf("1-0", 2000), false)
	if why := o.waitUnder(nil); !strings.Contains(why, "over 1000 bytes for 20ms") {
		t.Fatalf("a queue that stays over the budget: %q", why)
	}
	o2, _ := testOutbox(8, 1000, 1<<20, 10*time.Second)
	o2.push(pushOf("1-0", 2000), false)
	go o2.close()
	if why := o2.waitUnder(nil); why != "" {
		t.Fatalf("closing the outbox: %q, want the wait to end", why)
	}
}

// metricValue reads a counter or a gauge.
func metricValue(tb testing.TB, c prometheus.Metric) float64 {
	tb.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		tb.Fatal(err)
	}
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}
