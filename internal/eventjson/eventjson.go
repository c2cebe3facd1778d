// Package eventjson is the stable JSON line format of log entries that
// `mpimctl export`, `tap`, `tail --json` and the dead-letter listing print
// (docs/analytics-format.md, docs/event-line.schema.json): one JSON object
// per entry, the envelope as named fields (event id as ULID text, times as
// RFC 3339 and Unix milliseconds), the payload in the protobuf JSON mapping
// with proto field names. Parse reads a line back into the mpim.v1.Event.
package eventjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mpim/mpim/internal/streamid"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Format names the line format and its version. Within v1 changes are
// additive only: new fields, new event types, new payload fields.
const Format = "mpim.event.v1"

// TimeLayout is occurred_at's layout: RFC 3339 in UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// ErrUnknownType is returned by Parse for a line whose event type this
// build does not know (a newer producer's): consumers skip such lines.
var ErrUnknownType = errors.New("eventjson: unknown event type")

var (
	marshal   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
	payloads  = (&mpimv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
)

// eventLine is an event's line; undecodableLine an undecodable entry's.
type eventLine struct {
	Format        string          `json:"format"`
	Partition     int             `json:"partition"`
	Position      string          `json:"position"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	Aggregate     string          `json:"aggregate"`
	Version       uint64          `json:"version"`
	Seq           uint64          `json:"seq,omitempty"`
	OccurredAt    string          `json:"occurred_at"`
	OccurredAtMs  int64           `json:"occurred_at_ms"`
	Actor         json.RawMessage `json:"actor,omitempty"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	Payload       json.RawMessage `json:"payload"`
}

type undecodableLine struct {
	Format    string `json:"format"`
	Partition int    `json:"partition"`
	Position  string `json:"position"`
	Error     string `json:"error"`
	RawBase64 string `json:"raw_base64"`
}

// Marshal returns the line (without a newline) of the event ev at position
// pos of partition. ev is printed as it is: redact secrets before.
func Marshal(partition int, pos streamid.ID, ev *mpimv1.Event) ([]byte, error) {
	if len(ev.GetId()) != 16 {
		return nil, fmt.Errorf("eventjson: event id of %d bytes, want 16", len(ev.GetId()))
	}
	m := ev.ProtoReflect()
	fd := m.WhichOneof(payloads)
	if fd == nil {
		return nil, errors.New("eventjson: event without a payload")
	}
	payload, err := marshal.Marshal(m.Get(fd).Message().Interface())
	if err != nil {
		return nil, err
	}
	l := eventLine{
		Format:        Format,
		Partition:     partition,
		Position:      pos.String(),
		EventID:       ulid.ULID(ev.GetId()).String(),
		Type:          string(fd.Message().Name()),
		Aggregate:     ev.GetAggregate(),
		Version:       ev.GetVersion(),
		Seq:           ev.GetSeq(),
		OccurredAt:    time.UnixMilli(ev.GetOccurredAtMs()).UTC().Format(TimeLayout),
		OccurredAtMs:  ev.GetOccurredAtMs(),
		CorrelationID: ev.GetCorrelationId(),
		CausationID:   ev.GetCausationId(),
		Payload:       payload,
	}
	if ev.GetActor() != nil {
		if l.Actor, err = marshal.Marshal(ev.GetActor()); err != nil {
			return nil, err
		}
	}
	return marshalLine(l)
}

// marshalLine is json.Marshal without HTML escaping: a message's "<" stays
// "<" for the analytics reading it.
func marshalLine(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// MarshalUndecodable returns the line (without a newline) of an entry that
// could not be decoded: why, and the stored bytes (empty when unknown).
func MarshalUndecodable(partition int, pos streamid.ID, why string, raw []byte) ([]byte, error) {
	return marshalLine(undecodableLine{Format, partition, pos.String(), why, base64.StdEncoding.EncodeToString(raw)})
}

// Entry is a parsed line: an event, or an undecodable entry (Event nil).
type Entry struct {
	Partition int
	Position  streamid.ID
	Event     *mpimv1.Event
	// Error and Raw describe an undecodable entry.
	Error string
	Raw   []byte
}

// parsed holds every field of either kind of line; pointers tell a missing
// field from a zero one.
type parsed struct {
	Format        *string         `json:"format"`
	Partition     *int            `json:"partition"`
	Position      *string         `json:"position"`
	EventID       *string         `json:"event_id"`
	Type          *string         `json:"type"`
	Aggregate     *string         `json:"aggregate"`
	Version       *uint64         `json:"version"`
	Seq           uint64          `json:"seq"`
	OccurredAt    *string         `json:"occurred_at"`
	OccurredAtMs  *int64          `json:"occurred_at_ms"`
	Actor         json.RawMessage `json:"actor"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id"`
	Payload       json.RawMessage `json:"payload"`
	Error         *string         `json:"error"`
	RawBase64     *string         `json:"raw_base64"`
}

// Parse reads one line back. Fields it does not know are ignored (v1 only
// grows); a missing or malformed field is an error, and a type this build
// does not know is ErrUnknownType.
func Parse(line []byte) (Entry, error) {
	var p parsed
	if err := json.Unmarshal(line, &p); err != nil {
		return Entry{}, fmt.Errorf("eventjson: %w", err)
	}
	if p.Format == nil || *p.Format != Format {
		return Entry{}, fmt.Errorf("eventjson: format %s, want %q", quoted(p.Format), Format)
	}
	if p.Partition == nil || *p.Partition < 0 {
		return Entry{}, errors.New("eventjson: partition missing or negative")
	}
	if p.Position == nil {
		return Entry{}, errors.New("eventjson: position missing")
	}
	pos, err := streamid.Parse(*p.Position)
	if err != nil {
		return Entry{}, fmt.Errorf("eventjson: position: %w", err)
	}
	e := Entry{Partition: *p.Partition, Position: pos}
	if p.Error != nil {
		if p.EventID != nil || p.Payload != nil {
			return Entry{}, errors.New("eventjson: a line with both an error and an event")
		}
		if p.RawBase64 == nil {
			return Entry{}, errors.New("eventjson: undecodable entry without raw_base64")
		}
		e.Error = *p.Error
		if e.Raw, err = base64.StdEncoding.DecodeString(*p.RawBase64); err != nil {
			return Entry{}, fmt.Errorf("eventjson: raw_base64: %w", err)
		}
		return e, nil
	}
	e.Event, err = p.event()
	return e, err
}

func (p *parsed) event() (*mpimv1.Event, error) {
	switch {
	case p.EventID == nil, p.Type == nil, p.Aggregate == nil, p.Version == nil, p.OccurredAtMs == nil, p.Payload == nil:
		return nil, errors.New("eventjson: an event line needs event_id, type, aggregate, version, occurred_at_ms and payload")
	case *p.Aggregate == "":
		return nil, errors.New("eventjson: empty aggregate")
	case *p.Version == 0:
		return nil, errors.New("eventjson: version 0 (versions start at 1)")
	}
	id, err := ulid.ParseStrict(*p.EventID)
	if err != nil {
		return nil, fmt.Errorf("eventjson: event_id %q: %w", *p.EventID, err)
	}
	if p.OccurredAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *p.OccurredAt)
		if err != nil {
			return nil, fmt.Errorf("eventjson: occurred_at: %w", err)
		}
		if t.UnixMilli() != *p.OccurredAtMs {
			return nil, fmt.Errorf("eventjson: occurred_at %s is not occurred_at_ms %d", *p.OccurredAt, *p.OccurredAtMs)
		}
	}
	ev := &mpimv1.Event{
		Id:            id[:],
		Aggregate:     *p.Aggregate,
		Version:       *p.Version,
		Seq:           p.Seq,
		OccurredAtMs:  *p.OccurredAtMs,
		CorrelationId: p.CorrelationID,
		CausationId:   p.CausationID,
	}
	if p.Actor != nil {
		ev.Actor = new(mpimv1.Actor)
		if err := unmarshal.Unmarshal(p.Actor, ev.Actor); err != nil {
			return nil, fmt.Errorf("eventjson: actor: %w", err)
		}
	}
	fd := payloadField(*p.Type)
	if fd == nil {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, *p.Type)
	}
	m := ev.ProtoReflect()
	pm := m.NewField(fd).Message()
	if err := unmarshal.Unmarshal(p.Payload, pm.Interface()); err != nil {
		return nil, fmt.Errorf("eventjson: payload of %s: %w", *p.Type, err)
	}
	m.Set(fd, protoreflect.ValueOfMessage(pm))
	return ev, nil
}

// payloadField is the payload field whose message is named typ.
func payloadField(typ string) protoreflect.FieldDescriptor {
	fields := payloads.Fields()
	for i := range fields.Len() {
		if string(fields.Get(i).Message().Name()) == typ {
			return fields.Get(i)
		}
	}
	return nil
}

// Types lists the payload type names in field order: every type a v1 line
// can carry in this build.
func Types() []string {
	fields := payloads.Fields()
	out := make([]string, fields.Len())
	for i := range out {
		out[i] = string(fields.Get(i).Message().Name())
	}
	return out
}

// TypeOf is the type name of ev's payload ("" when it has none).
func TypeOf(ev *mpimv1.Event) string {
	m := ev.ProtoReflect()
	if fd := m.WhichOneof(payloads); fd != nil {
		return string(fd.Message().Name())
	}
	return ""
}

func quoted(s *string) string {
	if s == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", *s)
}
