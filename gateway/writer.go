package gateway

import (
	"context"

	"github.com/coder/websocket"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// writer writes queued frames, in batches taken from the queue, until the
// session ends or a close is queued. The queue's memory follows its use:
// an idle session holds no buffer.
func (s *session) writer() {
	defer close(s.writerDone)
	var batch []outFrame
	w := frameWriter{}
	for {
		select {
		case <-s.out.wake:
		case <-s.ctx.Done():
			return
		}
		for {
			batch = s.out.take(batch)
			if len(batch) == 0 {
				break
			}
			// Several frames: one system call for all of them.
			corked := s.cork != nil && len(batch) > 1
			if corked {
				s.cork.Cork()
			}
			corkedBytes := 0
			for i, f := range batch {
				if f.close != nil {
					if corked {
						_ = s.uncork() // the close handshake fails if this did
					}
					s.conn.Close(f.close.code, f.close.reason)
					return
				}
				err := s.write(&w, f)
				if err == nil && corked && i == len(batch)-1 {
					err = s.uncork()
				}
				batch[i] = outFrame{}
				written := f.size
				if corked { // the bytes wait in the cork's buffer until uncork sent them
					corkedBytes, written = corkedBytes+f.size, 0
					if i == len(batch)-1 {
						written = corkedBytes
					}
				}
				s.out.wrote(written)
				if err != nil {
					s.mu.Lock()
					if s.reason == "" {
						s.reason = reasonWriteError
					}
					s.out.close()
					s.mu.Unlock()
					s.conn.CloseNow()
					return
				}
				if s.ctx.Err() != nil {
					return
				}
			}
			if cap(batch) > 256 {
				batch = nil // let a burst's buffer go
			}
			w.release()
		}
	}
}

// uncork sends the frames gathered since cork, under the write timeout as
// any write.
func (s *session) uncork() error {
	s.writing.Store(true)
	if s.ctx.Err() != nil {
		s.writing.Store(false)
		return nil //nolint:nilerr // the writer stops at its next check
	}
	s.writeDog.Reset(s.srv.cfg.WriteTimeout)
	err := s.cork.Uncork()
	s.writeDog.Stop()
	s.writing.Store(false)
	return err
}

// frameWriter is the writer's reusable memory: the encoding buffer, the
// Push of a binary delivery and the Event a JSON delivery decodes into (the
// WebSocket library copies what it writes, so all are free again once a
// write returned).
type frameWriter struct {
	buf  []byte
	push mpimv1.Push
	pf   mpimv1.ServerFrame_Push
	sf   mpimv1.ServerFrame
	ev   mpimv1.Event
}

// release lets a burst's big buffer go.
func (w *frameWriter) release() {
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	}
}

// write encodes and writes one frame.
func (s *session) write(w *frameWriter, f outFrame) error {
	typ := "push"
	var data []byte
	var err error
	if f.push != nil {
		data, err = s.encodePush(w, f.push)
	} else {
		typ = serverFrameType(f.frame)
		data, err = s.enc.AppendServer(w.buf[:0], f.frame)
	}
	if err != nil {
		s.log.Error("gateway: encoding a frame", "type", typ, "err", err)
		return nil // drop it; the connection is fine
	}
	w.buf = data
	mt := websocket.MessageText
	if s.enc.Binary() {
		mt = websocket.MessageBinary
	}
	// writing before the check of s.ctx, which end cancels before it looks
	// at writing: either this write sees the end, or end aborts it.
	s.writing.Store(true)
	if s.ctx.Err() != nil {
		s.writing.Store(false)
		return nil // the writer stops at its next check
	}
	s.writeDog.Reset(s.srv.cfg.WriteTimeout)
	err = s.conn.Write(context.Background(), mt, data)
	s.writeDog.Stop()
	s.writing.Store(false)
	if err != nil {
		return err
	}
	s.srv.m.frameOut(typ)
	return nil
}

// encodePush encodes the Push of a delivery into w.buf: the envelope bytes
// for binary clients; for JSON clients the decoded event, encoded once per
// event for all the gateway's sessions (eventJSONCache). An envelope that
// does not decode is sent as bytes, in JSON too.
func (s *session) encodePush(w *frameWriter, d *Delivery) ([]byte, error) {
	if !s.enc.Binary() {
		data, ok, err := s.srv.eventJSON.appendPush(w.buf[:0], d, &w.ev)
		if ok {
			return data, err
		}
		s.log.Error("gateway: undecodable envelope in a delivery", "inbox_id", d.InboxID)
	}
	w.push = mpimv1.Push{InboxId: d.InboxID, Type: d.Type, Resend: d.Resend, Envelope: d.Envelope}
	w.pf.Push = &w.push
	w.sf.Frame = &w.pf
	data, err := s.enc.AppendServer(w.buf[:0], &w.sf)
	w.push = mpimv1.Push{} // drop the references
	return data, err
}

func serverFrameType(f *mpimv1.ServerFrame) string {
	switch f.GetFrame().(type) {
	case *mpimv1.ServerFrame_Response:
		return "response"
	case *mpimv1.ServerFrame_Push:
		return "push"
	case *mpimv1.ServerFrame_Signal:
		return "signal"
	case *mpimv1.ServerFrame_SyncRequired:
		return "sync_required"
	case *mpimv1.ServerFrame_Goaway:
		return "goaway"
	}
	return "unknown"
}

// enqueueLocked queues f (see outbox.push); the caller holds s.mu. A
// client that lets the queue overflow does not read fast enough and is
// disconnected.
func (s *session) enqueueLocked(f outFrame, hold bool) bool {
	ok, why := s.out.push(f, hold)
	if why != "" {
		s.overflowLocked(why)
	}
	return ok
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

// waitOutbox returns once the session's queue is within Config.OutboxBytes
// (at once if it is) or the session is closing. A queue that stays over
// the budget for Config.OutboxDrainTimeout closes the connection (1008);
// the reader's next read then fails.
func (s *session) waitOutbox() {
	if why := s.out.waitUnder(s.writerDone); why != "" {
		s.fail(reasonSlow, websocket.StatusPolicyViolation, why)
	}
}
