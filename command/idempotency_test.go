package command_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/mpim/mpim/command"
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
