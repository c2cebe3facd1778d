package gateway

import (
	"bytes"
	"encoding/json"
	"testing"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func envelopeOf(t *testing.T, id ulid.ULID, text string) []byte {
	t.Helper()
	b, err := proto.Marshal(&mpimv1.Event{Id: id[:], Aggregate: "d/x", Version: 2, Seq: 7,
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: "d/x", Text: text}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushJSON is the frame the gateway wrote before the cache: the decoded
// event in a Push, by protojson, compacted.
func pushJSON(t *testing.T, d *Delivery) []byte {
	t.Helper()
	ev := &mpimv1.Event{}
	if err := proto.Unmarshal(d.Envelope, ev); err != nil {
		t.Fatal(err)
	}
	b, err := protojson.Marshal(&mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{
		InboxId: d.InboxID, Type: d.Type, Event: ev, Resend: d.Resend}}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// An event pushed to many JSON sessions is encoded once; each frame is
// still the one protojson writes, with its own inbox id and resend flag.
// A delivery with the same event id but other envelope bytes (a slot
// collision, test deliveries without an id) is encoded on its own.
func TestEventJSONIsEncodedOncePerEvent(t *testing.T) {
	var c eventJSONCache
	var scratch mpimv1.Event
	id := ulid.Make()
	env := envelopeOf(t, id, "hello \"world\" é\n")
	var buf []byte
	for i, inbox := range []string{"1-0", "2-0", "3-0", "4-5"} {
		d := &Delivery{InboxID: inbox, EventID: id, Type: "MessageSent", Envelope: bytes.Clone(env), Resend: i == 3}
		out, ok, err := c.appendPush(buf[:0], d, &scratch)
		if !ok || err != nil {
			t.Fatalf("push %d: ok %v, err %v", i, ok, err)
		}
		if want := pushJSON(t, d); !bytes.Equal(out, want) {
			t.Fatalf("push %d:\ngot  %s\nwant %s", i, out, want)
		}
		buf = out
	}
	if e, h := c.encoding.Load(), c.hits.Load(); e != 1 || h != 3 {
		t.Fatalf("%d encodings and %d hits for one event pushed 4 times, want 1 and 3", e, h)
	}
	other := &Delivery{InboxID: "5-0", EventID: id, Type: "MessageSent", Envelope: envelopeOf(t, id, "edited")}
	out, ok, err := c.appendPush(nil, other, &scratch)
	if !ok || err != nil || !bytes.Equal(out, pushJSON(t, other)) {
		t.Fatalf("another envelope under the same id: %s, %v, %v", out, ok, err)
	}
	if e := c.encoding.Load(); e != 2 {
		t.Fatalf("%d encodings, want 2: a different envelope must not take the cached JSON", e)
	}
	if _, ok, _ := c.appendPush(nil, &Delivery{InboxID: "6-0", Envelope: []byte{0xff}}, &scratch); ok {
		t.Fatal("an undecodable envelope was encoded")
	}
}
