package domain

import "time"

// The ranges of the numbers that commands, queries and events carry. A number
// outside its range is answered EInvalid where it enters, so it never reaches
// the log, whose events every projector must be able to store.
//
//   - A conversation seq is 1..MaxSeq. The event store's append script counts
//     seqs in Lua numbers (doubles), exact up to 2^53, and every JSON client
//     reads such a number exactly. A command naming a message or a read
//     position may not name a seq beyond the conversation's last (CheckSeq).
//   - A time is 1970-01-01T00:00:00.000Z..9999-12-31T23:59:59.999Z, as
//     milliseconds since the Unix epoch 0..MaxUnixMilli (the range of the
//     read models' DATETIME columns, from the epoch on); 0 on the wire means
//     "none" (TimeFromUnixMilli).
//   - A mute ends after now and at most Policy.MaxMute ahead.
//   - A page of a list query holds 1..MaxPage entries; 0 asks for DefaultPage
//     (CheckPage).
//   - An attachment's size is 0..MaxSeq bytes, its width and height are not
//     negative.
const (
	MaxSeq       uint64 = 1<<53 - 1
	MaxUnixMilli int64  = 253402300799999 // 9999-12-31T23:59:59.999Z
	DefaultPage         = 50
	MaxPage             = 200
)

// TimeFromUnixMilli returns the UTC time of ms milliseconds since the Unix
// epoch, or the zero time for 0 (none). A negative ms or one beyond
// MaxUnixMilli gives an EInvalid error naming field.
func TimeFromUnixMilli(field string, ms int64) (time.Time, error) {
	switch {
	case ms == 0:
		return time.Time{}, nil
	case ms < 0 || ms > MaxUnixMilli:
		return time.Time{}, Errorf(EInvalid, "domain: %s %d is not a time in milliseconds since 1970 up to %d (year 9999)", field, ms, MaxUnixMilli)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// TimeInRange reports whether t lies in the range of times events carry:
// from the Unix epoch to the end of year 9999.
func TimeInRange(t time.Time) bool {
	ms := t.UnixMilli()
	return !t.Before(time.Unix(0, 0)) && ms <= MaxUnixMilli
}

// CheckSeq returns nil if seq names a message of a conversation whose last
// seq is last: 1 <= seq <= last. Otherwise it returns an EInvalid error
// naming field.
func CheckSeq(field string, seq, last uint64) error {
	switch {
	case seq == 0:
		return Errorf(EInvalid, "domain: %s must be positive", field)
	case seq > MaxSeq:
		return Errorf(EInvalid, "domain: %s %d is beyond the largest seq %d", field, seq, MaxSeq)
	case last == 0:
		return Errorf(EInvalid, "domain: %s %d: the conversation has no messages", field, seq)
	case seq > last:
		return Errorf(EInvalid, "domain: %s %d is beyond the conversation's last seq %d", field, seq, last)
	}
	return nil
}

// CheckPage returns the page size a list query asked for: DefaultPage for 0,
// limit for 1..MaxPage, and an EInvalid error beyond.
func CheckPage(limit uint32) (int, error) {
	switch {
	case limit == 0:
		return DefaultPage, nil
	case limit > MaxPage:
		return 0, Errorf(EInvalid, "domain: limit %d is beyond the largest page of %d", limit, MaxPage)
	}
	return int(limit), nil
}
