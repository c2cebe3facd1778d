package delivery

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

func TestRangeAfterExcludesThePosition(t *testing.T) {
	if got := rangeAfter(streamid.ID{Ms: 1700000000000, Seq: 12}); got != "(1700000000000-12" {
		t.Errorf("rangeAfter = %q", got)
	}
	if got := rangeAfter(streamid.ID{}); got != "-" {
		t.Errorf("the zero position reads from %q, not the start", got)
	}
}

func TestCompletedEnvelopeDecodesWithVersionAndSeq(t *testing.T) {
	stored := &mpimv1.Event{Id: bytes.Repeat([]byte{7}, 16), Aggregate: "d/a.b", OccurredAtMs: 1_700_000_000_123,
		Actor: &mpimv1.Actor{UserId: "u/x", DeviceId: "d"}, CorrelationId: "c"}
	raw, err := proto.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	got := new(mpimv1.Event)
	if err := proto.Unmarshal(completeEnvelope(slices.Clone(raw), 42, 7), got); err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(stored).(*mpimv1.Event)
	want.Version, want.Seq = 42, 7
	if !proto.Equal(got, want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	if at, ok := occurredAt(raw); !ok || !at.Equal(time.UnixMilli(1_700_000_000_123)) {
		t.Fatalf("occurred at %v %v", at, ok)
	}
	if _, ok := occurredAt([]byte{0xff}); ok {
		t.Fatal("occurred_at found in a malformed envelope")
	}
}

// actedBy names the envelope's actor as the parser does (the last
// occurrence wins) and never takes a malformed envelope, one without an
// actor or another user's or device's for the device's own.
func TestActedByMatchesOnlyTheActorDevice(t *testing.T) {
	raw, err := proto.Marshal(&mpimv1.Event{Id: bytes.Repeat([]byte{7}, 16), Aggregate: "c/x", OccurredAtMs: 1,
		Actor: &mpimv1.Actor{UserId: "u/a", DeviceId: "phone"}, Payload: &mpimv1.Event_MessageSent{
			MessageSent: &mpimv1.MessageSent{Text: "u/a phone"}}})
	if err != nil {
		t.Fatal(err)
	}
	noActor, err := proto.Marshal(&mpimv1.Event{Id: bytes.Repeat([]byte{7}, 16), Aggregate: "c/x"})
	if err != nil {
		t.Fatal(err)
	}
	later, err := proto.Marshal(&mpimv1.Event{Actor: &mpimv1.Actor{DeviceId: "laptop"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		env          []byte
		user, device string
		want         bool
	}{
		{"its own", raw, "u/a", "phone", true},
		{"another device of the user", raw, "u/a", "laptop", false},
		{"another user's device of the same name", raw, "u/b", "phone", false},
		{"no actor", noActor, "u/a", "", false},
		{"empty", nil, "u/a", "phone", false},
		{"cut short", raw[:len(raw)-3], "u/a", "phone", false},
		{"actor cut short", []byte{0x2a, 0x05, 0x0a, 0x03, 'u'}, "u", "", false},
		{"bad tag", []byte{0xff}, "u/a", "phone", false},
		{"a later actor merged in", slices.Concat(raw, later), "u/a", "laptop", true},
	} {
		if got := actedBy(c.env, c.user, c.device); got != c.want {
			t.Errorf("%s: actedBy = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWindowLostErrsTowardsSync(t *testing.T) {
	pos := streamid.ID{Ms: 100, Seq: 5}
	for name, c := range map[string]struct {
		info redis.XInfoStream
		want bool
	}{
		"nothing removed":        {redis.XInfoStream{Length: 10, EntriesAdded: 10, FirstEntry: redis.XMessage{ID: "200-0"}, MaxDeletedEntryID: "0-0"}, false},
		"trimmed before pos":     {redis.XInfoStream{Length: 10, EntriesAdded: 30, FirstEntry: redis.XMessage{ID: "100-5"}, MaxDeletedEntryID: "0-0"}, false},
		"trimmed past pos":       {redis.XInfoStream{Length: 10, EntriesAdded: 30, FirstEntry: redis.XMessage{ID: "100-6"}, MaxDeletedEntryID: "0-0"}, true},
		"deleted after pos":      {redis.XInfoStream{Length: 10, EntriesAdded: 11, FirstEntry: redis.XMessage{ID: "1-0"}, MaxDeletedEntryID: "150-0"}, true},
		"emptied after pos":      {redis.XInfoStream{Length: 0, EntriesAdded: 30, LastGeneratedID: "300-0", MaxDeletedEntryID: "0-0"}, true},
		"emptied, nothing after": {redis.XInfoStream{Length: 0, EntriesAdded: 30, LastGeneratedID: "100-5", MaxDeletedEntryID: "0-0"}, false},
	} {
		if got := windowLost(&c.info, pos); got != c.want {
			t.Errorf("%s: lost %v, want %v", name, got, c.want)
		}
	}
	if windowLost(&redis.XInfoStream{Length: 1, EntriesAdded: 9, FirstEntry: redis.XMessage{ID: "9-0"}}, streamid.ID{}) {
		t.Error("reading from the oldest entry reported a loss")
	}
}

func TestSignalPayloadRoundTrips(t *testing.T) {
	users := []domain.UserID{"u/01HZZZZZZZZZZZZZZZZZZZZZZA", "u/01HZZZZZZZZZZZZZZZZZZZZZZB"}
	s := Signal{From: "u/01HZZZZZZZZZZZZZZZZZZZZZZC", Kind: "typing", Payload: []byte("a\nb\x00")}
	gotUsers, got, err := decodeSignal(encodeSignal(users, s))
	if err != nil || !slices.Equal(gotUsers, users) || got.From != s.From || got.Kind != s.Kind || !bytes.Equal(got.Payload, s.Payload) {
		t.Fatalf("decoded %v %+v %v", gotUsers, got, err)
	}
	for _, bad := range []string{"", "u/x\nf\n", "bob\nf\nk\n", "\nf\nk\n"} {
		if _, _, err := decodeSignal([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestReadQueueIsFIFOAndCompacts(t *testing.T) {
	q := readQueue{ready: make(chan struct{}, 1)}
	devs := make([]*Device, 7)
	for i := range devs {
		devs[i] = &Device{id: domain.DeviceID(rune('a' + i))}
	}
	pushed := 0
	push := func(n int) {
		for range n {
			q.push(devs[pushed%len(devs)])
			pushed++
		}
	}
	var got, buf []*Device
	push(5)
	for range 1000 { // steady load: five queued, never drained
		push(2)
		buf = q.take(buf, 2)
		got = append(got, buf...)
	}
	if len(q.items) > 16 {
		t.Fatalf("queue array grew to %d for %d queued", len(q.items), len(q.items)-q.head)
	}
	for buf = q.take(buf, 1000); len(buf) > 0; buf = q.take(buf, 1000) {
		got = append(got, buf...)
	}
	if len(got) != pushed {
		t.Fatalf("took %d of %d", len(got), pushed)
	}
	for i, d := range got {
		if d != devs[i%len(devs)] {
			t.Fatalf("item %d out of order", i)
		}
	}
}

// BenchmarkActedBy is the cost of the echo check per MessageSent entry
// pushed (a 100-byte text message).
func BenchmarkActedBy(b *testing.B) {
	raw, err := proto.Marshal(&mpimv1.Event{Id: bytes.Repeat([]byte{7}, 16), Aggregate: "c/d.01HZZZZZZZZZZZZZZZZZZZZZZZ.01HYYYYYYYYYYYYYYYYYYYYYYY",
		OccurredAtMs: 1_700_000_000_123, Actor: &mpimv1.Actor{UserId: "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", DeviceId: "bench-0001"},
		Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{Text: string(bytes.Repeat([]byte{'x'}, 100))}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if actedBy(raw, "u/01HZZZZZZZZZZZZZZZZZZZZZZZ", "bench-0002") {
			b.Fatal("matched another device")
		}
	}
}
