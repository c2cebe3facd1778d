package gateway

import (
	"strings"
	"testing"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The JSON push of a 100-byte MessageSent, per pushed message: as the
// writer encoded it before (decode the envelope, protojson the frame), the
// first push of an event (decode, fast encode, cache) and every other push
// of it (from the cache).
//
//	go test -run '^$' -bench EncodePushJSON -benchmem ./gateway/
func BenchmarkEncodePushJSON(b *testing.B) {
	id := ulid.Make()
	env, err := proto.Marshal(&mpimv1.Event{Id: id[:], Aggregate: "d/u/01HZZZZZZZZZZZZZZZZZZZZZZZ.u/01HZZZZZZZZZZZZZZZZZZZZZZY",
		Version: 12, Seq: 11, OccurredAtMs: 1764950000000, Actor: &mpimv1.Actor{UserId: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", DeviceId: "bench-1"},
		CorrelationId: "01HZZZZZZZZZZZZZZZZZZZZZZX", Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{
			ConversationId: "d/u/01HZZZZZZZZZZZZZZZZZZZZZZZ.u/01HZZZZZZZZZZZZZZZZZZZZZZY", SenderId: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ",
			DeviceId: "bench-1", ClientMsgId: "c-123456", Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: strings.Repeat("x", 100),
			SentAtMs: 1764950000000}}})
	if err != nil {
		b.Fatal(err)
	}
	d := &Delivery{InboxID: "1764950000000-3", EventID: id, Type: "MessageSent", Envelope: env}
	b.Run("protojson", func(b *testing.B) {
		var buf []byte
		var w frameWriter
		for b.Loop() {
			ev := &mpimv1.Event{}
			if err := proto.Unmarshal(d.Envelope, ev); err != nil {
				b.Fatal(err)
			}
			w.push = mpimv1.Push{InboxId: d.InboxID, Type: d.Type, Event: ev}
			w.pf.Push = &w.push
			w.sf.Frame = &w.pf
			if buf, err = (protojson.MarshalOptions{}).MarshalAppend(buf[:0], &w.sf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("first-push", func(b *testing.B) {
		var buf []byte
		var scratch mpimv1.Event
		c := &eventJSONCache{}
		for b.Loop() {
			c.slot(id).Store(nil) // every push is an event's first
			if buf, _, err = c.appendPush(buf[:0], d, &scratch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("other-pushes", func(b *testing.B) {
		var buf []byte
		var scratch mpimv1.Event
		c := &eventJSONCache{}
		for b.Loop() {
			if buf, _, err = c.appendPush(buf[:0], d, &scratch); err != nil {
				b.Fatal(err)
			}
		}
	})
}
