package delivery

import (
	"strconv"
	"strings"
)

// position is an inbox stream entry id, "<ms>-<seq>": a user's timeline
// position. Positions compare as (ms, seq) pairs, which is append order. The
// zero position, "0-0", is before every entry.
type position struct {
	ms, seq uint64
}

// parsePosition parses an inbox stream entry id.
func parsePosition(s string) (position, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return position{}, false
	}
	m, err1 := strconv.ParseUint(ms, 10, 64)
	q, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return position{}, false
	}
	return position{ms: m, seq: q}, true
}

func (p position) String() string {
	b := make([]byte, 0, 24)
	b = strconv.AppendUint(b, p.ms, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, p.seq, 10)
	return string(b)
}

func (p position) isZero() bool { return p == position{} }

// after reports whether p is later in the stream than q.
func (p position) after(q position) bool {
	return p.ms > q.ms || p.ms == q.ms && p.seq > q.seq
}

// rangeAfter is the XRANGE start that excludes p.
func (p position) rangeAfter() string {
	if p.isZero() {
		return "-"
	}
	return "(" + p.String()
}
