package inbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mpim/mpim/internal/streamid"
)

// The fields of an inbox entry. Every entry has all six, in this order, so
// Redis packs the stream tightly (entries with the fields of the node's first
// entry store only values).
const (
	FieldEventID  = "i" // the event id: the 16 bytes of its ULID
	FieldType     = "t" // the event type ("MessageSent")
	FieldPosition = "p" // the event's global position: "<partition>:<ms>-<seq>"
	FieldVersion  = "v" // the event's aggregate version, decimal
	FieldSeq      = "s" // the message seq of a MessageSent, decimal; "0" otherwise
	FieldEnvelope = "d" // the encoded envelope (mpim.v1.Event) exactly as logged
)

// Entry is one inbox entry: an event a user must receive. It carries the
// event itself, so the gateway pushes it without reading the log.
//
// Envelope is the stored envelope exactly as the log holds it, which leaves
// version and seq out (the log keeps them beside it, as Version and Seq do
// here): after unmarshalling it, set the envelope's version and seq from the
// entry, as the event store does. Entries of one event are identical in
// every recipient's inbox.
type Entry struct {
	EventID   [16]byte
	Type      string
	Partition int
	// Position is the event's stream entry id in its partition ("<ms>-<seq>";
	// streamid.Parse parses it).
	Position string
	Version  uint64
	Seq      uint64
	Envelope []byte
}

// AppendFields appends the entry's field-value pairs, in the fixed order, to
// dst and returns the extended slice (XADD's field arguments). The values are
// strings and byte slices that alias e.EventID and e.Envelope.
func (e *Entry) AppendFields(dst []any) []any {
	return append(dst,
		FieldEventID, e.EventID[:],
		FieldType, e.Type,
		FieldPosition, strconv.Itoa(e.Partition)+":"+e.Position,
		FieldVersion, strconv.FormatUint(e.Version, 10),
		FieldSeq, strconv.FormatUint(e.Seq, 10),
		FieldEnvelope, e.Envelope,
	)
}

// DecodeEntry decodes the fields of an inbox entry as a Redis client returns
// them (values are strings or byte slices). It fails on a missing or
// malformed field.
func DecodeEntry(values map[string]any) (Entry, error) {
	var e Entry
	get := func(field string) (string, error) {
		switch v := values[field].(type) {
		case string:
			return v, nil
		case []byte:
			return string(v), nil
		case nil:
			return "", fmt.Errorf("inbox: entry lacks field %q", field)
		default:
			return "", fmt.Errorf("inbox: entry field %q is a %T", field, v)
		}
	}
	var errs [6]error // one per field, on the stack
	str := func(i int, field string) string {
		s, err := get(field)
		errs[i] = err
		return s
	}
	id, typ, pos, ver, seq, env := str(0, FieldEventID), str(1, FieldType), str(2, FieldPosition), str(3, FieldVersion), str(4, FieldSeq), str(5, FieldEnvelope)
	if err := errors.Join(errs[:]...); err != nil {
		return e, err
	}
	if len(id) != len(e.EventID) {
		return e, fmt.Errorf("inbox: entry event id of %d bytes", len(id))
	}
	copy(e.EventID[:], id)
	if err := e.parseMeta(typ, pos, ver, seq); err != nil {
		return e, err
	}
	e.Envelope = []byte(env)
	return e, nil
}

// parseMeta sets e's type, position, version and seq from their field
// values; it fails on a malformed one.
func (e *Entry) parseMeta(typ, pos, ver, seq string) error {
	if typ == "" {
		return errors.New("inbox: entry without event type")
	}
	e.Type = typ
	part, offset, ok := strings.Cut(pos, ":")
	p, err := strconv.Atoi(part)
	if _, perr := streamid.Parse(offset); !ok || err != nil || perr != nil || p < 0 {
		return fmt.Errorf("inbox: entry position %q", pos)
	}
	e.Partition, e.Position = p, offset
	if e.Version, err = strconv.ParseUint(ver, 10, 64); err != nil {
		return fmt.Errorf("inbox: entry version %q", ver)
	}
	if e.Seq, err = strconv.ParseUint(seq, 10, 64); err != nil {
		return fmt.Errorf("inbox: entry seq %q", seq)
	}
	return nil
}
