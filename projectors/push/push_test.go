package push_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/push/webhook"
)

// TestOfflineDevicesWithATokenAreToldOnce: a message to each of four users
// reaches, as exactly one signed call each, only the devices that have a
// token and no live route, and nothing in a muted conversation.
func TestOfflineDevicesWithATokenAreToldOnce(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	carol := e.user(t, "carol", "Carol", []domain.DeviceID{"phone"}, "phone")
	dave := e.user(t, "dave", "Dave", []domain.DeviceID{"phone", "laptop"}, "phone", "laptop")
	erin := e.user(t, "erin", "Erin", []domain.DeviceID{"phone"}, "phone")
	direct := func(u domain.UserID) domain.ConversationID { return domain.DirectConversation(alice.User, u) }
	e.must(t)(e.w.Svc.MuteConversation(e.ctx, erin, direct(erin.User), time.Time{}, true))
	e.online(t, carol.User, "phone")
	e.online(t, dave.User, "laptop")
	p := e.projector(t, push.StartHead)
	e.run(t, p) // starts at the head: the set-up above is not pushed

	sent := e.send(t, alice, direct(bob.User), "hello bob")
	for _, u := range []domain.UserID{carol.User, dave.User, erin.User} {
		e.send(t, alice, direct(u), "hello")
	}
	e.run(t, p)

	byUser := map[domain.UserID][]call{}
	for _, c := range e.recv.taken() {
		checkSigned(t, c)
		byUser[c.p.User] = append(byUser[c.p.User], c)
	}
	t.Run("an offline user with a token gets one call with the message's fields", func(t *testing.T) {
		calls := byUser[bob.User]
		if len(calls) != 1 {
			t.Fatalf("bob got %d calls, want 1", len(calls))
		}
		c := calls[0]
		part := e.w.Store.PartitionOf(direct(bob.User).PartitionKey())
		want := webhook.Payload{User: bob.User, Devices: []webhook.Device{{ID: "phone", Platform: "apns", Token: "tok-phone", AppID: "com.example.chat"}},
			Conversation: direct(bob.User), Sender: alice.User, Preview: "Alice", EventID: push.EventID(part, sent.Position, bob.User),
			Seq: int64(sent.Seq), UnreadBadge: new(int64(1)), Count: 1}
		if !reflect.DeepEqual(c.p, want) {
			t.Errorf("bob's call\n%+v, want\n%+v", c.p, want)
		}
		if got := c.header.Get(webhook.HeaderIdempotency); got != want.EventID {
			t.Errorf("idempotency key %q, want %q", got, want.EventID)
		}
	})
	t.Run("a user online on their only device gets none", func(t *testing.T) {
		if n := len(byUser[carol.User]); n != 0 {
			t.Errorf("carol got %d calls", n)
		}
	})
	t.Run("a user online on one device gets a call naming only the offline one", func(t *testing.T) {
		calls := byUser[dave.User]
		if len(calls) != 1 {
			t.Fatalf("dave got %d calls, want 1", len(calls))
		}
		if got := calls[0].p.Devices; len(got) != 1 || got[0].ID != "phone" {
			t.Errorf("dave's call names %+v, want the phone only", got)
		}
	})
	t.Run("a muted conversation gets none", func(t *testing.T) {
		if n := len(byUser[erin.User]); n != 0 {
			t.Errorf("erin got %d calls", n)
		}
	})
	t.Run("nobody else is called", func(t *testing.T) {
		if n := len(e.recv.taken()); n != 2 {
			t.Errorf("%d calls in all, want 2 (bob, dave)", n)
		}
	})
}

// TestGroupMessageAndFriendRequestTellEachRecipient: a group message tells
// every member but the sender, with a key of their own, and a friend
// request tells its recipient.
func TestGroupMessageAndFriendRequestTellEachRecipient(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", []domain.DeviceID{"laptop"}, "laptop") // the sender is never told
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	carol := e.user(t, "carol", "Carol", []domain.DeviceID{"phone"}, "phone")
	g, _, err := e.w.Svc.CreateGroup(e.ctx, alice, "g", []domain.UserID{bob.User, carol.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := e.projector(t, push.StartHead)
	e.run(t, p)
	e.send(t, alice, domain.GroupConversation(g), "hi all")
	e.run(t, p) // bob's calls would collapse into one within the window
	if _, err := e.w.Svc.Contact(e.ctx, carol, bob.User, domain.RequestFriend{From: carol.User, To: bob.User, Message: "hey"}); err != nil {
		t.Fatal(err)
	}
	e.run(t, p)
	keys := map[string]bool{}
	var group, friend []domain.UserID
	for _, c := range e.recv.taken() {
		checkSigned(t, c)
		keys[c.header.Get(webhook.HeaderIdempotency)] = true
		if c.p.Conversation == "" {
			friend = append(friend, c.p.User)
		} else {
			group = append(group, c.p.User)
		}
	}
	if len(group) != 2 || group[0] == group[1] || group[0] == alice.User || group[1] == alice.User {
		t.Errorf("group message told %v, want bob and carol", group)
	}
	if !reflect.DeepEqual(friend, []domain.UserID{bob.User}) {
		t.Errorf("friend request told %v, want bob", friend)
	}
	if len(keys) != 3 {
		t.Errorf("%d distinct idempotency keys over 3 calls", len(keys))
	}
}

// TestStartedAtHeadSendsNothingOld: a push projector started on a log with
// messages begins at its head (old messages are not pushed, the checkpoint
// is the head at once); a message after that is pushed.
func TestStartedAtHeadSendsNothingOld(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	conv := domain.DirectConversation(alice.User, bob.User)
	for range 3 {
		e.send(t, alice, conv, "old")
	}
	head := projectorstest.Heads(e.ctx, t, e.w.Store)
	p := e.projector(t, push.StartHead)
	for part, want := range head {
		got, err := p.Claim(e.ctx, part, 1)
		if err != nil || got != want {
			t.Fatalf("claim of partition %d = %s, %v; want the head %s", part, got, err, want)
		}
	}
	e.run(t, p)
	if n := len(e.recv.taken()); n != 0 {
		t.Fatalf("%d calls for old messages", n)
	}
	e.send(t, alice, conv, "new")
	e.run(t, p)
	if calls := e.recv.taken(); len(calls) != 1 || calls[0].p.Seq != 4 {
		t.Fatalf("calls after a new message: %+v, want one of seq 4", calls)
	}
}

// TestStartedAtZeroSendsOld: StartZero pushes what the log holds.
func TestStartedAtZeroSendsOld(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	e.send(t, alice, domain.DirectConversation(alice.User, bob.User), "old")
	e.run(t, e.projector(t, push.StartZero))
	if calls := e.recv.taken(); len(calls) != 1 || calls[0].p.User != bob.User {
		t.Fatalf("calls %+v, want one to bob", calls)
	}
}

// TestCheckpointWaitsForTheCall: while the receiver has not answered, the
// checkpoint stays before the message; once it answers, it moves past.
func TestCheckpointWaitsForTheCall(t *testing.T) {
	hold := make(chan struct{})
	e := newEnv(t, hold)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	p := e.projector(t, push.StartHead)
	e.run(t, p)
	conv := domain.DirectConversation(alice.User, bob.User)
	part := e.w.Store.PartitionOf(conv.PartitionKey())
	before, err := p.Checkpoint(e.ctx, part)
	if err != nil {
		t.Fatal(err)
	}
	sent := e.send(t, alice, conv, "hello")
	r, err := projectors.NewRunner(e.w.Store, &projectors.Static{}, p, projectors.RunnerConfig{Block: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	select {
	case <-e.recv.got:
	case <-e.ctx.Done():
		t.Fatal("the receiver got no call")
	}
	if got, err := p.Checkpoint(e.ctx, part); err != nil || got != before {
		t.Fatalf("checkpoint %s, %v while the call is unanswered; want %s", got, err, before)
	}
	close(hold)
	for {
		got, err := p.Checkpoint(e.ctx, part)
		if err != nil {
			t.Fatal(err)
		}
		if got.Compare(sent.Position) >= 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatalf("checkpoint %s never passed the message at %s", got, sent.Position)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestFencedBatchSendsNothing: a batch under an older token than the one
// claimed is refused before anything is sent.
func TestFencedBatchSendsNothing(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	p := e.projector(t, push.StartZero)
	conv := domain.DirectConversation(alice.User, bob.User)
	part := e.w.Store.PartitionOf(conv.PartitionKey())
	e.send(t, alice, conv, "hello")
	e.run(t, e.projector(t, push.StartZero)) // everything so far is pushed
	before := len(e.recv.taken())
	after, err := p.Claim(e.ctx, part, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	e.send(t, alice, conv, "again")
	recs, err := e.w.Store.Tail(e.ctx, part, after, 10, 0)
	if err != nil || len(recs) == 0 {
		t.Fatalf("tail: %d entries, %v", len(recs), err)
	}
	b := &projectors.Batch{Partition: part, Token: 1, After: after, To: recs[len(recs)-1].Position, Events: recs}
	if err := p.Apply(e.ctx, b); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("stale apply: %v, want ErrFenced", err)
	}
	b.Token, b.After = 1<<40, eventstore.Position{Ms: 1}
	if err := p.Apply(e.ctx, b); !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("apply after another position: %v, want ErrCheckpointMoved", err)
	}
	if n := len(e.recv.taken()); n != before {
		t.Fatalf("%d calls after refused batches, want %d", n, before)
	}
}

// TestConfigRefusesBadValues: every bad setting is reported.
func TestConfigRefusesBadValues(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		name string
		cfg  push.Config
		want string
	}{
		{"unknown start", push.Config{Start: "tail"}, "start must be head or zero"},
		{"negative max recipients", push.Config{MaxRecipients: -1}, "max recipients must be 1..100000"},
		{"too many recipients", push.Config{MaxRecipients: 100_001}, "max recipients must be 1..100000"},
		{"linger beyond a second", push.Config{Linger: 1001 * time.Millisecond}, "linger must be at most 1s, got 1.001s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := push.New(e.w.RDB, e.dir, e.sender, e.w.Store, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want %q", err, c.want)
			}
		})
	}
	t.Run("missing dependencies", func(t *testing.T) {
		if _, err := push.New(nil, nil, nil, nil, push.Config{}); err == nil {
			t.Error("New without dependencies succeeded")
		}
	})
	if _, err := push.ParseStart("HEAD"); err == nil {
		t.Error("ParseStart(HEAD) succeeded")
	}
}
