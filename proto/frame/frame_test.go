package frame_test

import (
	"errors"
	"testing"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

func TestFramesRoundTripInBothEncodings(t *testing.T) {
	for _, enc := range []frame.Encoding{frame.Proto, frame.JSON} {
		t.Run(enc.String(), func(t *testing.T) {
			in := &mpimv1.ClientFrame{Id: 1<<63 + 5, Request: &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{
				To: &mpimv1.SendRequest_UserId{UserId: "u/x"}, Text: "héllo ✓", ClientMsgId: "c1"}}}
			data, err := enc.EncodeClient(in)
			if err != nil {
				t.Fatal(err)
			}
			var out mpimv1.ClientFrame
			if err := enc.DecodeClient(enc.Binary(), data, &out); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(in, &out) {
				t.Fatalf("decoded %v, want %v", &out, in)
			}
			sf := &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Response{Response: &mpimv1.Response{Id: 3,
				Result: &mpimv1.Response_Error{Error: &mpimv1.Error{Code: "muted", Message: "m"}}}}}
			data, err = enc.EncodeServer(sf)
			if err != nil {
				t.Fatal(err)
			}
			var back mpimv1.ServerFrame
			if err := enc.DecodeServer(enc.Binary(), data, &back); err != nil || !proto.Equal(sf, &back) {
				t.Fatalf("server frame %v, %v", &back, err)
			}
		})
	}
}

func TestAppendServerAppendsTheEncoding(t *testing.T) {
	for _, enc := range []frame.Encoding{frame.Proto, frame.JSON} {
		t.Run(enc.String(), func(t *testing.T) {
			sf := &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{InboxId: "1-2", Type: "MessageSent"}}}
			want, err := enc.EncodeServer(sf)
			if err != nil {
				t.Fatal(err)
			}
			buf := append(make([]byte, 0, 256), "prefix"...)
			got, err := enc.AppendServer(buf, sf)
			if err != nil || string(got) != "prefix"+string(want) {
				t.Fatalf("appended %q, %v; want prefix%q", got, err, want)
			}
			// Reusing the buffer (as the gateway's writer does) gives the
			// same bytes again.
			if again, err := enc.AppendServer(got[:0], sf); err != nil || string(again) != string(want) {
				t.Fatalf("reused buffer: %q, %v; want %q", again, err, want)
			}
		})
	}
}

func TestAppendServerPushIsMarshal(t *testing.T) {
	env := []byte{0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	for _, p := range []*mpimv1.Push{
		{InboxId: "1700000000000-0", Type: "MessageSent", Envelope: env},
		{InboxId: "1-2", Type: "MessageSent", Envelope: env, Resend: true},
		{InboxId: "1-2"},
		{Type: "FriendRequested", Envelope: make([]byte, 300)}, // a two-byte length
		{},
		{InboxId: "1-2", Type: "bad \xff", Envelope: env}, // invalid UTF-8: Marshal's error
		{InboxId: "1-2", Event: &mpimv1.Event{Aggregate: "d/a.b"}},
	} {
		sf := &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: p}}
		want, werr := proto.Marshal(sf)
		got, gerr := frame.Proto.AppendServer(nil, sf)
		if (werr == nil) != (gerr == nil) || string(got) != string(want) {
			t.Fatalf("push %v: %x, %v; want %x, %v", p, got, gerr, want, werr)
		}
	}
}

func TestDecodeErrorsKeepTheRequestID(t *testing.T) {
	for _, tc := range []struct {
		name   string
		enc    frame.Encoding
		binary bool
		data   string
		want   error
		id     uint64
	}{
		{"text on binary", frame.Proto, false, "{}", frame.ErrMessageType, 0},
		{"binary on text", frame.JSON, true, "{}", frame.ErrMessageType, 0},
		{"bad UTF-8", frame.JSON, false, "{\"id\":\"12\",\"x\":\"\xff\"}", frame.ErrUTF8, 12},
		{"wrong JSON type with id", frame.JSON, false, `{"id":"12","ping":5}`, frame.ErrMalformed, 12},
		{"numeric id", frame.JSON, false, `{"id":13,"ping":5}`, frame.ErrMalformed, 13},
		{"truncated proto", frame.Proto, true, "\x08\x0e\x52\x05ab", frame.ErrMalformed, 14},
		{"garbage proto", frame.Proto, true, "\xff\xff\xff", frame.ErrMalformed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f mpimv1.ClientFrame
			err := tc.enc.DecodeClient(tc.binary, []byte(tc.data), &f)
			if !errors.Is(err, tc.want) || f.GetId() != tc.id || f.GetRequest() != nil {
				t.Fatalf("err %v id %d request %v; want %v and id %d", err, f.GetId(), f.GetRequest(), tc.want, tc.id)
			}
			if errors.Is(tc.want, frame.ErrMalformed) && !errors.Is(err, proto.Error) {
				t.Errorf("err %v does not keep the decoder's error", err)
			}
		})
	}
}

func TestUnknownFieldsAreIgnored(t *testing.T) {
	var f mpimv1.ClientFrame
	if err := frame.JSON.DecodeClient(false, []byte(`{"id":"1","ping":{},"futureField":true}`), &f); err != nil || f.GetPing() == nil {
		t.Fatalf("decoded %v, %v", &f, err)
	}
	if err := frame.JSON.DecodeClient(false, []byte(`{"id":"2","teleport":{}}`), &f); err != nil || f.GetRequest() != nil || f.GetId() != 2 {
		t.Fatalf("decoded %v, %v; want an empty request", &f, err)
	}
}

func TestSubprotocols(t *testing.T) {
	for _, s := range frame.Subprotocols() {
		enc, ok := frame.ForSubprotocol(s)
		if !ok || enc.String() != s {
			t.Fatalf("%q -> %v %v", s, enc, ok)
		}
	}
	if _, ok := frame.ForSubprotocol(""); ok {
		t.Fatal("no subprotocol has an encoding")
	}
}
