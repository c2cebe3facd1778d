package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// Whole runs of mpim-bench against a gateway in process on the real write
// side (gateway/gatewaytest: real Redis and MariaDB, no projectors, so
// nothing is delivered), and the audit of a real log: runs whose sends fail
// or go unanswered, and a message appended twice, must fail the audit and
// exit with status 1.

// runBench runs mpim-bench's pairs scenario of 2 users against the gateway
// at url for at most 20 sends and 1 s of sending, with extra flags; it
// returns the report it wrote and run's error.
func runBench(t *testing.T, url string, extra ...string) (*Report, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "report.json")
	args := append([]string{"--gateways", url, "--scenario", "pairs", "--users", "2", "--messages", "20",
		"--warmup", "0s", "--duration", "1s", "--drain", "2s", "--progress", "1h", "--json", path}, extra...)
	err := run(gatewaytest.Ctx(t), args, io.Discard, io.Discard)
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatalf("run: %v; no report: %v", err, rerr)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep, err
}

// wantAuditFailure checks that err is a failed audit, which exits 1.
func wantAuditFailure(t *testing.T, rep *Report, err error) {
	t.Helper()
	if !errors.Is(err, errAuditFailed) || exitCode(err) != 1 {
		t.Fatalf("run = %v (exit %d), want a failed audit (exit 1); audit %+v", err, exitCode(err), rep.Audit)
	}
	if rep.AuditClean {
		t.Fatalf("report says the audit is clean: %+v", rep.Audit)
	}
}

// A gateway that answers every send with an error (too_large: its policy
// allows 50 bytes of text, the run sends 100).
func TestRunWithEverySendRefusedFails(t *testing.T) {
	rt := testsvc.Redis(t)
	env := gatewaytest.NewAt(t, rt.Addr, rt.Prefix, func(c *gateway.Config, d *gateway.Deps) {
		store, err := eventstore.Open(context.Background(), d.Redis, eventstore.Config{Prefix: c.Prefix, Partitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		p := domain.DefaultPolicy()
		p.MaxTextBytes = 50
		if d.Commands, err = command.New(store, command.Config{Policy: p}); err != nil {
			t.Fatal(err)
		}
	})
	rep, err := runBench(t, env.URL, "--text-bytes", "100")
	wantAuditFailure(t, rep, err)
	if rep.TotalSends == 0 || rep.TotalAcked != 0 || rep.Audit.SendErrors != int(rep.TotalSends) {
		t.Fatalf("sent %d, acked %d, audit %+v: want every send counted as an error", rep.TotalSends, rep.TotalAcked, rep.Audit)
	}
}

// A gateway whose rate limit leaves a connection the tokens of its register
// and login only: the first send is answered rate_limited with a retry
// after about 1,000 s, so it is still unanswered when the run ends.
func TestRunWithUnansweredSendsFails(t *testing.T) {
	env := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.ConnRate, c.ConnBurst = 0.001, 2
	})
	rep, err := runBench(t, env.URL)
	wantAuditFailure(t, rep, err)
	if rep.Audit.Unanswered == 0 || rep.Audit.SendErrors != 0 || rep.RateLimited == 0 {
		t.Fatalf("audit %+v, rate-limited %d: want the rate-limited send unanswered", rep.Audit, rep.RateLimited)
	}
}

// A message whose client message id is in the log under two event ids (the
// sender's idempotency key was lost between two sends) fails the audit when
// both events reach the devices.
func TestAuditFailsOnAMessageInTheLogTwice(t *testing.T) {
	env := gatewaytest.New(t)
	ctx := gatewaytest.Ctx(t)
	r := newRunner(&Config{Scenario: "pairs", TextBytes: 1, PlotInterval: time.Second, AckInterval: time.Second}, io.Discard)
	r.clients = []*client{{idx: 0, audit: newDeviceAudit()}, {idx: 1, audit: newDeviceAudit()}}
	r.from.Store(1)
	r.to.Store(1 << 62)
	var users [2]domain.UserID
	for i := range users {
		id, err := env.Commands.Register(ctx, fmt.Sprintf("%s-%d", r.prefix, i), "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA", "bench", fmt.Sprintf("reg-%s-%d", r.prefix, i))
		if err != nil {
			t.Fatal(err)
		}
		users[i] = id
	}
	cmid := r.clientMsgID(0, 0, time.Now().UnixNano())
	send := func() command.Sent {
		t.Helper()
		sent, err := env.Commands.Send(ctx, command.Actor{User: users[0], Device: "bench-0"}, domain.SendMessage{
			Conversation: domain.DirectConversation(users[0], users[1]), ClientMsgID: cmid, Kind: domain.KindText, Text: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return sent
	}
	first := send()
	var keys []string // SCAN, not KEYS: the Redis is shared
	it := env.Redis.Scan(ctx, 0, env.Prefix+"*i:send:*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil || len(keys) == 0 {
		t.Fatalf("idempotency keys %v: %v", keys, err)
	}
	if err := env.Redis.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if second := send(); second.Duplicate || second.EventID == first.EventID {
		t.Fatalf("second send %+v: want a second append", second)
	}

	// Push every event of the message in the log to the receiving device,
	// as the gateways would (the sending one gets no echo).
	pushed := 0
	for p := range env.Store.Partitions() {
		recs, err := env.Store.ReadPartition(ctx, p, eventstore.Position{}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Event.GetMessageSent().GetClientMsgId() != cmid {
				continue
			}
			envelope, err := proto.Marshal(rec.Event)
			if err != nil {
				t.Fatal(err)
			}
			pushed++
			f := &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Push{Push: &mpimv1.Push{
				InboxId: fmt.Sprintf("100-%d", pushed), Type: "MessageSent", Envelope: envelope}}}
			r.onFrame(r.clients[1], f)
		}
	}
	if pushed != 2 {
		t.Fatalf("the log holds %d events of the message, want 2", pushed)
	}
	r.clients[0].sends = []*sendRecord{{ClientMsgID: cmid, From: 0, Recipients: []int{1}, Acked: true, EventID: string(first.EventID[:])}}
	got := r.closeAndAudit()
	if want := (AuditResult{Reappended: 1}); got != want {
		t.Fatalf("audit = %+v, want %+v", got, want)
	}
}
