package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/projectors"
)

// An event MariaDB refuses (here a trigger refuses one message) fails
// its batch on every attempt: the runner quarantines it and projects
// the partition's later events, the same group's included.
func TestEventTheDatabaseRefusesIsQuarantinedAndLaterEventsProjected(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	alice := env.register(t, "alice", "Alice")
	bob := env.register(t, "bob", "Bob")
	owner := command.Actor{User: alice}
	g := env.createGroup(t, owner, "team", []domain.UserID{bob}, false)
	if _, err := env.svc.Send(ctx, owner, domain.SendMessage{Conversation: domain.GroupConversation(g), Kind: domain.KindText, Text: "poison"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.UpdateGroup(ctx, owner, g, domain.RenameGroup{Actor: alice, Name: "renamed"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.UpdateUser(ctx, owner, domain.UpdateProfile{DisplayName: "Alice 2"}); err != nil {
		t.Fatal(err)
	}

	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	// The domain and the projector's own checks let no value through that
	// the columns refuse, so the database is made to refuse one: a trigger
	// fails the insert of a message whose text is "poison" (error 1644, a
	// data error, not a transient one).
	if _, err := db.Exec("CREATE TRIGGER poison BEFORE INSERT ON messages FOR EACH ROW" +
		" IF NEW.body = 'poison' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison refused'; END IF"); err != nil {
		t.Fatal(err)
	}
	r, err := projectors.NewRunner(env.store, &projectors.Static{}, rm, projectors.RunnerConfig{
		BatchSize: 200, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	waitCaughtUp(t, env.store, rm.Checkpoints)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var name string
	if err := db.QueryRow("SELECT name FROM chat_groups WHERE group_id = ?", string(g)).Scan(&name); err != nil || name != "renamed" {
		t.Fatalf("group name %q, %v: the events after the poison one were not projected", name, err)
	}
	if err := db.QueryRow("SELECT display_name FROM users WHERE user_id = ?", string(alice)).Scan(&name); err != nil || name != "Alice 2" {
		t.Fatalf("display name %q, %v: the events after the poison one were not projected", name, err)
	}
	recs, err := ListQuarantine(ctx, db, ReadModelName, 100)
	if err != nil || len(recs) != 1 {
		t.Fatalf("quarantine %v, %v; want one record", recs, err)
	}
	q := recs[0]
	if info := projectors.DescribeRaw(q.Raw); info.Type != "MessageSent" || info.Aggregate != string(domain.GroupConversation(g)) || info.EventID == "" {
		t.Fatalf("quarantined %+v, want the group's MessageSent", info)
	}
	if !strings.HasPrefix(q.Reason, applyFailedPrefix) {
		t.Fatalf("reason %q", q.Reason)
	}

	// Re-applying fails the same way and keeps the record; dropping removes it.
	if err := rm.Reapply(ctx, q.Partition, q.Position); err == nil {
		t.Fatal("re-applying the refused event succeeded")
	}
	if n := count(t, db, tQuarantine, "projector = 'mysql'"); n != 1 {
		t.Fatalf("%d quarantine records after a failed re-apply", n)
	}
	if err := DropQuarantine(ctx, db, ReadModelName, q.Partition, q.Position); err != nil {
		t.Fatal(err)
	}
	if err := DropQuarantine(ctx, db, ReadModelName, q.Partition, q.Position); !errors.Is(err, ErrNotQuarantined) {
		t.Fatalf("second drop: %v", err)
	}
}

// A quarantined event that applies now is re-applied: its effects land and
// its record goes, the checkpoint stays.
func TestQuarantinedEventIsReapplied(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	alice := env.register(t, "alice", "Alice")
	g := env.createGroup(t, command.Actor{User: alice}, "team", nil, false)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	project(t, env.store, rm, rm.Checkpoints)
	if _, err := env.svc.UpdateGroup(ctx, command.Actor{User: alice}, g, domain.RenameGroup{Actor: alice, Name: "later"}); err != nil {
		t.Fatal(err)
	}
	token := uint64(time.Now().Unix()) + 10
	after, err := rm.Claim(ctx, 0, token)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := env.store.ReadPartition(ctx, 0, after, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read %d, %v", len(recs), err)
	}
	b := &projectors.Batch{Partition: 0, Token: token, After: after, To: recs[0].Position, Events: recs}
	if err := rm.Quarantine(ctx, b, errors.New("a bug since fixed")); err != nil {
		t.Fatal(err)
	}
	if err := rm.Quarantine(ctx, b, errors.New("again")); !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("quarantine of a batch behind the checkpoint: %v", err)
	}
	var name string
	var version uint64
	if err := db.QueryRow("SELECT name, version FROM chat_groups WHERE group_id = ?", string(g)).Scan(&name, &version); err != nil || name != "team" || version != 2 {
		t.Fatalf("quarantined rename: name %q version %d, %v", name, version, err)
	}
	if err := rm.Reapply(ctx, 0, recs[0].Position); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("SELECT name, version FROM chat_groups WHERE group_id = ?", string(g)).Scan(&name, &version); err != nil || name != "later" || version != 2 {
		t.Fatalf("re-applied rename: name %q version %d, %v", name, version, err)
	}
	if n := count(t, db, tQuarantine, "projector = 'mysql'"); n != 0 {
		t.Fatalf("%d quarantine records after re-applying", n)
	}
	if pos, _ := rm.Checkpoint(ctx, 0); pos != recs[0].Position {
		t.Fatalf("checkpoint %s, want %s", pos, recs[0].Position)
	}
	if err := rm.Reapply(ctx, 0, recs[0].Position); !errors.Is(err, ErrNotQuarantined) {
		t.Fatalf("second re-apply: %v", err)
	}
}
