package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// nextResponse returns the next unsolicited response of c (the answer to a
// frame sent with SendRaw).
func nextResponse(tb testing.TB, c *gatewaytest.Client) *mpimv1.Response {
	tb.Helper()
	f, err := c.Next(gatewaytest.Ctx(tb))
	if err != nil {
		tb.Fatal(err)
	}
	if f.GetResponse() == nil {
		tb.Fatalf("got %v, want a response", f)
	}
	return f.GetResponse()
}

func TestBadInputIsAnsweredAndOthersKeepWorking(t *testing.T) {
	e := gatewaytest.New(t)
	bystander := e.Login(t, frame.Proto, "bystander")
	ctx := gatewaytest.Ctx(t)

	// A proto frame with id 7 whose text field holds invalid UTF-8.
	badUTF8 := protowire.AppendTag(nil, 1, protowire.VarintType)
	badUTF8 = protowire.AppendVarint(badUTF8, 7)
	reg := protowire.AppendTag(nil, 1, protowire.BytesType) // RegisterRequest.username
	reg = protowire.AppendBytes(reg, []byte("bob\xff"))
	badUTF8 = protowire.AppendTag(badUTF8, 10, protowire.BytesType) // ClientFrame.register
	badUTF8 = protowire.AppendBytes(badUTF8, reg)
	// A proto frame with id 9 and only a field this server does not know.
	unknown := protowire.AppendTag(nil, 1, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 9)
	unknown = protowire.AppendTag(unknown, 999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte{1, 2, 3})

	for _, tc := range []struct {
		name   string
		enc    frame.Encoding
		binary bool
		data   []byte
		code   string
		id     uint64
	}{
		{"garbage bytes", frame.Proto, true, []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x01}, "bad_frame", 0},
		{"text frame on a binary connection", frame.Proto, false, []byte(`{"id":"1","ping":{}}`), "bad_frame", 0},
		{"invalid UTF-8 in a proto string", frame.Proto, true, badUTF8, "bad_frame", 7},
		{"unknown proto request", frame.Proto, true, unknown, "unknown_request", 9},
		{"empty proto frame", frame.Proto, true, nil, "unknown_request", 0},
		{"truncated JSON", frame.JSON, false, []byte(`{"id": 3, "ping": `), "bad_frame", 0},
		{"not JSON at all", frame.JSON, false, []byte("\x00\x01hello"), "bad_frame", 0},
		{"invalid UTF-8 text", frame.JSON, false, []byte("{\"id\":\"4\",\"register\":{\"username\":\"b\xffb\"}}"), "bad_frame", 4},
		{"binary frame on a JSON connection", frame.JSON, true, []byte{1, 2, 3}, "bad_frame", 0},
		{"unknown JSON request", frame.JSON, false, []byte(`{"id":"5","teleport":{"to":"mars"}}`), "unknown_request", 5},
		{"request before login", frame.JSON, false, []byte(`{"id":"6","listFriends":{}}`), "unauthenticated", 6},
		{"wrong JSON type", frame.JSON, false, []byte(`{"id":"8","send":{"text":17}}`), "bad_frame", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.Dial(t, tc.enc)
			if err := c.SendRaw(ctx, tc.binary, tc.data); err != nil {
				t.Fatal(err)
			}
			r := nextResponse(t, c)
			if r.GetError().GetCode() != tc.code || r.GetId() != tc.id {
				t.Fatalf("response %v, want error %q for id %d", r, tc.code, tc.id)
			}
			gatewaytest.Ping(t, c) // the connection itself keeps working
			gatewaytest.Ping(t, bystander.Conn)
		})
	}

	t.Run("oversized frame closes 1009 with a reason", func(t *testing.T) {
		c := e.Dial(t, frame.JSON)
		big := `{"id":"1","register":{"username":"` + strings.Repeat("x", 70<<10) + `"}}`
		_ = c.SendRaw(ctx, false, []byte(big)) // the server may close mid-write; the close status is what is checked
		<-c.Done()
		if code, reason := c.CloseStatus(); code != websocket.StatusMessageTooBig || reason == "" {
			t.Fatalf("closed with %v %q (%v)", code, reason, c.Err())
		}
		gatewaytest.Ping(t, bystander.Conn)
	})

	t.Run("no subprotocol closes with a reason", func(t *testing.T) {
		c, err := gatewaytest.Dial(ctx, e.URL, frame.JSON, &gatewaytest.Options{Subprotocols: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		<-c.Done()
		if code, reason := c.CloseStatus(); code != websocket.StatusPolicyViolation || !strings.Contains(reason, "mpim.v1") {
			t.Fatalf("closed with %v %q (%v)", code, reason, c.Err())
		}
		gatewaytest.Ping(t, bystander.Conn)
	})

	// Every decoding failure was counted under its code.
	if n := gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_errors_total", "code", "bad_frame"); n < 7 {
		t.Fatalf("mpim_gateway_errors_total{code=bad_frame} = %v", n)
	}
}

func TestRateLimits(t *testing.T) {
	t.Run("per connection", func(t *testing.T) {
		e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.ConnRate, c.ConnBurst = 0.01, 5 })
		c := e.Dial(t, frame.JSON)
		for range 5 {
			gatewaytest.Ping(t, c)
		}
		er := gatewaytest.Fails(t, c, "rate_limited", gatewaytest.PingReq)
		if er.GetRetryAfterMs() == 0 {
			t.Fatalf("rate_limited without retry_after_ms: %v", er)
		}
		gatewaytest.Ping(t, e.Dial(t, frame.JSON)) // another connection has its own bucket
	})
	t.Run("per user across connections", func(t *testing.T) {
		e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.UserRate, c.UserBurst = 0.01, 8 })
		a := e.Login(t, frame.Proto, "frank") // 2 requests of a's bucket
		b := e.Dial(t, frame.Proto)
		gatewaytest.OK(t, b, gatewaytest.LoginReq("frank", "password-frank", "d2")) // 1 of b's
		used := 0
		for ; used < 8; used++ { // the user's bucket of 8
			c := a.Conn
			if used%2 == 1 {
				c = b
			}
			if r := gatewaytest.Call(t, c, gatewaytest.PingReq); r.GetError() != nil {
				break
			}
		}
		if used != 8 {
			t.Fatalf("the user's bucket held %d requests, want 8", used)
		}
		gatewaytest.Fails(t, b, "rate_limited", gatewaytest.PingReq)
		other := e.Login(t, frame.Proto, "grace")
		gatewaytest.Ping(t, other.Conn)
	})
}

func TestAcknowledgementsOfPushesAreNotRateLimited(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.ConnRate, c.ConnBurst = 0.01, 3 })
	u := e.Login(t, frame.Proto, "quinn") // 2 of the connection's 3 tokens
	dev := e.Hub.Device(t, u.ID, u.Device)
	for i := range 5 {
		id := "7-" + itoa(i)
		if err := dev.Sink.Push(gateway.Delivery{InboxID: id, Type: "MessageSent"}); err != nil {
			t.Fatal(err)
		}
		if f, err := u.Conn.Next(gatewaytest.Ctx(t)); err != nil || f.GetPush().GetInboxId() != id {
			t.Fatalf("frame %v, %v", f, err)
		}
		gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: id}})
	}
	gatewaytest.Ping(t, u.Conn)                                                                                    // the last token
	gatewaytest.Fails(t, u.Conn, "rate_limited", &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: "7-4"}}) // covers nothing new
}

func TestSlowClientIsDisconnected(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.SendQueue = 8
		c.WriteTimeout = time.Minute // the queue, not the write timeout, must trip
	})
	other := e.Login(t, frame.JSON, "henry")
	dev := stalledDevice(t, e, "ivy") // stops reading after its first frame
	envelope := make([]byte, 32<<10)
	pushed := 0
	for ; pushed < 100_000; pushed++ {
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "1-" + itoa(pushed), Type: "MessageSent", Envelope: envelope}); err != nil {
			break
		}
	}
	if pushed == 100_000 {
		t.Fatal("the send queue never filled")
	}
	gatewaytest.Eventually(t, "the slow client's detach", func() bool { d, _, _ := dev.State(); return d })
	if _, clean, _ := dev.State(); clean {
		t.Fatal("a slow client was detached cleanly")
	}
	if n := gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_slow_client_disconnects_total", "", ""); n != 1 {
		t.Fatalf("slow client disconnects = %v, want 1", n)
	}
	gatewaytest.Ping(t, other.Conn)
}

func TestPushAckAndSignals(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := gatewaytest.New(t)
		u := e.Login(t, enc, "jack")
		dev := e.Hub.Device(t, u.ID, u.Device)
		ev := &mpimv1.Event{Id: make([]byte, 16), Aggregate: "d/x", Version: 3, Seq: 2,
			Payload: &mpimv1.Event_MessageSent{MessageSent: &mpimv1.MessageSent{ConversationId: "d/x", Text: "hi"}}}
		envelope, err := protoMarshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "1700000000000-0", Type: "MessageSent", Envelope: envelope}); err != nil {
			t.Fatal(err)
		}
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "1700000000000-1", Type: "MessageSent", Envelope: envelope, Resend: true}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			f, err := u.Conn.Next(gatewaytest.Ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			p := f.GetPush()
			if p == nil || p.GetType() != "MessageSent" || p.GetResend() != (i == 1) {
				t.Fatalf("frame %v, want push %d", f, i)
			}
			got := p.GetEvent()
			if enc == frame.Proto {
				if p.GetEvent() != nil {
					t.Fatal("a binary push carries the decoded event")
				}
				got = &mpimv1.Event{}
				if err := protoUnmarshal(p.GetEnvelope(), got); err != nil {
					t.Fatal(err)
				}
			} else if len(p.GetEnvelope()) != 0 {
				t.Fatal("a JSON push carries the envelope bytes")
			}
			if got.GetMessageSent().GetText() != "hi" || got.GetSeq() != 2 {
				t.Fatalf("pushed event %v", got)
			}
		}
		gatewaytest.Fails(t, u.Conn, "invalid", &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: "yesterday"}})
		gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: "1700000000000-1"}})
		if _, _, acks := dev.State(); len(acks) != 1 || acks[0] != "1700000000000-1" {
			t.Fatalf("acks %v", acks)
		}
		if n := histogramCount(t, e.Registry, "mpim_gateway_push_ack_latency_seconds"); n != 1 {
			t.Fatalf("ack latency observations = %d, want 1 (the resend is not timed)", n)
		}

		if err := dev.Sink.SyncRequired("1-0"); err != nil {
			t.Fatal(err)
		}
		if err := dev.Sink.Signal(gateway.Signal{From: "u/x", Kind: gateway.SignalTyping, Payload: []byte("d/x")}); err != nil {
			t.Fatal(err)
		}
		f, _ := u.Conn.Next(gatewaytest.Ctx(t))
		if f.GetSyncRequired().GetCursor() != "1-0" {
			t.Fatalf("frame %v, want sync_required", f)
		}
		f, _ = u.Conn.Next(gatewaytest.Ctx(t))
		if s := f.GetSignal(); s.GetKind() != "typing" || s.GetConversationId() != "d/x" || s.GetFromUserId() != "u/x" {
			t.Fatalf("frame %v, want a typing signal", f)
		}

		// After logout the old attachment delivers nothing.
		gatewaytest.OK(t, u.Conn, &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "1700000000001-0", Type: "MessageSent", Envelope: envelope}); err == nil {
			t.Fatal("a detached sink accepted a push")
		}
	})
}

func TestDeliveriesWaitForTheLoginResponse(t *testing.T) {
	e := gatewaytest.New(t)
	e.Hub.SetOnAttach(func(s gateway.Sink) {
		_ = s.Push(gateway.Delivery{InboxID: "5-0", Type: "MessageSent", Envelope: nil}) // a lost push fails the wait for it below
	})
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "kate", Password: "password-kate"}})
	// Send the login without waiting, then read frames in order.
	if err := c.Send(gatewaytest.Ctx(t), &mpimv1.ClientFrame{Id: 99, Request: gatewaytest.LoginReq("kate", "password-kate", "d1")}); err != nil {
		t.Fatal(err)
	}
	first, _ := c.Next(gatewaytest.Ctx(t))
	second, _ := c.Next(gatewaytest.Ctx(t))
	if first.GetResponse().GetId() != 99 || first.GetResponse().GetLogin() == nil || second.GetPush().GetInboxId() != "5-0" {
		t.Fatalf("frames %v then %v, want the login response then the push", first, second)
	}
}

func TestGracefulShutdown(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.DrainGrace = time.Minute })
	leaver := e.Login(t, frame.JSON, "liam")
	stayer := e.Login(t, frame.Proto, "mia")
	anon := e.Dial(t, frame.JSON)
	// A round trip: the server has registered the session (Dial returns
	// after the handshake, possibly before), so Shutdown sends it a Goaway
	// rather than refusing it as a connection that arrived while draining.
	gatewaytest.OK(t, anon, gatewaytest.PingReq)
	dev := e.Hub.Device(t, leaver.ID, leaver.Device)
	for i := range 3 {
		if err := dev.Sink.Push(gateway.Delivery{InboxID: "9-" + itoa(i), Type: "MessageSent"}); err != nil {
			t.Fatal(err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Server.Shutdown(shutdownCtx) }()

	// The queued pushes come first, then the Goaway.
	for i := range 3 {
		f, err := leaver.Conn.Next(gatewaytest.Ctx(t))
		if err != nil || f.GetPush().GetInboxId() != "9-"+itoa(i) {
			t.Fatalf("frame %v, %v; want push %d", f, err, i)
		}
	}
	for _, c := range []*gatewaytest.Client{leaver.Conn, stayer.Conn, anon} {
		f, err := c.Next(gatewaytest.Ctx(t))
		if err != nil || !f.GetGoaway().GetReconnect() || f.GetGoaway().GetReason() == "" {
			t.Fatalf("frame %v, %v; want a goaway asking to reconnect", f, err)
		}
	}
	// New connections are refused while draining; clients still get answers
	// (their last acks) until they leave.
	if _, err := gatewaytest.Dial(gatewaytest.Ctx(t), e.URL, frame.JSON, nil); err == nil {
		t.Fatal("a draining gateway accepted a connection")
	}
	gatewaytest.OK(t, leaver.Conn, &mpimv1.ClientFrame_Ack{Ack: &mpimv1.AckRequest{InboxId: "9-2"}})
	for _, c := range []*gatewaytest.Client{leaver.Conn, stayer.Conn, anon} {
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if detached, clean, acks := dev.State(); !detached || !clean || len(acks) != 1 {
		t.Fatalf("after shutdown: detached %v clean %v acks %v", detached, clean, acks)
	}
}

func TestShutdownClosesClientsThatStay(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.DrainGrace = 100 * time.Millisecond })
	u := e.Login(t, frame.Proto, "noah")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	<-u.Conn.Done()
	if code, _ := u.Conn.CloseStatus(); code != websocket.StatusGoingAway {
		t.Fatalf("closed with %v (%v), want 1001", code, u.Conn.Err())
	}
	f, err := u.Conn.Next(gatewaytest.Ctx(t))
	if err != nil || f.GetGoaway() == nil {
		t.Fatalf("frame %v, %v; want the goaway before the close", f, err)
	}
	if f, err := u.Conn.Next(gatewaytest.Ctx(t)); err == nil {
		t.Fatalf("frame %v after the goaway, want the end", f)
	}
}
