package eventstore

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is the stream entry id of an event in its partition ("<ms>-<seq>"),
// assigned by Redis. Positions of one partition are strictly increasing in
// append order; positions of different partitions are not comparable.
// The zero Position is before every event.
type Position struct {
	Ms, Seq uint64
}

// ParsePosition parses a stream entry id ("1700000000000-3"; "0" and "" mean
// the zero Position).
func ParsePosition(s string) (Position, error) {
	if s == "" || s == "0" {
		return Position{}, nil
	}
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return Position{}, fmt.Errorf("eventstore: invalid position %q", s)
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return Position{}, fmt.Errorf("eventstore: invalid position %q", s)
	}
	return Position{Ms: a, Seq: b}, nil
}

// String returns the stream entry id form.
func (p Position) String() string {
	return strconv.FormatUint(p.Ms, 10) + "-" + strconv.FormatUint(p.Seq, 10)
}

// IsZero reports whether p is the position before every event.
func (p Position) IsZero() bool { return p == Position{} }

// Compare returns -1, 0 or 1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Ms < q.Ms || (p.Ms == q.Ms && p.Seq < q.Seq):
		return -1
	case p == q:
		return 0
	}
	return 1
}

// GlobalPosition is a position in the whole log.
type GlobalPosition struct {
	Partition int
	Position  Position
}
