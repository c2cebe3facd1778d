package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// With --codec json every connection speaks the text subprotocol: register,
// login and send are answered over it and the run's sends are acked (the
// in-process gateway has no projectors, so nothing is delivered and the
// audit fails on exactly those deliveries).
func TestRunWithJSONClients(t *testing.T) {
	env := gatewaytest.New(t)
	r := newRunner(&Config{Scenario: "pairs", Codec: "json", Gateways: []string{env.URL}, Users: 2, Setup: 2,
		TextBytes: 1, PlotInterval: time.Second, Password: "bench-password"}, nil)
	if err := r.setup(gatewaytest.Ctx(t), true); err != nil {
		t.Fatal(err)
	}
	for _, cl := range r.clients {
		if got := cl.c.WebSocket().Subprotocol(); got != frame.SubprotocolJSON || cl.c.Encoding() != frame.JSON {
			t.Fatalf("client %d speaks %q (%v), want %q", cl.idx, got, cl.c.Encoding(), frame.SubprotocolJSON)
		}
	}
	r.closeAll()

	rep, err := runBench(t, env.URL, "--codec", "json")
	wantAuditFailure(t, rep, err)
	if rep.Codec != "json" || rep.TotalSends == 0 || rep.TotalAcked != rep.TotalSends || rep.SendErrors != 0 {
		t.Fatalf("codec %q, sent %d, acked %d, errors %d (%s): want every send acked", rep.Codec, rep.TotalSends, rep.TotalAcked, rep.SendErrors, rep.FirstError)
	}
	if want := (AuditResult{AckedNotDelivered: int(rep.TotalAcked)}); rep.Audit != want {
		t.Fatalf("audit = %+v, want %+v (no projectors: only the deliveries missing)", rep.Audit, want)
	}
}

// A JSON client gets the event of a push decoded in the push (no
// envelope): it is audited as a binary client's is, duplicates included.
func TestJSONPushIsAudited(t *testing.T) {
	r := newRunner(&Config{Scenario: "pairs", Codec: "json", TextBytes: 1, PlotInterval: time.Second, AckInterval: time.Second}, nil)
	r.clients = []*client{{idx: 0, audit: newDeviceAudit()}, {idx: 1, audit: newDeviceAudit()}}
	r.from.Store(1)
	r.to.Store(1 << 62)
	bin := pushFrame(t, r, 0, 0, 1).GetPush()
	ev := &mpimv1.Event{}
	if err := proto.Unmarshal(bin.GetEnvelope(), ev); err != nil {
		t.Fatal(err)
	}
	text, err := frame.JSON.EncodeServer(&mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{
		InboxId: bin.GetInboxId(), Type: bin.GetType(), Event: ev}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is a duplicate
		f := &mpimv1.ServerFrame{}
		if err := frame.JSON.DecodeServer(false, text, f); err != nil {
			t.Fatal(err)
		}
		r.onFrame(r.clients[1], f)
	}
	if e := r.firstErr.Load(); e != nil {
		t.Fatalf("error: %s", *e)
	}
	if r.delivered.Load() != 1 || r.delHist.TotalCount() != 1 {
		t.Fatalf("delivered %d, latency samples %d: want the JSON push counted once", r.delivered.Load(), r.delHist.TotalCount())
	}
	a := r.clients[1].audit
	if _, ok := a.seen[string(ev.GetId())]; !ok || a.duplicates != 1 || a.delivered[ev.GetMessageSent().GetClientMsgId()] != string(ev.GetId()) {
		t.Fatalf("audit %+v: want the event once under id %q and one duplicate", a, ev.GetId())
	}
}

// A --cpuprofile that cannot be written stops the run before it starts,
// with exit status 2.
func TestBadCPUProfilePathIsRefused(t *testing.T) {
	err := run(t.Context(), []string{"--gateways", "ws://127.0.0.1:1/ws", "--cpuprofile", t.TempDir() + "/missing/cpu.prof"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cpuprofile") || exitCode(err) != 2 {
		t.Fatalf("run = %v (exit %d), want a cpuprofile error (exit 2)", err, exitCode(err))
	}
}
