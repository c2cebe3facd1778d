package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// sampleEvent is a MessageSent event as the server stores it, every field
// set, with variations drawn from rnd.
func sampleEvent(rnd *rand.Rand) *mpimv1.Event {
	return &mpimv1.Event{Id: []byte(fmt.Sprintf("01J%013d", rnd.Int64N(1e12))), Aggregate: "conversation/d-a-b",
		Version: rnd.Uint64N(1 << 40), OccurredAtMs: rnd.Int64N(1 << 42), Actor: &mpimv1.Actor{UserId: "u1", DeviceId: "bench-1"},
		CorrelationId: "corr", CausationId: "cause", Seq: rnd.Uint64N(1 << 50),
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: fmt.Sprintf("d-%d", rnd.IntN(1000)),
			SenderId: "u1", DeviceId: "bench-1", ClientMsgId: fmt.Sprintf("b1.%d.%d.%d", rnd.IntN(100), rnd.IntN(1000), rnd.Int64()),
			Kind: mpimv1.MessageKind_MESSAGE_KIND_TEXT, Text: strings.Repeat("x", rnd.IntN(300)), SentAtMs: rnd.Int64N(1 << 42)}}}
}

// sentOf reads what proto.Unmarshal reads, for every variation of a
// MessageSent event, and refuses what is not one.
func TestSentOfReadsAsProtoDoes(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for i := range 500 {
		ev := sampleEvent(rnd)
		if i%5 == 0 {
			ev.GetMessageSent().ConversationId = "" // absent fields read as empty
			ev.Seq = 0
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 { // a second message_sent field merges into the first
			more, _ := proto.Marshal(&mpimv1.Event{Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ClientMsgId: "later"}}})
			b = append(b, more...)
		}
		want := &mpimv1.Event{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatal(err)
		}
		wantF, _ := sentOfEvent(want)
		got, err := sentOf(b)
		if err != nil || got != wantF {
			t.Fatalf("event %d: sentOf = %+v, %v; proto reads %+v", i, got, err, wantF)
		}
	}
	other, _ := proto.Marshal(&mpimv1.Event{Id: []byte("x"), Payload: &mpimv1.Event_UserRegistered{UserRegistered: &mpimv1.UserRegistered{}}})
	if _, err := sentOf(other); err == nil {
		t.Error("a UserRegistered event was read as a MessageSent")
	}
	good, _ := proto.Marshal(sampleEvent(rnd))
	if _, err := sentOf(good[:len(good)-3]); err == nil {
		t.Error("a truncated envelope was read")
	}
}

// The push's envelope read by sentOf against proto.Unmarshal:
// go test -run X -bench PushEnvelope -benchmem ./cmd/mpim-bench/
func BenchmarkPushEnvelope(b *testing.B) {
	env, err := proto.Marshal(sampleEvent(rand.New(rand.NewPCG(1, 1))))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ev := &mpimv1.Event{}
			if err := proto.Unmarshal(env, ev); err != nil {
				b.Fatal(err)
			}
			if _, err := sentOfEvent(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sentOf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := sentOf(env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
