package command_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/proto/codec"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

type env struct {
	store *eventstore.Store
	svc   *command.Service
	clock *clock
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	c := &clock{now: time.Now().UTC()}
	w := commandtest.New(tb, commandtest.Options{Now: c.Now})
	return &env{store: w.Store, svc: w.Svc, clock: c}
}

func (e *env) register(tb testing.TB, name string) command.Actor {
	tb.Helper()
	return commandtest.Register(tb, e.svc, name, name)
}

// directPair registers alice and bob and returns them with their direct
// conversation.
func (e *env) directPair(tb testing.TB) (alice, bob command.Actor, conv domain.ConversationID) {
	tb.Helper()
	alice, bob = e.register(tb, "alice"), e.register(tb, "bob")
	return alice, bob, domain.DirectConversation(alice.User, bob.User)
}

func wantCode(tb testing.TB, err error, code domain.Code) {
	tb.Helper()
	if got := domain.ErrorCode(err); got != code {
		tb.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func TestConcurrentRegistrationsOfOneUsername(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			id, err := e.svc.Register(ctx, "Carol", "$argon2id$h", fmt.Sprint("carol ", i), "")
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(id)
			case domain.ErrorCode(err) != domain.EExists:
				t.Errorf("register: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d registrations won, want 1", wins.Load())
	}
	owner, err := e.svc.LookupUsername(ctx, "carol")
	if err != nil || owner != winner.Load().(domain.UserID) {
		t.Fatalf("lookup: %v %v, want %v", owner, err, winner.Load())
	}
	u, err := e.svc.User(ctx, owner)
	if err != nil || u.Username() != "carol" || !u.Registered() {
		t.Fatalf("user %+v, %v", u, err)
	}
}

func TestRegisterRetryReturnsSameUser(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a, err := e.svc.Register(ctx, "dave", "$h", "Dave", "req-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.svc.Register(ctx, "dave", "$h", "Dave", "req-1")
	if err != nil || a != b {
		t.Fatalf("retry returned %v, %v; want %v", b, err, a)
	}
	_, err = e.svc.Register(ctx, "dave", "$h", "Dave", "req-2")
	wantCode(t, err, domain.EExists)
	_, err = e.svc.Register(ctx, "no spaces allowed", "$h", "x", "")
	wantCode(t, err, domain.EInvalid)
}

func TestDirectMessagesAndBlocks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob, conv := e.directPair(t)
	first, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi bob", ClientMsgID: "m1"})
	if err != nil || first.Seq != 1 {
		t.Fatalf("send: %+v %v", first, err)
	}
	again, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi bob", ClientMsgID: "m1"})
	if err != nil || !again.Duplicate || again.Seq != 1 || again.EventID != first.EventID || !again.SentAt.Equal(first.SentAt) {
		t.Fatalf("retried send: %+v %v, original %+v", again, err, first)
	}
	reply, err := e.svc.Send(ctx, bob, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi alice"})
	if err != nil || reply.Seq != 2 {
		t.Fatalf("reply: %+v %v", reply, err)
	}
	carol := e.register(t, "carol")
	_, err = e.svc.Send(ctx, carol, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "intruder"})
	wantCode(t, err, domain.EForbidden)

	if _, err := e.svc.Contact(ctx, alice, bob.User, domain.Block{By: alice.User}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Send(ctx, bob, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "still there?"})
	wantCode(t, err, domain.EBlocked)
	if _, err := e.svc.Contact(ctx, alice, bob.User, domain.Unblock{By: alice.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Send(ctx, bob, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "back"}); err != nil {
		t.Fatal(err)
	}
}

func TestFriendRequestCannotBeAcceptedTwice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	if _, err := e.svc.Contact(ctx, alice, bob.User, domain.RequestFriend{From: alice.User, To: bob.User, Message: "hey"}); err != nil {
		t.Fatal(err)
	}
	var ok, noRequest atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, err := e.svc.Contact(ctx, bob, alice.User, domain.AcceptFriend{By: bob.User})
			switch domain.ErrorCode(err) {
			case "":
				ok.Add(1)
			case domain.ENoRequest, domain.EExists:
				noRequest.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d accepts succeeded, want 1", ok.Load())
	}
	rel, err := e.svc.Relationship(ctx, alice.User, bob.User)
	if err != nil || !rel.Friends() {
		t.Fatalf("not friends after accept: %v", err)
	}
}

// A member kicked while sending never has a message after the kick: the
// send's decision is guarded by the group version.
func TestNoMessageLandsAfterKick(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner, member := e.register(t, "owner"), e.register(t, "member")
	gid, _, err := e.svc.CreateGroup(ctx, owner, "team", []domain.UserID{member.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	conv := domain.GroupConversation(gid)
	stop := make(chan struct{})
	var sent atomic.Int32
	var wg sync.WaitGroup
	stopSenders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopSenders) // a failed wait below stops them too
	for w := range 4 {
		wg.Go(func() {
			for i := range 10_000 { // the kick ends them long before
				select {
				case <-stop:
					return
				default:
				}
				_, err := e.svc.Send(ctx, member, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: fmt.Sprint(w, "-", i)})
				switch domain.ErrorCode(err) {
				case "":
					sent.Add(1)
				case domain.ENotMember:
					return
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	// The kick comes while the member is sending.
	testsvc.Eventually(t, time.Minute, "20 messages sent", func() bool { return sent.Load() >= 20 })
	kick, err := e.svc.UpdateGroup(ctx, owner, gid, domain.KickMember{Actor: owner.User, Target: member.User})
	if err != nil {
		t.Fatal(err)
	}
	stopSenders()
	kickPos := kick.Events[0].Position
	// Group and conversation share a partition, so positions compare.
	p := e.store.PartitionOf(string(gid))
	var after eventstore.Position
	for {
		rs, err := e.store.ReadPartition(ctx, p, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		for _, r := range rs {
			_, ev, err := codec.Decode(r.Event)
			if err != nil {
				t.Fatal(err)
			}
			if ms, ok := ev.(domain.MessageSent); ok && ms.Sender == member.User && r.Position.Compare(kickPos) > 0 {
				t.Fatalf("message seq %d at %s landed after the kick at %s", r.Event.Seq, r.Position, kickPos)
			}
		}
		after = rs[len(rs)-1].Position
	}
	t.Logf("%d messages before the kick", sent.Load())
}

func TestGroupRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner, admin, member, outsider := e.register(t, "owner"), e.register(t, "admin"), e.register(t, "member"), e.register(t, "outsider")
	gid, _, err := e.svc.CreateGroup(ctx, owner, "team", []domain.UserID{admin.User, member.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	conv := domain.GroupConversation(gid)
	send := func(a command.Actor) error {
		_, err := e.svc.Send(ctx, a, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "x"})
		return err
	}
	if _, err := e.svc.UpdateGroup(ctx, owner, gid, domain.SetRole{Actor: owner.User, Target: admin.User, Role: domain.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send(outsider), domain.ENotMember)
	_, err = e.svc.UpdateGroup(ctx, member, gid, domain.RenameGroup{Actor: member.User, Name: "mine"})
	wantCode(t, err, domain.EForbidden)
	_, err = e.svc.UpdateGroup(ctx, member, gid, domain.KickMember{Actor: member.User, Target: admin.User})
	wantCode(t, err, domain.EForbidden)
	if _, err := e.svc.UpdateGroup(ctx, admin, gid, domain.MuteMember{Actor: admin.User, Target: member.User}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send(member), domain.EMuted)
	if err := send(admin); err != nil {
		t.Fatal(err)
	}
	// Recall: the sender within the window, an admin at any time, nobody else.
	res, err := e.svc.Send(ctx, owner, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "oops"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Recall(ctx, member, domain.RecallMessage{Conversation: conv, Seq: res.Seq})
	wantCode(t, err, domain.EForbidden)
	if _, err := e.svc.Recall(ctx, owner, domain.RecallMessage{Conversation: conv, Seq: res.Seq}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Recall(ctx, owner, domain.RecallMessage{Conversation: conv, Seq: res.Seq})
	wantCode(t, err, domain.EExists)
	_, err = e.svc.Recall(ctx, owner, domain.RecallMessage{Conversation: conv, Seq: 999})
	wantCode(t, err, domain.EInvalid) // beyond the conversation's last seq

	if _, err := e.svc.UpdateGroup(ctx, owner, gid, domain.DissolveGroup{Actor: owner.User}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, send(owner), domain.EDissolved)
	_, err = e.svc.UpdateGroup(ctx, owner, gid, domain.RenameGroup{Actor: owner.User, Name: "again"})
	wantCode(t, err, domain.EDissolved)
}

func TestRecallWindowAndCompetingChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob, conv := e.directPair(t)
	late, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "old"})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(e.svc.Policy().RecallWindow + time.Second)
	_, err = e.svc.Recall(ctx, alice, domain.RecallMessage{Conversation: conv, Seq: late.Seq})
	wantCode(t, err, domain.EWindowPassed)

	msg, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "new"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Recall(ctx, bob, domain.RecallMessage{Conversation: conv, Seq: msg.Seq})
	wantCode(t, err, domain.EForbidden)
	// Recalls and edits race; exactly one recall wins and no edit lands after it.
	var recalls atomic.Int32
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				_, err = e.svc.Recall(ctx, alice, domain.RecallMessage{Conversation: conv, Seq: msg.Seq})
				if err == nil {
					recalls.Add(1)
				}
			} else {
				_, err = e.svc.Edit(ctx, alice, domain.EditMessage{Conversation: conv, Seq: msg.Seq, Text: fmt.Sprint("edit ", i)})
			}
			if c := domain.ErrorCode(err); c != "" && c != domain.EExists && c != domain.ENotFound {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if recalls.Load() != 1 {
		t.Fatalf("%d recalls succeeded, want 1", recalls.Load())
	}
	_, err = e.svc.Edit(ctx, alice, domain.EditMessage{Conversation: conv, Seq: msg.Seq, Text: "after"})
	if c := domain.ErrorCode(err); c != domain.ENotFound {
		t.Fatalf("edit after recall: %v", err)
	}
}

func TestReaderEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob, conv := e.directPair(t)
	_, err := e.svc.MarkRead(ctx, bob, conv, 1)
	wantCode(t, err, domain.EInvalid) // no messages yet
	for range 3 {
		if _, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.MarkRead(ctx, bob, conv, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.DeleteForMe(ctx, bob, conv, 3); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{0, 4, domain.MaxSeq + 1, 1<<64 - 1} {
		_, err = e.svc.MarkRead(ctx, bob, conv, seq)
		wantCode(t, err, domain.EInvalid)
		_, err = e.svc.DeleteForMe(ctx, bob, conv, seq)
		wantCode(t, err, domain.EInvalid)
	}
	_, err = e.svc.MarkRead(ctx, bob, "d/garbage", 1)
	wantCode(t, err, domain.EInvalid)
}

func TestRecallAndEditBeyondTheLastSeqAreInvalid(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, _, conv := e.directPair(t)
	if _, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{2, domain.MaxSeq, 1<<64 - 1} {
		_, err := e.svc.Recall(ctx, alice, domain.RecallMessage{Conversation: conv, Seq: seq})
		wantCode(t, err, domain.EInvalid)
		_, err = e.svc.Edit(ctx, alice, domain.EditMessage{Conversation: conv, Seq: seq, Text: "x"})
		wantCode(t, err, domain.EInvalid)
	}
	if _, err := e.svc.Edit(ctx, alice, domain.EditMessage{Conversation: conv, Seq: 1, Text: "fixed"}); err != nil {
		t.Fatal(err)
	}
}

func TestConflictsAreRetriedTransparently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner := e.register(t, "owner")
	gid, _, err := e.svc.CreateGroup(ctx, owner, "team", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			u := e.register(t, fmt.Sprintf("joiner%02d", i))
			if _, err := e.svc.UpdateGroup(ctx, u, gid, domain.JoinGroup{User: u.User}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	g, err := e.svc.Group(ctx, gid)
	if err != nil || g.Len() != 21 {
		t.Fatalf("group has %d members, want 21 (%v)", g.Len(), err)
	}
	if errors.Is(err, domain.ErrConflict) {
		t.Fatal(err)
	}
}

// A refusal decided on another process's stale cache is decided again on
// fresh state: gateway A caches the group while carol is muted, gateway B
// lifts the mute, and carol's send through A goes through instead of being
// answered muted.
func TestStaleCachedRefusalIsDecidedAgainOnFreshState(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	other, err := command.New(e.store, command.Config{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	owner, carol := e.register(t, "owner"), e.register(t, "carol")
	gid, _, err := e.svc.CreateGroup(ctx, owner, "team", []domain.UserID{carol.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.UpdateGroup(ctx, owner, gid, domain.MuteMember{Actor: owner.User, Target: carol.User}); err != nil {
		t.Fatal(err)
	}
	conv := domain.GroupConversation(gid)
	send := domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hello"}
	// e.svc now caches the group with carol muted.
	_, err = e.svc.Send(ctx, carol, send)
	wantCode(t, err, domain.EMuted)
	if _, err := other.UpdateGroup(ctx, owner, gid, domain.UnmuteMember{Actor: owner.User, Target: carol.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Send(ctx, carol, send); err != nil {
		t.Fatalf("send after the mute was lifted elsewhere: %v", err)
	}
}
