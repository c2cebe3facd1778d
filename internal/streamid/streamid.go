// Package streamid is the Redis stream entry id, "<ms>-<seq>", in comparable
// form. It is the one type and the one parser of every stream position in
// mpim: an event's position in its partition (eventstore.Position), an entry
// of a user's inbox and a device's cursor (internal/inbox, gateway/delivery),
// and what the benchmark audits. It imports only the standard library, so
// every package may use it.
package streamid

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ID is a stream entry id: Ms is the milliseconds part and Seq the sequence
// number within that millisecond. IDs of one stream are strictly increasing
// in append order and compare as (Ms, Seq) pairs; IDs of different streams
// are not comparable. The zero ID, "0-0", is before every entry.
type ID struct {
	Ms, Seq uint64
}

// Parse parses a stream entry id: two unsigned decimal numbers of at most 64
// bits joined by a dash ("1700000000000-3"). Nothing else is accepted: no
// sign, no spaces, no shorthand ("" or "0"). Parse does not allocate unless
// it fails.
func Parse(s string) (ID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("streamid: invalid stream entry id %q: want \"<ms>-<seq>\"", s)
	}
	a, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return ID{}, fmt.Errorf("streamid: invalid stream entry id %q: ms part: %w", s, errors.Unwrap(err))
	}
	b, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return ID{}, fmt.Errorf("streamid: invalid stream entry id %q: seq part: %w", s, errors.Unwrap(err))
	}
	return ID{Ms: a, Seq: b}, nil
}

// String returns the id's stream entry id form, "<ms>-<seq>".
func (id ID) String() string {
	var buf [41]byte // two uint64s and a dash
	return string(id.AppendTo(buf[:0]))
}

// AppendTo appends the id's stream entry id form to b and returns the
// extended slice.
func (id ID) AppendTo(b []byte) []byte {
	b = strconv.AppendUint(b, id.Ms, 10)
	b = append(b, '-')
	return strconv.AppendUint(b, id.Seq, 10)
}

// IsZero reports whether id is the zero ID, before every entry.
func (id ID) IsZero() bool { return id == ID{} }

// Compare returns -1, 0 or 1 as id is before, equal to or after o.
func (id ID) Compare(o ID) int {
	switch {
	case id.Ms < o.Ms || id.Ms == o.Ms && id.Seq < o.Seq:
		return -1
	case id == o:
		return 0
	}
	return 1
}

// After reports whether id is later in the stream than o.
func (id ID) After(o ID) bool {
	return id.Ms > o.Ms || id.Ms == o.Ms && id.Seq > o.Seq
}
