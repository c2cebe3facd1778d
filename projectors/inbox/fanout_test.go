package inbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// chat is a realistic history through the write path: contacts, a direct
// conversation, a group with joins, adds, a kick and a leave between its
// messages, and a second group that is dissolved. It returns the entries
// every user must have and the kick of carol.
type chat struct {
	alice, bob, carol, dave, erin command.Actor
	group, other                  domain.GroupID
	kick                          command.Result
	book                          *book
	sent                          map[domain.UserID][][16]byte // messages by sender
}

func newChat(t *testing.T, e *env) *chat {
	ctx := context.Background()
	s := step{t}
	c := &chat{book: newBook(), sent: map[domain.UserID][][16]byte{}}
	bk := c.book
	a, b, cr, d, er := e.register(t, "alice"), e.register(t, "bob"), e.register(t, "carol"), e.register(t, "dave"), e.register(t, "erin")
	c.alice, c.bob, c.carol, c.dave, c.erin = a, b, cr, d, er
	send := func(from command.Actor, conv domain.ConversationID, body string) command.Sent {
		t.Helper()
		m := s.sent(e.svc.Send(ctx, from, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: body}))
		c.sent[from.User] = append(c.sent[from.User], m.EventID)
		return m
	}

	// Contacts.
	bk.add(t, "request a->b", s.id(e.svc.Contact(ctx, a, b.User, domain.RequestFriend{From: a.User, To: b.User, Message: "hi"})), a, b)
	bk.add(t, "accept b<-a", s.id(e.svc.Contact(ctx, b, a.User, domain.AcceptFriend{By: b.User})), a, b)
	bk.add(t, "request e->c", s.id(e.svc.Contact(ctx, er, cr.User, domain.RequestFriend{From: er.User, To: cr.User})), er, cr)
	bk.add(t, "decline c", s.id(e.svc.Contact(ctx, cr, er.User, domain.DeclineFriend{By: cr.User})), er, cr)

	// Direct conversation.
	direct := domain.DirectConversation(a.User, b.User)
	d1 := send(a, direct, "hello bob")
	bk.add(t, "d1", d1.EventID, a, b)
	d2 := send(b, direct, "hello alice")
	bk.add(t, "d2", d2.EventID, a, b)
	bk.add(t, "edit d1", s.id(e.svc.Edit(ctx, a, domain.EditMessage{Conversation: direct, Seq: d1.Seq, Text: "hello, bob"})), a, b)
	bk.add(t, "read direct by b", s.id(e.svc.MarkRead(ctx, b, direct, d2.Seq)), a, b)
	bk.add(t, "delete d2 for a", s.id(e.svc.DeleteForMe(ctx, a, direct, d2.Seq)), a)

	// A group whose membership changes between messages.
	gid, res, err := e.svc.CreateGroup(ctx, a, "team", []domain.UserID{b.User, cr.User}, true)
	c.group = gid
	bk.add(t, "create team", s.id(res, err), a, b, cr)
	conv := domain.GroupConversation(gid)
	g1 := send(a, conv, "g1")
	bk.add(t, "g1", g1.EventID, a, b, cr)
	bk.add(t, "d joins", s.id(e.svc.UpdateGroup(ctx, d, gid, domain.JoinGroup{User: d.User})), a, b, cr, d)
	bk.add(t, "g2", send(b, conv, "g2").EventID, a, b, cr, d)
	bk.add(t, "g2c", send(cr, conv, "g2 by carol").EventID, a, b, cr, d)
	c.kick, err = e.svc.UpdateGroup(ctx, a, gid, domain.KickMember{Actor: a.User, Target: cr.User})
	bk.add(t, "kick c", s.id(c.kick, err), a, b, cr, d)
	bk.add(t, "g3", send(d, conv, "g3").EventID, a, b, d)
	bk.add(t, "b adds e", s.id(e.svc.UpdateGroup(ctx, b, gid, domain.AddMember{Actor: b.User, User: er.User})), a, b, d, er)
	bk.add(t, "g4", send(er, conv, "g4").EventID, a, b, d, er)
	bk.add(t, "b leaves", s.id(e.svc.UpdateGroup(ctx, b, gid, domain.LeaveGroup{User: b.User})), a, b, d, er)
	g5 := send(a, conv, "g5")
	bk.add(t, "g5", g5.EventID, a, d, er)
	// d joined and e was added after g1: neither hears of its edit or recall.
	bk.add(t, "edit g1", s.id(e.svc.Edit(ctx, a, domain.EditMessage{Conversation: conv, Seq: g1.Seq, Text: "g1, edited"})), a)
	bk.add(t, "edit g5", s.id(e.svc.Edit(ctx, a, domain.EditMessage{Conversation: conv, Seq: g5.Seq, Text: "g5, edited"})), a, d, er)
	bk.add(t, "recall g1", s.id(e.svc.Recall(ctx, a, domain.RecallMessage{Conversation: conv, Seq: g1.Seq})), a)
	bk.add(t, "rename", s.id(e.svc.UpdateGroup(ctx, a, gid, domain.RenameGroup{Actor: a.User, Name: "team 2"})), a, d, er)
	bk.add(t, "d admin", s.id(e.svc.UpdateGroup(ctx, a, gid, domain.SetRole{Actor: a.User, Target: d.User, Role: domain.RoleAdmin})), a, d, er)
	bk.add(t, "mute e", s.id(e.svc.UpdateGroup(ctx, d, gid, domain.MuteMember{Actor: d.User, Target: er.User, Until: time.Now().Add(time.Hour)})), a, d, er)
	bk.add(t, "unmute e", s.id(e.svc.UpdateGroup(ctx, d, gid, domain.UnmuteMember{Actor: d.User, Target: er.User})), a, d, er)
	bk.add(t, "history visible", s.id(e.svc.UpdateGroup(ctx, d, gid, domain.SetHistoryVisibility{Actor: d.User, Visible: true})), a, d, er)
	bk.add(t, "read team by d", s.id(e.svc.MarkRead(ctx, d, conv, 3)), d)

	// Blocks reach the blocker only; profiles their owner only.
	bk.add(t, "c blocks d", s.id(e.svc.Contact(ctx, cr, d.User, domain.Block{By: cr.User})), cr)
	bk.add(t, "profile e", s.id(e.svc.UpdateUser(ctx, er, domain.UpdateProfile{DisplayName: "Erin E", AvatarURL: "https://example.com/e.png"})), er)
	bk.add(t, "c unblocks d", s.id(e.svc.Contact(ctx, cr, d.User, domain.Unblock{By: cr.User})), cr)
	bk.add(t, "b removes a", s.id(e.svc.Contact(ctx, b, a.User, domain.RemoveFriend{By: b.User})), a, b)
	bk.add(t, "b blocks a", s.id(e.svc.Contact(ctx, b, a.User, domain.Block{By: b.User})), b)

	// A second group, dissolved.
	other, res, err := e.svc.CreateGroup(ctx, d, "short-lived", []domain.UserID{er.User}, false)
	c.other = other
	bk.add(t, "create other", s.id(res, err), d, er)
	bk.add(t, "h1", send(er, domain.GroupConversation(other), "h1").EventID, d, er)
	bk.add(t, "dissolve other", s.id(e.svc.UpdateGroup(ctx, d, other, domain.DissolveGroup{Actor: d.User})), d, er)
	return c
}

func (c *chat) users() []command.Actor {
	return []command.Actor{c.alice, c.bob, c.carol, c.dave, c.erin}
}

// checkInboxes checks that every user's inbox holds exactly the entries the
// book says, each once, well-formed and in log order per partition.
func checkInboxes(t *testing.T, e *env, c *chat) {
	t.Helper()
	for _, u := range c.users() {
		got := e.inbox(t, u.User)
		want := c.book.want[u.User]
		seen := map[[16]byte]bool{}
		last := map[int]eventstore.Position{}
		for _, en := range got {
			what, ok := want[en.EventID]
			if !ok {
				t.Errorf("%s received %s event %x it must not", u.User, en.Type, en.EventID)
				continue
			}
			if seen[en.EventID] {
				t.Errorf("%s received %q twice", u.User, what)
			}
			seen[en.EventID] = true
			pos, err := eventstore.ParsePosition(en.Position)
			if err != nil {
				t.Fatal(err)
			}
			if pos.Compare(last[en.Partition]) <= 0 {
				t.Errorf("%s: %q at %d/%s is out of log order", u.User, what, en.Partition, en.Position)
			}
			last[en.Partition] = pos
			checkEnvelope(t, en)
		}
		for id, what := range want {
			if !seen[id] {
				t.Errorf("%s did not receive %q", u.User, what)
			}
		}
	}
}

// checkEnvelope checks that an entry's envelope is the event it names.
func checkEnvelope(t *testing.T, en entry) {
	t.Helper()
	env := new(mpimv1.Event)
	if err := proto.Unmarshal(en.Envelope, env); err != nil {
		t.Fatalf("entry %s: %v", en.id, err)
	}
	env.Version, env.Seq = en.Version, en.Seq
	_, ev, err := codec.Decode(env)
	if err != nil {
		t.Fatalf("entry %s: %v", en.id, err)
	}
	if string(env.GetId()) != string(en.EventID[:]) || ev.EventType() != en.Type || en.Version == 0 {
		t.Fatalf("entry %s: envelope %x %s v%d does not match entry %x %s", en.id, env.GetId(), ev.EventType(), en.Version, en.EventID, en.Type)
	}
	if m, ok := ev.(domain.MessageSent); ok && m.Seq == 0 {
		t.Fatalf("entry %s: message without seq", en.id)
	}
}

func TestEveryMemberAtTheTimeGetsExactlyItsEntries(t *testing.T) {
	e := newEnv(t)
	c := newChat(t, e)
	proj := e.projector(t, inbox.Config{})
	e.runToHead(t, proj, proj)
	checkInboxes(t, e, c)

	t.Run("kicked user gets nothing after the kick", func(t *testing.T) {
		kickPos := c.kick.Events[0].Position
		gp := e.store.PartitionOf(string(c.group))
		conv := string(domain.GroupConversation(c.group))
		for _, en := range e.inbox(t, c.carol.User) {
			env := new(mpimv1.Event)
			if err := proto.Unmarshal(en.Envelope, env); err != nil {
				t.Fatal(err)
			}
			if agg := env.GetAggregate(); agg != string(c.group) && agg != conv {
				continue // another aggregate that may share the partition
			}
			pos, _ := eventstore.ParsePosition(en.Position)
			if en.Partition != gp || pos.Compare(kickPos) > 0 {
				t.Errorf("carol received %s at %s after her kick at %s", en.Type, en.Position, kickPos)
			}
		}
	})
	t.Run("senders have their own messages", func(t *testing.T) {
		for _, u := range c.users() {
			have := map[[16]byte]bool{}
			for _, en := range e.inbox(t, u.User) {
				have[en.EventID] = true
			}
			if len(c.sent[u.User]) == 0 {
				t.Fatalf("%s sent nothing; the scenario lost its point", u.User)
			}
			for _, id := range c.sent[u.User] {
				if !have[id] {
					t.Errorf("%s lacks their own message %x", u.User, id)
				}
			}
		}
	})
	t.Run("dissolved group's member set is gone", func(t *testing.T) {
		keys := e.keysUnder(t, e.prefix+"proj:{inbox:p*}:members:"+string(c.other))
		keys = append(keys, e.keysUnder(t, e.prefix+"proj:{inbox:p*}:history:"+string(c.other))...)
		if len(keys) != 0 {
			t.Fatalf("member set or history of the dissolved group remains: %v", keys)
		}
		p := e.store.PartitionOf(string(c.group))
		members, err := e.rdb.SMembers(context.Background(), fmt.Sprintf("%sproj:{inbox:p%d}:members:%s", e.prefix, p, c.group)).Result()
		if err != nil {
			t.Fatal(err)
		}
		g, err := e.svc.Group(context.Background(), c.group)
		if err != nil {
			t.Fatal(err)
		}
		if len(members) != g.Len() {
			t.Fatalf("member set %v, group has %d members", members, g.Len())
		}
		for _, u := range members {
			if _, ok := g.Member(domain.UserID(u)); !ok {
				t.Fatalf("member set holds %s, not a member", u)
			}
		}
	})
}
