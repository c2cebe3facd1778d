package domain

import (
	"encoding"
	"encoding/binary"
	"math"
	"strings"
	"time"
)

// MessageState is what recall and edit decisions need to know about one sent
// message. The event store keeps it in a compact cell per (conversation, seq),
// created from the MessageSent and advanced by MessageRecalled and
// MessageEdited. The zero value means "no such message".
type MessageState struct {
	Sender   UserID
	SentAt   time.Time // UTC, millisecond precision
	Recalled bool
	Edits    int
}

var (
	_ encoding.BinaryMarshaler   = MessageState{}
	_ encoding.BinaryAppender    = MessageState{}
	_ encoding.BinaryUnmarshaler = (*MessageState)(nil)
)

// NewMessageState returns the state of a message just sent. SentAt is kept
// in UTC to the millisecond, the precision of its encoding.
func NewMessageState(m MessageSent) MessageState {
	return MessageState{Sender: m.Sender, SentAt: m.SentAt.UTC().Truncate(time.Millisecond)}
}

// Apply applies a MessageRecalled or MessageEdited of the message. It returns
// an EInvalid error for any other event, or for a MessageRecalled that names
// another sender. Like aggregates' Apply it does not re-check Decide's rules.
func (s *MessageState) Apply(e Event) error {
	switch e := e.(type) {
	case MessageRecalled:
		if e.Sender != s.Sender {
			return foreign("message state", e)
		}
		s.Recalled = true
	case MessageEdited:
		s.Edits++
	default:
		return foreign("message state", e)
	}
	return nil
}

// The encoding of a MessageState, version 1:
//
//	byte     1 (the version)
//	byte     flags: bit 0 recalled; other bits zero
//	uvarint  edits
//	varint   SentAt in Unix milliseconds
//	16 bytes the ULID of Sender, big-endian
//
// A typical cell is 25 bytes. A new version gets a new leading byte and
// UnmarshalBinary keeps reading the old ones.
const (
	stateV1       = 1
	stateRecalled = 1 << 0
)

// MarshalBinary encodes the state; see AppendBinary.
func (s MessageState) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, 32))
}

// AppendBinary appends the encoding of the state to b. It returns an EInvalid
// error if Sender is not a well-formed user id or Edits is negative.
func (s MessageState) AppendBinary(b []byte) ([]byte, error) {
	if !s.Sender.Valid() || s.Edits < 0 {
		return b, Errorf(EInvalid, "domain: cannot encode message state of sender %q with %d edits", s.Sender, s.Edits)
	}
	var flags byte
	if s.Recalled {
		flags |= stateRecalled
	}
	b = append(b, stateV1, flags)
	b = binary.AppendUvarint(b, uint64(s.Edits))
	b = binary.AppendVarint(b, s.SentAt.UnixMilli())
	hi, lo := packULID(s.Sender.ULID())
	b = binary.BigEndian.AppendUint64(b, hi)
	return binary.BigEndian.AppendUint64(b, lo), nil
}

// UnmarshalBinary decodes a state encoded by MarshalBinary. It returns an
// EInvalid error, leaving s unchanged, for an unknown version or any other
// malformed input.
func (s *MessageState) UnmarshalBinary(data []byte) error {
	bad := Errorf(EInvalid, "domain: malformed message state")
	if len(data) < 2 || data[0] != stateV1 || data[1]&^stateRecalled != 0 {
		return bad
	}
	flags, rest := data[1], data[2:]
	edits, n := binary.Uvarint(rest)
	if n <= 0 || edits > math.MaxInt32 {
		return bad
	}
	rest = rest[n:]
	ms, n := binary.Varint(rest)
	if n <= 0 {
		return bad
	}
	rest = rest[n:]
	if len(rest) != 16 {
		return bad
	}
	*s = MessageState{
		Sender:   UserID("u/" + unpackULID(binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[8:]))),
		SentAt:   time.UnixMilli(ms).UTC(),
		Recalled: flags&stateRecalled != 0,
		Edits:    int(edits),
	}
	return nil
}

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// packULID returns the 128-bit value of a valid ULID: 26 base-32 digits, the
// first at most 7.
func packULID(s string) (hi, lo uint64) {
	for i := 0; i < len(s); i++ {
		hi = hi<<5 | lo>>59
		lo = lo<<5 | uint64(strings.IndexByte(crockford, s[i]))
	}
	return hi, lo
}

// unpackULID returns the text form of a 128-bit ULID.
func unpackULID(hi, lo uint64) string {
	var b [ulidLen]byte
	for i := ulidLen - 1; i >= 0; i-- {
		b[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(b[:])
}
