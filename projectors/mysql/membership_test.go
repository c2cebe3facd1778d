package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// TestMembershipPeriodsProjectAndRebuild: the projector records each
// membership period as conversation seqs (joining after messages, removal
// and re-adding, leaving, joining while the history is visible), keeps an
// edit of a message sent before a join out of the new member's list entry,
// and a rebuild from the log yields the same periods.
func TestMembershipPeriodsProjectAndRebuild(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 4)
	sc := newScenario(ctx, t, env.svc, 5, 0)
	owner, b, c, d, e := sc.users[0], sc.users[1], sc.users[2], sc.users[3], sc.users[4]
	g := env.createGroup(t, owner, "team", []domain.UserID{b.User}, false)
	conv := domain.GroupConversation(g)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	send := func(from command.Actor, text string) {
		t.Helper()
		must(env.svc.Send(ctx, from, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: text}))
	}
	update := func(cmd domain.GroupCommand) {
		t.Helper()
		must(env.svc.UpdateGroup(ctx, owner, g, cmd))
	}
	send(owner, "one")                                                    // 1
	send(owner, "two")                                                    // 2
	update(domain.AddMember{Actor: owner.User, User: c.User})             // c from 2
	send(owner, "three")                                                  // 3
	update(domain.KickMember{Actor: owner.User, Target: c.User})          // c to 3
	send(owner, "four")                                                   // 4
	update(domain.AddMember{Actor: owner.User, User: c.User})             // c from 4
	send(owner, "five")                                                   // 5
	must(env.svc.UpdateGroup(ctx, b, g, domain.LeaveGroup{User: b.User})) // b to 5
	update(domain.AddMember{Actor: owner.User, User: e.User})             // e from 5
	must(env.svc.Edit(ctx, owner, domain.EditMessage{Conversation: conv, Seq: 5, Text: "five, edited"}))
	update(domain.SetHistoryVisibility{Actor: owner.User, Visible: true})
	update(domain.AddMember{Actor: owner.User, User: d.User}) // d from 0

	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	w := &watched{Projector: rm}
	r := startRunner(t, env.store, w, 200)
	waitCaughtUp(t, env.store, rm.Checkpoints)
	r.stop(t)
	w.check(t)
	if n := count(t, db, tQuarantine, ""); n != 0 {
		t.Fatalf("%d events quarantined", n)
	}

	want := []string{
		string(b.User) + " 0 5",
		string(c.User) + " 2 3",
		string(c.User) + " 4 -",
		string(d.User) + " 0 -",
		string(e.User) + " 5 -",
		string(owner.User) + " 0 -",
	}
	slices.Sort(want)
	got := readPeriods(t, db, g)
	if !slices.Equal(got, want) {
		t.Fatalf("periods %v, want %v", got, want)
	}
	var preview string
	if err := db.QueryRow("SELECT last_preview FROM user_conversations WHERE user_id = ? AND conversation_id = ?", string(c.User), string(conv)).Scan(&preview); err != nil {
		t.Fatal(err)
	}
	if preview != "five, edited" {
		t.Errorf("c's preview %q, want the edited seq 5", preview)
	}
	if err := db.QueryRow("SELECT last_preview FROM user_conversations WHERE user_id = ? AND conversation_id = ?", string(e.User), string(conv)).Scan(&preview); err != nil {
		t.Fatal(err)
	}
	if preview != "" {
		t.Errorf("e, added after seq 5, has its preview %q", preview)
	}
	var visible bool
	if err := db.QueryRow("SELECT history_visible FROM chat_groups WHERE group_id = ?", string(g)).Scan(&visible); err != nil || !visible {
		t.Errorf("chat_groups.history_visible = %v, %v", visible, err)
	}

	// Rebuilt one event per batch, a leave and a re-join never share one.
	clean := openTestDB(t)
	if err := Rebuild(ctx, clean, env.store, RebuildOptions{BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	if got := readPeriods(t, clean, g); !slices.Equal(got, want) {
		t.Fatalf("rebuilt periods %v, want %v", got, want)
	}
	sameModel(t, db, clean)
}

// readPeriods returns group g's membership periods as "user from to" lines
// ("-" for an open period), sorted.
func readPeriods(tb testing.TB, db *sql.DB, g domain.GroupID) []string {
	tb.Helper()
	rows, err := db.Query("SELECT user_id, from_seq, to_seq FROM "+readmodel.Periods+" WHERE group_id = ?", string(g))
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		var from uint64
		var to sql.NullInt64
		if err := rows.Scan(&u, &from, &to); err != nil {
			tb.Fatal(err)
		}
		end := "-"
		if to.Valid {
			end = strconv.FormatInt(to.Int64, 10)
		}
		out = append(out, fmt.Sprintf("%s %d %s", u, from, end))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}
