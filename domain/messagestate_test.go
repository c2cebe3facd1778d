package domain

import (
	"bytes"
	"math"
	"testing"
	"time"
)

func TestMessageStateRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		state MessageState
	}{
		{"fresh message", MessageState{Sender: uid(1), SentAt: t0}},
		{"recalled and edited message", MessageState{Sender: uid(2), SentAt: t0.Add(time.Millisecond), Recalled: true, Edits: 3}},
		{"many edits", MessageState{Sender: uid(3), SentAt: t0, Edits: math.MaxInt32}},
		{"smallest ULID", MessageState{Sender: "u/00000000000000000000000000", SentAt: time.UnixMilli(0).UTC()}},
		{"largest ULID", MessageState{Sender: "u/7ZZZZZZZZZZZZZZZZZZZZZZZZZ", SentAt: t0}},
		{"mixed ULID", MessageState{Sender: "u/01ARZ3NDEKTSV4RRFFQ69G5FAV", SentAt: t0}},
		{"before 1970", MessageState{Sender: uid(1), SentAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"zero time", MessageState{Sender: uid(1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.state.MarshalBinary()
			wantCode(t, err, "")
			if len(data) > 32 {
				t.Errorf("encoding is %d bytes", len(data))
			}
			var got MessageState
			wantCode(t, got.UnmarshalBinary(data), "")
			if got != tt.state {
				t.Fatalf("round trip = %+v, want %+v", got, tt.state)
			}
			appended, err := tt.state.AppendBinary([]byte("prefix"))
			wantCode(t, err, "")
			if !bytes.Equal(appended, append([]byte("prefix"), data...)) {
				t.Fatalf("AppendBinary = %x, want prefix + %x", appended, data)
			}
		})
	}
	t.Run("new state round-trips whatever the sent time's precision and zone", func(t *testing.T) {
		s := NewMessageState(MessageSent{Sender: uid(1), SentAt: time.Date(2025, 3, 1, 13, 0, 0, 999999999, time.FixedZone("CET", 3600))})
		data, _ := s.MarshalBinary()
		var got MessageState
		wantCode(t, got.UnmarshalBinary(data), "")
		if got != s || !got.SentAt.Equal(time.Date(2025, 3, 1, 12, 0, 0, 999000000, time.UTC)) {
			t.Fatalf("got %+v, want %+v", got, s)
		}
	})
	t.Run("typical cell is 25 bytes", func(t *testing.T) {
		data, _ := MessageState{Sender: uid(1), SentAt: t0}.MarshalBinary()
		if len(data) != 25 {
			t.Fatalf("len = %d", len(data))
		}
	})
}

func TestMessageStateRejectsGarbage(t *testing.T) {
	good, err := MessageState{Sender: uid(1), SentAt: t0, Edits: 1}.MarshalBinary()
	wantCode(t, err, "")
	with := func(i int, b byte) []byte {
		d := bytes.Clone(good)
		d[i] = b
		return d
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version alone", []byte{1}},
		{"version 0", with(0, 0)},
		{"version 2", with(0, 2)},
		{"unknown flag", with(1, 2)},
		{"one byte short", good[:len(good)-1]},
		{"one byte long", append(bytes.Clone(good), 0)},
		{"edits varint runs off the end", []byte{1, 0, 0x80}},
		{"time varint runs off the end", []byte{1, 0, 0, 0x80}},
		{"overlong edits varint", append([]byte{1, 0}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"edits beyond int32", append([]byte{1, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0}, make([]byte, 16)...)},
		{"text", []byte("u/01J00000000000000000000001")},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is invalid", func(t *testing.T) {
			s := MessageState{Sender: uid(5), Edits: 9}
			before := s
			wantCode(t, s.UnmarshalBinary(tt.data), EInvalid)
			if s != before {
				t.Fatalf("state changed to %+v", s)
			}
		})
	}
	for name, s := range map[string]MessageState{
		"zero state":         {},
		"malformed sender":   {Sender: "u/nope"},
		"group as sender":    {Sender: UserID(gid(1))},
		"negative edits":     {Sender: uid(1), Edits: -1},
		"lower-case ULID id": {Sender: "u/01j00000000000000000000001"},
	} {
		t.Run("encoding "+name+" is invalid", func(t *testing.T) {
			_, err := s.MarshalBinary()
			wantCode(t, err, EInvalid)
		})
	}
}

// FuzzMessageState checks that decoding never panics, rejects with EInvalid
// only, and that whatever decodes re-encodes to a state that decodes the same.
func FuzzMessageState(f *testing.F) {
	for _, s := range []MessageState{{Sender: uid(1), SentAt: t0}, {Sender: uid(2), Recalled: true, Edits: 300}} {
		data, _ := s.MarshalBinary()
		f.Add(data)
	}
	f.Add([]byte{1, 1, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s MessageState
		if err := s.UnmarshalBinary(data); err != nil {
			wantCode(t, err, EInvalid)
			return
		}
		again, err := s.MarshalBinary()
		wantCode(t, err, "")
		var s2 MessageState
		wantCode(t, s2.UnmarshalBinary(again), "")
		if s2 != s {
			t.Fatalf("re-decoded %+v, want %+v", s2, s)
		}
	})
}
