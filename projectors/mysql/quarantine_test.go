package mysql

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/readmodel"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// appendRaw appends one event to aggregate agg with no expected version.
func appendRaw(t *testing.T, env *logEnv, agg string, e domain.Event) {
	t.Helper()
	appendRawAt(t, env, agg, time.Now(), false, e)
}

func TestBadEntriesAreQuarantinedAndProjectionContinues(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	a := env.register(t, "alice", "Alice")
	xadd := func(values ...string) {
		t.Helper()
		if err := env.rdb.XAdd(ctx, &redis.XAddArgs{Stream: env.streamKey(0), Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage, and an entry without the fields the store writes.
	xadd("v", "1", "s", "0", "d", "\xff\xfe garbage")
	xadd("x", "y")
	// An event type from a newer writer: the envelope parses, its payload is
	// unknown. It is alice's next event, so her version moves past it.
	// (A user's head in its partition's heads hash is "<version>".)
	v, err := env.rdb.HIncrBy(ctx, env.prefix+"{p0}:h", string(a), 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	id := ulid.Make()
	raw, err := proto.Marshal(&mpimv1.Event{Id: id[:], Aggregate: string(a), OccurredAtMs: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	raw = protowire.AppendTag(raw, 999, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("from the future"))
	xadd("v", "2", "s", "0", "d", string(raw))
	if v != 2 {
		t.Fatalf("alice's head is at %d", v)
	}
	// Events that decode but make no sense for the read model.
	stranger := domain.UserID("u/" + ulid.Make().String())
	appendRaw(t, env, string(stranger), domain.ProfileUpdated{DisplayName: "ghost"})
	bob := env.register(t, "bob", "Bob")
	conv := domain.DirectConversation(a, bob)
	appendRaw(t, env, string(conv), domain.MessageRecalled{Seq: 99, By: a, Sender: a})
	// Good events after all that.
	appendRaw(t, env, string(a), domain.ProfileUpdated{DisplayName: "Alice 2"})
	sent, err := env.svc.Send(ctx, command.Actor{User: a}, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "still works"})
	if err != nil {
		t.Fatal(err)
	}

	db := projectFresh(t, env.store)

	reasons := dumpTable(t, db, tQuarantine, "WHERE projector = 'mysql'", "quarantined_at", "raw", "pos_ms", "pos_seq", "partition_no")
	want := []string{"undecodable entry", "lacks fields", "unknown event type", "unknown user " + string(stranger), "message 99 of " + string(conv) + " does not exist"}
	if len(reasons) != len(want) {
		t.Errorf("quarantine has %d rows, want %d: %v", len(reasons), len(want), reasons)
	}
	for _, w := range want {
		found := false
		for _, r := range reasons {
			found = found || strings.Contains(r, w)
		}
		if !found {
			t.Errorf("no quarantine reason mentions %q: %v", w, reasons)
		}
	}
	var name string
	var version uint64
	if err := db.QueryRow("SELECT display_name, version FROM users WHERE user_id = ?", string(a)).Scan(&name, &version); err != nil {
		t.Fatal(err)
	}
	if name != "Alice 2" || version != 3 {
		t.Errorf("alice is %q at version %d, want \"Alice 2\" at 3", name, version)
	}
	if n := count(t, db, readmodel.Messages, "conversation_id = ? AND seq = ?", string(conv), sent.Seq); n != 1 {
		t.Errorf("the message after the bad entries was not projected")
	}

	// The archiver sets the same undecodable entries aside, and a rebuild
	// reading them back from the archive quarantines the same events.
	arch := testArchiver(t, db, ArchiverConfig{})
	project(t, env.store, arch, archiveCheckpoints(db, 1))
	if n := count(t, db, tQuarantine, "projector = 'archive'"); n != 3 {
		t.Errorf("archive quarantined %d entries, want 3", n)
	}
	before := modelDigest(t, db)
	last := projectorstest.Heads(ctx, t, env.store)[0]
	if err := env.rdb.XTrimMinID(ctx, env.streamKey(0), eventstore.Position{Ms: last.Ms, Seq: last.Seq + 1}.String()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(ctx, db, env.store, RebuildOptions{BatchSize: 3}); err != nil {
		t.Fatal(err)
	}
	after := modelDigest(t, db)
	for tbl, rows := range before {
		if hash(rows) != hash(after[tbl]) {
			t.Errorf("table %s changed by a rebuild from the archive:\n%v\n%v", tbl, rows, after[tbl])
		}
	}
}

// appendRawAt is appendRaw with the envelope's time at, also kept in the
// aggregate's own history if keep (the write side reloads groups and users
// from theirs).
func appendRawAt(t *testing.T, env *logEnv, agg string, at time.Time, keep bool, e domain.Event) {
	t.Helper()
	ev, err := codec.Envelope(codec.Meta{ID: ulid.Make(), Aggregate: agg, OccurredAt: at}, e)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.store.Append(context.Background(), eventstore.AppendRequest{
		Streams: []eventstore.StreamAppend{{Aggregate: agg, Expected: eventstore.Any, KeepHistory: keep, Events: []*mpimv1.Event{ev}}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A log written before the domain bounded times and seqs may hold events
// whose numbers no column takes. They are quarantined, and the events after
// them are projected.
func TestEventsWhoseNumbersDoNotFitTheColumnsAreQuarantined(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	a := env.register(t, "alice", "Alice")
	b := env.register(t, "bob", "Bob")
	alice, bob := command.Actor{User: a}, command.Actor{User: b}
	g := env.createGroup(t, alice, "team", []domain.UserID{b}, false)
	conv := domain.DirectConversation(a, b)
	if _, err := env.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "one"}); err != nil {
		t.Fatal(err)
	}
	year10000 := time.UnixMilli(253402300800000)
	appendRawAt(t, env, string(g), time.Now(), true, domain.MemberMuted{User: b, By: a, Until: year10000})
	appendRaw(t, env, domain.ReaderID(b), domain.ConversationRead{User: b, Conversation: conv, Seq: 1<<64 - 1})
	appendRaw(t, env, domain.ReaderID(b), domain.MessageDeletedForMe{User: b, Conversation: conv, Seq: 1<<64 - 1})
	appendRaw(t, env, string(conv), domain.MessageSent{Conversation: conv, Sender: a, Kind: domain.KindText, Text: "late", SentAt: year10000})
	appendRawAt(t, env, string(a), year10000, true, domain.ProfileUpdated{DisplayName: "from the far future"})

	// Good events after them.
	if _, err := env.svc.UpdateGroup(ctx, alice, g, domain.RenameGroup{Actor: a, Name: "team 2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.UpdateUser(ctx, alice, domain.UpdateProfile{DisplayName: "Alice 2"}); err != nil {
		t.Fatal(err)
	}
	sent, err := env.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "still works"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.MarkRead(ctx, bob, conv, sent.Seq); err != nil {
		t.Fatal(err)
	}

	db := projectFresh(t, env.store)

	reasons := dumpTable(t, db, tQuarantine, "WHERE projector = 'mysql'", "quarantined_at", "raw", "pos_ms", "pos_seq", "partition_no")
	want := []string{"mute of " + string(b), "malformed marker for " + string(b) + " in " + string(conv) + " at 18446744073709551615",
		"sent at 253402300800000 ms", "occurred at 253402300800000 ms"}
	if len(reasons) != len(want)+1 { // the marker and the deletion
		t.Errorf("quarantine has %d rows, want %d: %v", len(reasons), len(want)+1, reasons)
	}
	for _, w := range want {
		if !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, w) }) {
			t.Errorf("no quarantine reason mentions %q: %v", w, reasons)
		}
	}
	var name string
	var muted bool
	if err := db.QueryRow("SELECT g.name, m.muted FROM chat_groups g JOIN group_members m ON m.group_id = g.group_id AND m.user_id = ? WHERE g.group_id = ?",
		string(b), string(g)).Scan(&name, &muted); err != nil {
		t.Fatal(err)
	}
	if name != "team 2" || muted {
		t.Errorf("group %q with bob muted %v, want \"team 2\" and not muted", name, muted)
	}
	if err := db.QueryRow("SELECT display_name FROM users WHERE user_id = ?", string(a)).Scan(&name); err != nil || name != "Alice 2" {
		t.Errorf("alice is %q (%v), want \"Alice 2\"", name, err)
	}
	var last, read uint64
	if err := db.QueryRow("SELECT last_seq, read_seq FROM user_conversations WHERE user_id = ? AND conversation_id = ?", string(b), string(conv)).
		Scan(&last, &read); err != nil {
		t.Fatal(err)
	}
	if last != sent.Seq || read != sent.Seq {
		t.Errorf("bob's row of %s: last %d read %d, want %d %d", conv, last, read, sent.Seq, sent.Seq)
	}
}
