package gateway

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// validInboxID reports whether s is a stream entry id "<ms>-<seq>".
func validInboxID(s string) bool {
	_, ok := parseStreamID(s)
	return ok
}

// ackTimes remembers when recent pushes were written, in push order, so an
// acknowledgement (which covers every push up to its id) can observe their
// latency. It keeps at most maxAckTimes; older ones are forgotten.
type ackTimes struct {
	mu      sync.Mutex
	pending []ackTime
}

type ackTime struct {
	id   streamID
	sent time.Time
}

const maxAckTimes = 4096

func (a *ackTimes) sent(inboxID string, t time.Time) {
	id, ok := parseStreamID(inboxID)
	if !ok {
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
	id, ok := parseStreamID(inboxID)
	if !ok {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending) > 0 && !id.less(a.pending[0].id)
}

func (a *ackTimes) acked(inboxID string, observe func(time.Time)) {
	id, ok := parseStreamID(inboxID)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for n < len(a.pending) && !id.less(a.pending[n].id) {
		observe(a.pending[n].sent)
		n++
	}
	a.pending = append(a.pending[:0], a.pending[n:]...)
}

// streamID is a parsed Redis stream entry id.
type streamID struct{ ms, seq uint64 }

func (a streamID) less(b streamID) bool { return a.ms < b.ms || a.ms == b.ms && a.seq < b.seq }

func parseStreamID(s string) (streamID, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	digits := func(p string) bool {
		return p != "" && strings.Trim(p, "0123456789") == ""
	}
	if !ok || !digits(ms) || !digits(seq) {
		return streamID{}, false
	}
	var id streamID
	var err1, err2 error
	id.ms, err1 = strconv.ParseUint(ms, 10, 64)
	id.seq, err2 = strconv.ParseUint(seq, 10, 64)
	return id, err1 == nil && err2 == nil
}
