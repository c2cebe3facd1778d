package gateway

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// Bounds of the event JSON cache: it holds at most eventJSONSlots events
// of at most eventJSONMaxBytes of JSON each (with their envelopes, which
// are no larger), so about 2 x 1024 x 8 KiB at the very most.
const (
	eventJSONSlots    = 1024
	eventJSONMaxBytes = 8 << 10
)

// eventJSONCache encodes an event's JSON (the "event" of a JSON push) once
// per event, not once per device: every JSON session of the gateway that
// pushes the same event (the recipients of a group message, a user's
// devices, a resend) takes the bytes the first one encoded. It is a
// direct-mapped table indexed by the event id's random bits; a slot holds
// the last event encoded there, with its envelope, and a hit needs the same
// event id and the same envelope bytes, so an entry never answers for
// another event (test deliveries without an event id included). The zero
// value is ready; it is safe for concurrent use (slots are replaced
// atomically, never modified).
type eventJSONCache struct {
	slots          [eventJSONSlots]atomic.Pointer[eventJSON]
	hits, encoding atomic.Int64 // pushes served from the cache, events encoded
}

// eventJSON is one cached encoding; it is never modified once stored.
type eventJSON struct {
	id   [16]byte
	env  []byte // the delivery's envelope (deliveries never modify theirs)
	json []byte
}

// slot returns the slot of event id, by the id's random bits.
func (c *eventJSONCache) slot(id [16]byte) *atomic.Pointer[eventJSON] {
	return &c.slots[binary.LittleEndian.Uint64(id[8:])%eventJSONSlots]
}

// appendPush appends the JSON frame of delivery d to buf, with its event
// encoded once per event (scratch is the caller's reusable Event). ok is
// false if d's envelope does not decode; the caller then sends the raw
// envelope.
func (c *eventJSONCache) appendPush(buf []byte, d *Delivery, scratch *mpimv1.Event) (out []byte, ok bool, err error) {
	slot := c.slot(d.EventID)
	if e := slot.Load(); e != nil && e.id == d.EventID && bytes.Equal(e.env, d.Envelope) {
		c.hits.Add(1)
		out, err = frame.AppendPushJSON(buf, d.InboxID, d.Type, e.json, d.Resend)
		return out, true, err
	}
	proto.Reset(scratch)
	if proto.Unmarshal(d.Envelope, scratch) != nil {
		return buf, false, nil
	}
	c.encoding.Add(1)
	// The event goes after the push's head: encode it past the end of buf
	// first, then keep a copy for the cache and the frame.
	start := len(buf)
	enc, err := frame.AppendEventJSON(buf, scratch)
	proto.Reset(scratch) // drop the references
	if err != nil {
		return buf, true, err
	}
	ev := bytes.Clone(enc[start:])
	if len(ev) <= eventJSONMaxBytes {
		slot.Store(&eventJSON{id: d.EventID, env: d.Envelope, json: ev})
	}
	out, err = frame.AppendPushJSON(enc[:start], d.InboxID, d.Type, ev, d.Resend)
	return out, true, err
}
