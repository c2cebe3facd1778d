package inbox_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
)

// benchNotification is a projector batch's notification to one gateway:
// 20 users, each carried one MessageSent entry of a 120-byte envelope.
func benchNotification() inbox.Notification {
	var n inbox.Notification
	for i := range 20 {
		e := inbox.Entry{EventID: [16]byte{byte(i)}, Type: "MessageSent", Partition: i % 8,
			Position: fmt.Sprintf("1700000000%03d-%d", i, i), Version: uint64(100 + i), Seq: uint64(50 + i), Envelope: make([]byte, 120)}
		id := fmt.Sprintf("1700000001%03d-0", i)
		n.Users = append(n.Users, inbox.Head{User: domain.UserID(fmt.Sprintf("u/01HZZZZZZZZZZZZZZZZZZZZ%03d", i)), Last: id, Prev: "1699999999999-0",
			Entries: []inbox.Carried{{ID: id, Entry: e}}})
	}
	return n
}

func BenchmarkNotificationEncode(b *testing.B) {
	n := benchNotification()
	b.ReportAllocs()
	for b.Loop() {
		_ = n.Encode()
	}
}

func BenchmarkDecodeNotification(b *testing.B) {
	payload := benchNotification().Encode()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inbox.DecodeNotification(payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEntryAppendFields(b *testing.B) {
	e := inbox.Entry{Type: "MessageSent", Partition: 7, Position: "1700000000000-3", Version: 42, Seq: 41, Envelope: make([]byte, 120)}
	dst := make([]any, 0, 12)
	b.ReportAllocs()
	for b.Loop() {
		dst = e.AppendFields(dst[:0])
	}
}

func BenchmarkNotificationAppendEncoded(b *testing.B) {
	n := benchNotification()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = n.AppendEncoded(buf[:0])
	}
}

// AppendEncoded after other bytes appends exactly what Encode returns.
func TestNotificationAppendEncodedAppends(t *testing.T) {
	n := benchNotification()
	got := n.AppendEncoded([]byte("prefix"))
	if want := append([]byte("prefix"), n.Encode()...); string(got) != string(want) {
		t.Fatalf("AppendEncoded after a prefix made %d bytes, want %d", len(got), len(want))
	}
	if n.Size() != len(n.Encode()) {
		t.Fatalf("Size %d, Encode %d bytes", n.Size(), len(n.Encode()))
	}
}

// A head or record line with a field too many or too few is refused, not
// cut to the fields expected (the decoder splits lines into fixed arrays).
func TestNotificationRejectsExtraFields(t *testing.T) {
	ok := "u/A 10-0 0-0 1\n10-0 MessageSent 3:5-1 2 9 1\n0123456789abcdefx"
	if _, err := inbox.DecodeNotification([]byte(ok)); err != nil {
		t.Fatalf("well-formed payload: %v", err)
	}
	for _, bad := range []string{
		"u/A 10-0 0-0 1 extra\n10-0 MessageSent 3:5-1 2 9 1\n0123456789abcdefx",
		"u/A 10-0 0-0\n10-0 MessageSent 3:5-1 2 9 1\n0123456789abcdefx",
		"u/A 10-0 0-0 1\n10-0 MessageSent 3:5-1 2 9 1 extra\n0123456789abcdefx",
		"u/A 10-0 0-0 1\n10-0 MessageSent 3:5-1 2 1\n0123456789abcdefx",
		"u/A 10-0 extra\n",
		"u/A 10-0 \n",
	} {
		if _, err := inbox.DecodeNotification([]byte(bad)); err == nil {
			t.Errorf("payload %q decoded without error", bad)
		}
	}
}

func BenchmarkDecodeEntry(b *testing.B) {
	values := map[string]any{"i": "0123456789abcdef", "t": "MessageSent", "p": "7:1700000000000-3", "v": "42", "s": "41", "d": string(make([]byte, 120))}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := inbox.DecodeEntry(values); err != nil {
			b.Fatal(err)
		}
	}
}

// DecodeEntry names every missing field, not only one of them.
func TestDecodeEntryNamesEveryMissingField(t *testing.T) {
	_, err := inbox.DecodeEntry(map[string]any{"i": "0123456789abcdef", "p": "1:5-0", "v": "1", "s": "0"})
	if err == nil || !strings.Contains(err.Error(), `"t"`) || !strings.Contains(err.Error(), `"d"`) {
		t.Fatalf("entry without type and envelope: %v", err)
	}
}
