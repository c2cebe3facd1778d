package frame_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// strs are the string values the generator picks from: empty, unicode,
// every escape protojson knows, the replacement character, line and
// paragraph separators, HTML characters, long text.
var strs = []string{
	"", "a", "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", "héllo ✓ 世界 🎉", "\"quoted\" \\ back\\slash /",
	"\x00\x01\x07\b\f\n\r\t\x0b\x1b\x1f\x7f", "\ufffd", "\u2028\u2029", "<script>&amp;</script>",
	"tab\tand\nnewline", string(bytes.Repeat([]byte("long text é "), 200)), "\U0010FFFF", " ",
}

var ints = []int64{0, 1, -1, 42, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64, math.MaxInt32, math.MinInt32}

func pick[T any](r *rand.Rand, vs []T) T { return vs[r.IntN(len(vs))] }

// randomEvent returns a MessageSent event (or, sometimes, one without a
// payload) with every field set or unset at random.
func randomEvent(r *rand.Rand) *mpimv1.Event {
	ev := &mpimv1.Event{Aggregate: pick(r, strs), CorrelationId: pick(r, strs), CausationId: pick(r, strs),
		Version: uint64(pick(r, ints)), Seq: uint64(pick(r, ints)), OccurredAtMs: pick(r, ints)}
	if r.IntN(4) > 0 {
		ev.Id = make([]byte, r.IntN(20))
		for i := range ev.Id {
			ev.Id[i] = byte(r.IntN(256))
		}
	}
	if r.IntN(3) > 0 {
		ev.Actor = &mpimv1.Actor{UserId: pick(r, strs), DeviceId: pick(r, strs)}
	}
	if r.IntN(8) == 0 {
		return ev
	}
	m := &mpimv1.MessageSent{ConversationId: pick(r, strs), SenderId: pick(r, strs), DeviceId: pick(r, strs),
		ClientMsgId: pick(r, strs), Text: pick(r, strs), SentAtMs: pick(r, ints),
		Kind: mpimv1.MessageKind(pick(r, []int32{0, 1, 2, 3, 4, 17, -3}))}
	if r.IntN(3) == 0 {
		m.Attachment = &mpimv1.Attachment{Url: pick(r, strs), Mime: pick(r, strs), Name: pick(r, strs),
			Size: pick(r, ints), Width: int32(pick(r, ints)), Height: int32(pick(r, ints))}
	}
	ev.Payload = &mpimv1.Event_MessageSent{MessageSent: m}
	return ev
}

// sameJSON checks that fast and want (protojson's) are the same JSON: the
// same bytes once both are compacted (protojson may put spaces after ':'
// and ',', and so may fast where it holds protojson's encoding of an event
// the fast path leaves to it), the same JSON value, and the same message
// when protojson parses both.
func sameJSON(t *testing.T, what string, fast, want []byte, newMsg func() proto.Message) {
	t.Helper()
	var cf, cw bytes.Buffer
	if err := json.Compact(&cf, fast); err != nil {
		t.Fatalf("%s: fast output is not JSON: %v\n%s", what, err, fast)
	}
	if err := json.Compact(&cw, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cf.Bytes(), cw.Bytes()) {
		t.Fatalf("%s:\nfast      %s\nprotojson %s", what, cf.Bytes(), cw.Bytes())
	}
	var fv, wv any
	if err := json.Unmarshal(fast, &fv); err != nil {
		t.Fatalf("%s: fast output is not JSON: %v", what, err)
	}
	if err := json.Unmarshal(want, &wv); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fv, wv) {
		t.Fatalf("%s: JSON values differ", what)
	}
	fm, wm := newMsg(), newMsg()
	if err := protojson.Unmarshal(fast, fm); err != nil {
		t.Fatalf("%s: protojson cannot parse the fast output: %v", what, err)
	}
	if err := protojson.Unmarshal(want, wm); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(fm, wm) {
		t.Fatalf("%s: parsed differently:\nfast      %v\nprotojson %v", what, fm, wm)
	}
}

func newServerFrame() proto.Message { return &mpimv1.ServerFrame{} }

// The fast JSON of the hot frames parses equal to protojson's, over
// thousands of random pushes, send and ack responses.
func TestFastJSONFramesEqualProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 1))
	var buf []byte
	for i := range 5000 {
		var sf *mpimv1.ServerFrame
		switch i % 4 {
		case 0, 1:
			p := &mpimv1.Push{InboxId: pick(r, strs), Type: pick(r, strs), Resend: r.IntN(2) == 0}
			if i%4 == 0 || r.IntN(3) > 0 {
				p.Event = randomEvent(r)
			}
			sf = &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: p}}
		case 2:
			s := &mpimv1.SendResult{ConversationId: pick(r, strs), Seq: uint64(pick(r, ints)), SentAtMs: pick(r, ints),
				Duplicate: r.IntN(2) == 0, EventId: randomEvent(r).Id}
			sf = &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Response{Response: &mpimv1.Response{
				Id: uint64(pick(r, ints)), Result: &mpimv1.Response_Send{Send: s}}}}
		case 3:
			sf = &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Response{Response: &mpimv1.Response{
				Id: uint64(pick(r, ints)), Result: &mpimv1.Response_Ack{Ack: &mpimv1.Done{}}}}}
		}
		want, err := protojson.Marshal(sf)
		if err != nil {
			t.Fatal(err)
		}
		buf, err = frame.JSON.AppendServer(buf[:0], sf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		sameJSON(t, "frame "+sf.String(), buf, want, newServerFrame)
		var compact bytes.Buffer
		if json.Compact(&compact, buf) != nil || !bytes.Equal(compact.Bytes(), buf) {
			t.Fatalf("frame %d is not compact: %s", i, buf)
		}
	}
}

// AppendPushJSON with an event from AppendEventJSON (the gateway's once
// per event path) is protojson's push, events of every type included
// (those the fast path leaves to protojson).
func TestPushJSONFromEventJSONEqualsProtojson(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 2))
	events := []*mpimv1.Event{
		{Id: []byte{1, 2, 3}, Payload: &mpimv1.Event_MessageRecalled{MessageRecalled: &mpimv1.MessageRecalled{Seq: 3, ByUserId: "u/é"}}},
		{Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{Text: "x",
			Attachment: &mpimv1.Attachment{Url: "u", Meta: map[string]string{"b": "2", "a": "1\n"}}}}},
		{Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{}}},
		{Actor: &mpimv1.Actor{}},
		{},
	}
	for range 1000 {
		events = append(events, randomEvent(r))
	}
	for i, ev := range events {
		evJSON, err := frame.AppendEventJSON(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "event "+ev.String(), evJSON, mustProtojson(t, ev), func() proto.Message { return &mpimv1.Event{} })
		p := &mpimv1.Push{InboxId: "1700000000000-" + string(rune('0'+i%10)), Type: "MessageSent", Event: ev, Resend: i%2 == 0}
		got, err := frame.AppendPushJSON(nil, p.InboxId, p.Type, evJSON, p.Resend)
		if err != nil {
			t.Fatal(err)
		}
		sameJSON(t, "push "+p.String(), got, mustProtojson(t, &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: p}}), newServerFrame)
	}
}

func mustProtojson(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A string that is not valid UTF-8 fails the fast path as it fails
// protojson: the frame is not sent half-right.
func TestFastJSONRefusesInvalidUTF8LikeProtojson(t *testing.T) {
	bad := string([]byte{'a', 0xff, 'b'})
	frames := []*mpimv1.ServerFrame{
		{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{InboxId: bad}}},
		{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{Event: &mpimv1.Event{Payload: &mpimv1.Event_MessageSent{
			MessageSent: &mpimv1.MessageSent{Text: bad}}}}}},
		{Frame: &mpimv1.ServerFrame_Response{Response: &mpimv1.Response{Result: &mpimv1.Response_Send{
			Send: &mpimv1.SendResult{ConversationId: bad}}}}},
	}
	for _, sf := range frames {
		if _, err := protojson.Marshal(sf); err == nil {
			t.Fatalf("protojson took %v", sf)
		}
		if _, err := frame.JSON.AppendServer(nil, sf); err == nil {
			t.Fatalf("the fast path took invalid UTF-8 in %v", sf)
		}
	}
}
