package command_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
)

// Two retries of one send (the same sender and client message id) arrive at
// the same moment, from the same device or from two devices of the sender
// (as after a reconnect that raced the first connection's end): exactly one
// message is appended, and both are answered with its event id and seq,
// one as the original and the other as a duplicate. Each round starts both
// sends together; group commit puts them in one script call or two, and
// the idempotency record must hold either way.
func TestConcurrentRetriesOfOneSendAppendOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob, conv := e.directPair(t)
	laptop := alice
	laptop.Device = "laptop"
	const rounds = 40
	for i := range rounds {
		// Even rounds: the same device twice; odd rounds: two devices.
		actors := [2]command.Actor{alice, alice}
		if i%2 == 1 {
			actors[1] = laptop
		}
		msg := domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: fmt.Sprint("retried ", i), ClientMsgID: fmt.Sprint("retry-", i)}
		var res [2]command.Sent
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for j := range 2 {
			wg.Go(func() {
				<-start
				res[j], errs[j] = e.svc.Send(ctx, actors[j], msg)
			})
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", i, errs[0], errs[1])
		}
		a, b := res[0], res[1]
		if a.EventID != b.EventID || a.Seq != b.Seq || a.Position != b.Position || a.Seq != uint64(i+1) {
			t.Fatalf("round %d: answered %x seq %d at %v and %x seq %d at %v; want one message, seq %d",
				i, a.EventID, a.Seq, a.Position, b.EventID, b.Seq, b.Position, i+1)
		}
		if a.Duplicate == b.Duplicate {
			t.Fatalf("round %d: duplicate %v and %v; want exactly one original", i, a.Duplicate, b.Duplicate)
		}
	}
	// Nothing else was appended: the conversation's head is at the last
	// round's message, and its stream holds one event per round.
	v, seq, err := e.store.Version(ctx, conv.PartitionKey(), string(conv))
	if err != nil || v != rounds || seq != rounds {
		t.Fatalf("conversation head: version %d, seq %d, %v; want %d messages", v, seq, err, rounds)
	}
	// bob's reply continues the conversation right after them.
	reply, err := e.svc.Send(ctx, bob, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "all of them?", ClientMsgID: "retry-0"})
	if err != nil || reply.Duplicate || reply.Seq != rounds+1 {
		t.Fatalf("bob's send with alice's client message id: %+v, %v; want a new message (the key is per sender)", reply, err)
	}
}

// A send without a client message id writes no idempotency record; a send
// with one writes one, and its retry is answered with the original ack.
func TestSendWithoutClientIDWritesNoIdempotencyRecord(t *testing.T) {
	w := commandtest.New(t, commandtest.Options{})
	ctx := context.Background()
	alice := commandtest.Register(t, w.Svc, "alice", "alice")
	bob := commandtest.Register(t, w.Svc, "bob", "bob")
	conv := domain.DirectConversation(alice.User, bob.User)
	records := func() []string {
		t.Helper()
		keys, err := w.RDB.Keys(ctx, w.Prefix+"{p*}:i:send:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	if _, err := w.Svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "no id"}); err != nil {
		t.Fatal(err)
	}
	if r := records(); len(r) != 0 {
		t.Fatalf("a send without a client message id wrote %v", r)
	}
	msg := domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "with id", ClientMsgID: "c1"}
	first, err := w.Svc.Send(ctx, alice, msg)
	if err != nil {
		t.Fatal(err)
	}
	if r := records(); len(r) != 1 {
		t.Fatalf("idempotency records after a send with a client message id: %v; want one", r)
	}
	again, err := w.Svc.Send(ctx, alice, msg)
	if err != nil || !again.Duplicate || again.EventID != first.EventID || again.Seq != first.Seq || again.Position != first.Position || !again.SentAt.Equal(first.SentAt) {
		t.Fatalf("retry: %+v, %v; want the original %+v", again, err, first)
	}
}
