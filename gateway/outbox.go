package gateway

import (
	"strconv"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"
)

// A session's send queue (its outbox) and the queue's byte budget; the
// writer that drains it is in writer.go.
//
// Every queued frame carries an estimate of the memory it holds (its
// protobuf size, or a delivery's envelope, plus frameOverhead). The
// session counts the bytes queued and not written yet, held deliveries
// included:
//
//   - over Config.OutboxBytes, the reader stops reading requests until the
//     writer brings the queue back under it (waitOutbox), so a client that
//     asks for more than it reads stops being served instead of growing
//     the gateway;
//   - a reader that waits longer than Config.OutboxDrainTimeout, or a frame
//     that would take the queue over Config.OutboxHardBytes (deliveries are
//     queued whether the reader waits or not), closes the connection with
//     1008 and a reason.
//
// queuedBytes and heldBytes are guarded by the session's mu.

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

// overBudgetLocked reports whether queuing size more bytes would take the
// session over its hard bound. An empty queue takes any one frame, so a
// single large answer is never refused.
func (s *session) overBudgetLocked(size int) bool {
	total := s.queuedBytes + s.heldBytes
	return total > 0 && total+size > s.srv.cfg.OutboxHardBytes
}

// queuedLocked counts size bytes queued for the writer.
func (s *session) queuedLocked(size int) {
	s.queuedBytes += size
	s.srv.m.outboxBytes.Add(float64(size))
	s.srv.m.outboxPeak(s.queuedBytes)
}

// writtenLocked counts size bytes the writer took off the queue, and wakes
// a reader waiting for the queue to drain.
func (s *session) writtenLocked(size int) {
	s.queuedBytes -= size
	s.srv.m.outboxBytes.Sub(float64(size))
	if s.queuedBytes <= s.srv.cfg.OutboxBytes {
		select {
		case s.drained <- struct{}{}:
		default:
		}
	}
}

// releaseOutboxLocked forgets every queued frame once the writer stopped:
// nothing of the session's queue stays reachable after it ends.
func (s *session) releaseOutboxLocked() {
	s.srv.m.outboxBytes.Sub(float64(s.queuedBytes))
	s.queuedBytes, s.heldBytes = 0, 0
	s.queue, s.held = nil, nil
}

// waitOutbox returns once the session's queue is within Config.OutboxBytes
// (at once if it is) or the session is closing. A queue that stays over
// the budget for Config.OutboxDrainTimeout closes the connection (1008);
// the reader's next read then fails.
func (s *session) waitOutbox() {
	s.mu.Lock()
	over := s.queuedBytes > s.srv.cfg.OutboxBytes && !s.closing
	s.mu.Unlock()
	if !over {
		return
	}
	s.srv.m.readPauses.Inc()
	t := time.NewTimer(s.srv.cfg.OutboxDrainTimeout)
	defer t.Stop()
	for {
		select {
		case <-s.drained:
		case <-s.writerDone:
			return
		case <-t.C:
			s.fail(reasonSlow, websocket.StatusPolicyViolation, "send queue over "+strconv.Itoa(s.srv.cfg.OutboxBytes)+
				" bytes for "+s.srv.cfg.OutboxDrainTimeout.String()+": the client does not read its answers")
			return
		}
		s.mu.Lock()
		over = s.queuedBytes > s.srv.cfg.OutboxBytes && !s.closing
		s.mu.Unlock()
		if !over {
			return
		}
	}
}

// enqueueLocked queues f; the caller holds s.mu. The queue holds at most
// Config.SendQueue frames not yet written; a client that lets it fill does
// not read fast enough and is disconnected. Deliveries (hold) wait aside
// while a login response is being prepared.
func (s *session) enqueueLocked(f outFrame, hold bool) bool {
	if s.closing {
		return false
	}
	limit := s.srv.cfg.SendQueue
	f.size = outFrameBytes(f)
	if f.close == nil && s.overBudgetLocked(f.size) {
		s.overflowLocked("send queue over " + strconv.Itoa(s.srv.cfg.OutboxHardBytes) + " bytes: the client does not read fast enough")
		return false
	}
	if s.holding && hold {
		if len(s.held) >= limit {
			s.overflowLocked("send queue full: the client does not read fast enough")
			return false
		}
		s.held = append(s.held, f)
		s.heldBytes += f.size
		return true
	}
	if s.unwritten >= limit && f.close == nil {
		s.overflowLocked("send queue full: the client does not read fast enough")
		return false
	}
	s.queue = append(s.queue, f)
	s.unwritten++
	s.queuedLocked(f.size)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *session) overflowLocked(msg string) {
	s.srv.m.queueDrops.Inc()
	s.failLocked(reasonSlow, websocket.StatusPolicyViolation, msg)
}

func (s *session) enqueue(f outFrame) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enqueueLocked(f, false)
}
