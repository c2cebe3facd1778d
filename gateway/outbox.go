package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// outbox is one connection's send queue: the frames queued for the writer
// (writer.go), in order, bounded in frames and in bytes. Every queued frame
// carries an estimate of the memory it holds (its protobuf size, or a
// delivery's envelope, plus frameOverhead); the outbox counts the bytes
// queued and not written yet, held deliveries included:
//
//   - over the byte budget, the session's reader stops reading requests
//     until the writer brings the queue back under it (waitUnder), so a
//     client that asks for more than it reads stops being served instead
//     of growing the gateway;
//   - a reader that waits longer than the drain timeout, a frame that would
//     take the queue over the hard bound, or one frame too many (frames are
//     pushed whether the reader waits or not) is an overflow: the session
//     closes the connection with 1008 and the reason.
//
// While a login's response is prepared, deliveries wait aside (hold) and
// join the queue after it (release). Once closed it takes no more frames;
// the writer still writes what was queued. It is safe for concurrent use;
// callers may hold the session's mu, which is always taken first.
type outbox struct {
	maxFrames int           // frames queued and not written (Config.SendQueue)
	budget    int           // bytes over which the reader waits (Config.OutboxBytes)
	hard      int           // bytes that may never be queued (Config.OutboxHardBytes)
	drainWait time.Duration // how long the reader waits (Config.OutboxDrainTimeout)
	m         outboxMetrics

	wake    chan struct{} // the writer has frames to write (capacity 1)
	drained chan struct{} // the queue went under the budget, or closed (capacity 1)

	mu        sync.Mutex // guards the fields below
	closed    bool       // no more frames are taken
	holding   bool       // deliveries wait in held until release
	held      []outFrame
	queue     []outFrame // frames the writer has not taken yet
	unwritten int        // frames queued and not written yet (queue and the writer's batch)
	// queuedBytes and heldBytes are the estimated bytes of the frames not
	// written yet and of held.
	queuedBytes int
	heldBytes   int
}

// outFrame is one queued frame: a server frame, a delivery (built into a
// Push by the writer), or the instruction to close after what came before.
type outFrame struct {
	frame *mpimv1.ServerFrame
	push  *Delivery
	close *closeFrame
	size  int // estimated bytes (outFrameBytes), set when queued
}

type closeFrame struct {
	code   websocket.StatusCode
	reason string
}

// outboxMetrics are the gateway's metrics an outbox feeds.
type outboxMetrics struct {
	bytes  prometheus.Gauge   // bytes queued over all connections
	pauses prometheus.Counter // reader waits
	peak   func(n int)        // a connection has n bytes queued
}

func newOutbox(cfg *Config, m outboxMetrics) *outbox {
	return &outbox{maxFrames: cfg.SendQueue, budget: cfg.OutboxBytes, hard: cfg.OutboxHardBytes, drainWait: cfg.OutboxDrainTimeout,
		m: m, wake: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

// frameOverhead is what a queued frame costs besides its content (the
// queue entry, the frame's structs).
const frameOverhead = 64

// outFrameBytes estimates the memory f holds while queued.
func outFrameBytes(f outFrame) int {
	switch {
	case f.push != nil:
		return len(f.push.Envelope) + len(f.push.InboxID) + len(f.push.Type) + frameOverhead
	case f.frame != nil:
		return proto.Size(f.frame) + frameOverhead
	}
	return 0
}

// push queues f, or holds it aside if hold and the outbox is holding. It
// reports false with no reason when the outbox is closed, and false with
// the reason of an overflow (the caller closes the connection). A close
// instruction is taken over every bound; an empty queue takes any one
// frame, so a single large answer is never refused.
func (o *outbox) push(f outFrame, hold bool) (ok bool, overflow string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pushLocked(f, hold)
}

func (o *outbox) pushLocked(f outFrame, hold bool) (bool, string) {
	if o.closed {
		return false, ""
	}
	f.size = outFrameBytes(f)
	if total := o.queuedBytes + o.heldBytes; f.close == nil && total > 0 && total+f.size > o.hard {
		return false, "send queue over " + strconv.Itoa(o.hard) + " bytes: the client does not read fast enough"
	}
	const full = "send queue full: the client does not read fast enough"
	if o.holding && hold {
		if len(o.held) >= o.maxFrames {
			return false, full
		}
		o.held = append(o.held, f)
		o.heldBytes += f.size
		return true, ""
	}
	if o.unwritten >= o.maxFrames && f.close == nil {
		return false, full
	}
	o.queue = append(o.queue, f)
	o.unwritten++
	o.queuedBytes += f.size
	o.m.bytes.Add(float64(f.size))
	o.m.peak(o.queuedBytes)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true, ""
}

// hold makes deliveries wait aside until release or dropHeld.
func (o *outbox) hold() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = true
}

// release queues the held deliveries, in order, and stops holding; it
// reports an overflow as push does.
func (o *outbox) release() (overflow string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	held := o.held
	o.holding, o.held, o.heldBytes = false, nil, 0
	for _, f := range held {
		if ok, why := o.pushLocked(f, false); !ok {
			return why
		}
	}
	return ""
}

// dropHeld forgets the held deliveries and stops holding.
func (o *outbox) dropHeld() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding, o.held, o.heldBytes = false, nil, 0
}

// close makes the outbox take no more frames and wakes a reader waiting in
// waitUnder. It reports whether this call closed it.
func (o *outbox) close() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.closed = true
	select {
	case o.drained <- struct{}{}:
	default:
	}
	return true
}

// isClosed reports whether close was called.
func (o *outbox) isClosed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// take returns the queued frames, in order, and leaves buf (emptied) as the
// queue, so the writer and the outbox trade two slices.
func (o *outbox) take(buf []outFrame) []outFrame {
	o.mu.Lock()
	defer o.mu.Unlock()
	batch := o.queue
	o.queue = buf[:0]
	return batch
}

// wrote counts one frame the writer took off the queue and size bytes it
// sent (a corked frame's bytes count once the cork is sent), and wakes a
// reader waiting for the queue to drain.
func (o *outbox) wrote(size int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.unwritten--
	o.queuedBytes -= size
	o.m.bytes.Sub(float64(size))
	if o.queuedBytes <= o.budget {
		select {
		case o.drained <- struct{}{}:
		default:
		}
	}
}

// over reports whether the queue holds more than the budget and the
// outbox is open.
func (o *outbox) over() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.queuedBytes > o.budget && !o.closed
}

// waitUnder returns once the queue is within the budget (at once if it
// is), the outbox is closed or stop is closed. It reports an overflow when
// the queue stays over the budget for the drain timeout.
func (o *outbox) waitUnder(stop <-chan struct{}) (overflow string) {
	if !o.over() {
		return ""
	}
	o.m.pauses.Inc()
	t := time.NewTimer(o.drainWait)
	defer t.Stop()
	for {
		select {
		case <-o.drained:
		case <-stop:
			return ""
		case <-t.C:
			return "send queue over " + strconv.Itoa(o.budget) + " bytes for " + o.drainWait.String() + ": the client does not read its answers"
		}
		if !o.over() {
			return ""
		}
	}
}

// discard forgets every queued and held frame once the writer stopped:
// nothing of the queue stays reachable after the session ends.
func (o *outbox) discard() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m.bytes.Sub(float64(o.queuedBytes))
	o.queuedBytes, o.heldBytes = 0, 0
	o.queue, o.held = nil, nil
}
