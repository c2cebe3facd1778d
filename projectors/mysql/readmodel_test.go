package mysql

import (
	"context"
	"testing"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

func TestScenarioProjectsAndRebuildsIdentically(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 4)
	sc := newScenario(ctx, t, env.svc, 12, 3)
	sc.run(ctx, t, 4, 150, 1)

	db := projectFresh(t, env.store)

	if n := count(t, db, readmodel.Users, ""); n != 12 {
		t.Errorf("%d users, want 12", n)
	}
	if n := count(t, db, tQuarantine, ""); n != 0 {
		t.Errorf("%d events quarantined from a clean log: %v", n, dumpTable(t, db, tQuarantine, ""))
	}
	if n := count(t, db, readmodel.UserConversations, "unread_count <> IF(last_seq > read_seq, last_seq - read_seq, 0)"); n != 0 {
		t.Errorf("%d conversation rows with a wrong unread count", n)
	}
	if n := count(t, db, readmodel.Messages, ""); n == 0 {
		t.Error("no messages projected")
	}
	if n := count(t, db, readmodel.Conversations+" c", "c.last_seq <> (SELECT MAX(seq) FROM messages m WHERE m.conversation_id = c.conversation_id)"); n != 0 {
		t.Errorf("%d conversations whose last seq is not their last message", n)
	}

	other := openTestDB(t)
	if err := Rebuild(ctx, other, env.store, RebuildOptions{BatchSize: 37}); err != nil {
		t.Fatal(err)
	}
	sameModel(t, db, other)
}

func TestUnreadCountsAndReadMarkers(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 4)
	sc := newScenario(ctx, t, env.svc, 3, 0)
	a, b, c := sc.users[0], sc.users[1], sc.users[2]
	direct := domain.DirectConversation(a.User, b.User)
	send := func(from command.Actor, conv domain.ConversationID) uint64 {
		t.Helper()
		s, err := env.svc.Send(ctx, from, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi"})
		if err != nil {
			t.Fatal(err)
		}
		return s.Seq
	}
	for range 3 {
		send(a, direct)
	}
	if _, err := env.svc.MarkRead(ctx, b, direct, 2); err != nil {
		t.Fatal(err)
	}
	g := env.createGroup(t, a, "g", []domain.UserID{b.User}, true)
	gc := domain.GroupConversation(g)
	send(a, gc)
	send(b, gc)
	// c joins after two messages: they count as read.
	if _, err := env.svc.UpdateGroup(ctx, c, g, domain.JoinGroup{User: c.User}); err != nil {
		t.Fatal(err)
	}
	send(a, gc)
	// A read marker beyond the last message (the write side refuses one
	// now; an older log may hold it) and one going backwards.
	if _, err := env.svc.MarkRead(ctx, c, gc, 10); domain.ErrorCode(err) != domain.EInvalid {
		t.Fatalf("a read marker beyond the last message: %v, want invalid", err)
	}
	appendRaw(t, env, domain.ReaderID(c.User), domain.ConversationRead{User: c.User, Conversation: gc, Seq: 10})
	if _, err := env.svc.MarkRead(ctx, b, direct, 1); err != nil {
		t.Fatal(err)
	}

	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	project(t, env.store, rm, rm.Checkpoints)

	type row struct{ last, read, unread uint64 }
	get := func(u command.Actor, conv domain.ConversationID) row {
		t.Helper()
		var r row
		err := db.QueryRow("SELECT last_seq, read_seq, unread_count FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
			string(u.User), string(conv)).Scan(&r.last, &r.read, &r.unread)
		if err != nil {
			t.Fatalf("%s in %s: %v", u.User, conv, err)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		u    command.Actor
		conv domain.ConversationID
		want row
	}{
		{"sender has read their own messages", a, direct, row{3, 3, 0}},
		{"recipient read up to 2, a marker going back changes nothing", b, direct, row{3, 2, 1}},
		{"group sender", a, gc, row{3, 3, 0}},
		{"group member who sent seq 2", b, gc, row{3, 2, 1}},
		{"joiner counts earlier messages as read, marker beyond last", c, gc, row{3, 10, 0}},
	} {
		if got := get(tc.u, tc.conv); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
