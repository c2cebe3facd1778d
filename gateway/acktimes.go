package gateway

import (
	"sync"
	"time"

	"github.com/mpim/mpim/internal/streamid"
)

// validInboxID reports whether s is a stream entry id "<ms>-<seq>".
func validInboxID(s string) bool {
	_, err := streamid.Parse(s)
	return err == nil
}

// ackTimes remembers when recent pushes were written, in push order, so an
// acknowledgement (which covers every push up to its id) can observe their
// latency. It keeps at most maxAckTimes; older ones are forgotten.
type ackTimes struct {
	mu      sync.Mutex
	pending []ackTime
}

type ackTime struct {
	id   streamid.ID
	sent time.Time
}

const maxAckTimes = 4096

func (a *ackTimes) sent(inboxID string, t time.Time) {
	id, err := streamid.Parse(inboxID)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) >= maxAckTimes {
		a.pending = append(a.pending[:0], a.pending[1:]...)
	}
	a.pending = append(a.pending, ackTime{id: id, sent: t})
}

// reset forgets every push (the attachment ended).
func (a *ackTimes) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = nil
}

// covers reports whether an acknowledgement of inboxID covers a push
// written and not acknowledged yet.
func (a *ackTimes) covers(inboxID string) bool {
	id, err := streamid.Parse(inboxID)
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending) > 0 && !a.pending[0].id.After(id)
}

func (a *ackTimes) acked(inboxID string, observe func(time.Time)) {
	id, err := streamid.Parse(inboxID)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(a.pending) && !a.pending[n].id.After(id) {
		observe(a.pending[n].sent)
		n++
	}
	a.pending = append(a.pending[:0], a.pending[n:]...)
}
