package delivery_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	inboxproj "github.com/mpim/mpim/projectors/inbox"
)

// writePath is the real write side on e: the command service on the event
// store, and the inbox projector run by the runner until the test ends.
func writePath(tb testing.TB, e *env) *command.Service {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := eventstore.Open(ctx, e.rdb, eventstore.Config{Prefix: e.prefix, Partitions: 4})
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := command.New(store, command.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	proj, err := inboxproj.New(e.rdb, inboxproj.Config{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := projectors.NewRunner(store, &projectors.Static{}, proj, projectors.RunnerConfig{Block: 20 * time.Millisecond, BatchSize: 64})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("runner: %v", err)
		}
		store.Close()
	})
	return svc
}

func register(tb testing.TB, svc *command.Service, name string) command.Actor {
	tb.Helper()
	return commandtest.Register(tb, svc, name, name)
}

func TestWritePathReachesEveryDeviceInOrderWithVersionsAndSeqs(t *testing.T) {
	e := newEnv(t)
	svc := writePath(t, e)
	a, b := e.hub(t, "gw-a", nil, nil), e.hub(t, "gw-b", nil, nil)
	ctx := context.Background()
	alice, bob := register(t, svc, "alice"), register(t, svc, "bob")

	phone, laptop, desktop := newSink(), newSink(), newSink()
	dPhone := a.attach(t, bob.User, "phone", phone)
	autoAck(t, dPhone, phone)
	a.attach(t, bob.User, "laptop", laptop) // never acknowledges
	b.attach(t, alice.User, "desktop", desktop)

	if _, err := svc.Contact(ctx, alice, bob.User, domain.RequestFriend{From: alice.User, To: bob.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Contact(ctx, bob, alice.User, domain.AcceptFriend{By: bob.User}); err != nil {
		t.Fatal(err)
	}
	conv := domain.DirectConversation(alice.User, bob.User)
	const messages = 50
	for i := range messages {
		from := alice
		if i%3 == 2 {
			from = bob
		}
		if _, err := svc.Send(ctx, from, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}

	for name, c := range map[string]struct {
		s    *sink
		user domain.UserID
	}{"bob's phone": {phone, bob.User}, "bob's laptop": {laptop, bob.User}, "alice's desktop": {desktop, alice.User}} {
		var inbox []string
		c.s.waitFor(t, name, func() bool {
			msgs, err := e.rdb.XRange(ctx, e.keys.Inbox(c.user), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			inbox = inbox[:0]
			for _, m := range msgs {
				inbox = append(inbox, m.ID)
			}
			return len(inbox) >= messages+2 && slices.Equal(c.s.firsts(), inbox)
		})
		c.s.mu.Lock()
		var seqs []uint64
		for _, d := range c.s.pushes {
			ev := envelope(t, d)
			if ev.GetVersion() == 0 || string(ev.GetId()) != string(d.EventID[:]) {
				t.Errorf("%s: push %s of %s: version %d, id %x", name, d.InboxID, d.Type, ev.GetVersion(), ev.GetId())
			}
			if d.Type == "MessageSent" && !slices.Contains(seqs, ev.GetSeq()) { // an at-least-once retry may repeat one
				seqs = append(seqs, ev.GetSeq())
			}
		}
		c.s.mu.Unlock()
		if len(seqs) != messages || !slices.IsSorted(seqs) || seqs[0] != 1 {
			t.Errorf("%s: message seqs %v, want 1..%d in order", name, seqs, messages)
		}
	}
	last := phone.firsts()[len(phone.firsts())-1]
	waitFor(t, "the phone's cursor", nil, func() bool { return e.cursor(t, bob.User, "phone") == last })
	if got := e.cursor(t, bob.User, "laptop"); got != "" {
		t.Errorf("the laptop never acknowledged, yet its cursor is %q", got)
	}
}
