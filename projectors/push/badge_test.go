package push_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/query"
	"github.com/prometheus/client_golang/prometheus"
)

// lastBadge returns the unread badge of u's latest call, failing tb if u
// got no call since the n-th or the call has no badge.
func (e *env) lastBadge(tb testing.TB, u domain.UserID, n int) int64 {
	tb.Helper()
	var last *call
	calls := e.recv.taken()
	for i := n; i < len(calls); i++ {
		if calls[i].p.User == u {
			last = &calls[i]
		}
	}
	if last == nil {
		tb.Fatalf("%s got no call", u)
	}
	if last.p.UnreadBadge == nil {
		tb.Fatalf("%s's call has no badge: %s", u, last.body)
	}
	return *last.p.UnreadBadge
}

// TestBadgeCountsUnreadMessages: with the MySQL projector caught up, the
// badge is the user's unread messages over all conversations, and a read
// lowers it.
func TestBadgeCountsUnreadMessages(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	carol := e.user(t, "carol", "Carol", nil)
	g, _, err := e.w.Svc.CreateGroup(e.ctx, alice, "g", []domain.UserID{bob.User, carol.User}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := e.projector(t, push.StartHead)
	e.run(t, p)
	withAlice := domain.DirectConversation(alice.User, bob.User)
	step := func(name string, want int64, do func()) {
		t.Helper()
		n := len(e.recv.taken())
		do()
		e.run(t, p)
		if got := e.lastBadge(t, bob.User, n); got != want {
			t.Errorf("%s: badge %d, want %d", name, got, want)
		}
	}
	step("one conversation", 3, func() {
		for range 3 {
			e.send(t, alice, withAlice, "hi")
		}
	})
	step("several conversations", 3+2+1, func() {
		e.send(t, carol, domain.DirectConversation(carol.User, bob.User), "one")
		e.send(t, carol, domain.DirectConversation(carol.User, bob.User), "two")
		e.send(t, alice, domain.GroupConversation(g), "all")
	})
	e.must(t)(e.w.Svc.MarkRead(e.ctx, bob, withAlice, 3))
	e.run(t, p)
	step("after a read", 1+2+1, func() { e.send(t, alice, withAlice, "again") })
}

// TestBadgeWhenMySQLLags: when the MySQL projector trails the push
// projector, the badge counts the messages of the batch beyond the read
// model's rows, counts the user's own messages as read, and is never below
// what the push announces; once MySQL catches up it is exact again.
func TestBadgeWhenMySQLLags(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	carol := e.user(t, "carol", "Carol", nil)
	p := e.projector(t, push.StartHead)
	e.run(t, p)
	withAlice := domain.DirectConversation(alice.User, bob.User)
	step := func(name string, want int64, run func(testing.TB, *push.Projector), do func()) {
		t.Helper()
		n := len(e.recv.taken())
		do()
		run(t, p)
		if got := e.lastBadge(t, bob.User, n); got != want {
			t.Errorf("%s: badge %d, want %d", name, got, want)
		}
	}
	step("caught up", 2, e.run, func() {
		e.send(t, alice, withAlice, "1")
		e.send(t, alice, withAlice, "2")
	})
	step("MySQL behind: the batch's messages are added to the row", 5, e.runLagging, func() {
		for range 3 {
			e.send(t, alice, withAlice, "3..5")
		}
	})
	// The read model knows 2 of alice's messages; the batch only carol's.
	step("a conversation MySQL lacks counts the push's own messages", 2+1, e.runLagging, func() {
		e.send(t, carol, domain.DirectConversation(carol.User, bob.User), "new")
	})
	step("the user's own message in the batch reads what came before", 1, e.runLagging, func() {
		e.send(t, bob, withAlice, "6, bob's")
		e.send(t, alice, withAlice, "7")
	})
	step("MySQL caught up", 2+1, e.run, func() { e.send(t, alice, withAlice, "8") })
}

// failingUnread is a directory whose unread counts cannot be read.
type failingUnread struct{ *query.Service }

func (failingUnread) Unread(context.Context, domain.UserID, []domain.ConversationID) (domain.Unread, error) {
	return domain.Unread{}, errors.New("database down")
}

// TestBadgeLeftOutWhenUnreadable: when the unread counts cannot be read,
// the push goes without a badge and the failure is counted.
func TestBadgeLeftOutWhenUnreadable(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.user(t, "alice", "Alice", nil)
	bob := e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	reg := prometheus.NewRegistry()
	p := e.projectorWith(t, failingUnread{e.dir}, push.Config{Registerer: reg})
	e.run(t, p)
	e.send(t, alice, domain.DirectConversation(alice.User, bob.User), "hi")
	e.run(t, p)
	calls := e.recv.taken()
	if len(calls) != 1 || calls[0].p.UnreadBadge != nil {
		t.Fatalf("calls %+v, want one without a badge", calls)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "mpim_push_badge_failures_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Errorf("badge failures %v, want 1", v)
			}
			return
		}
	}
	t.Error("mpim_push_badge_failures_total not registered")
}
