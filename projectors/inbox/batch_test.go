package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// groupChat registers n users and creates a group of all of them owned by
// the first; it returns the users, the group and the group's partition.
func groupChat(t *testing.T, e *env, names ...string) ([]command.Actor, domain.GroupID, int) {
	t.Helper()
	users := make([]command.Actor, len(names))
	ids := make([]domain.UserID, 0, len(names)-1)
	for i, n := range names {
		users[i] = e.register(t, n)
		if i > 0 {
			ids = append(ids, users[i].User)
		}
	}
	gid, _, err := e.svc.CreateGroup(context.Background(), users[0], "team", ids, true)
	if err != nil {
		t.Fatal(err)
	}
	return users, gid, e.store.PartitionOf(string(gid))
}

func (e *env) say(t *testing.T, from command.Actor, gid domain.GroupID, text string) command.Sent {
	t.Helper()
	m, err := e.svc.Send(context.Background(), from, domain.SendMessage{Conversation: domain.GroupConversation(gid), Kind: domain.KindText, Text: text})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *env) route(t *testing.T, u command.Actor, device, gateway string, expires time.Time) {
	t.Helper()
	r := delivery.Route{Gateway: gateway, Expires: expires}
	if err := e.rdb.HSet(context.Background(), e.keys.Presence(u.User), device, r.Encode()).Err(); err != nil {
		t.Fatal(err)
	}
}

// drain returns the notifications published on each channel before a
// sentinel the test publishes now: PUBLISH is delivered in order, so these
// are exactly the ones published before.
func drain(t *testing.T, e *env, sub *redis.PubSub, channels []string) map[string][]delivery.Notification {
	t.Helper()
	ctx := context.Background()
	for _, ch := range channels {
		if err := e.rdb.Publish(ctx, ch, "end").Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string][]delivery.Notification{}
	receiveUntilEnd(t, sub, len(channels), got)
	return got
}

// receiveUntilEnd adds the notifications sub receives to got, by channel,
// until it has received ends "end" sentinels.
func receiveUntilEnd(t *testing.T, sub *redis.PubSub, ends int, got map[string][]delivery.Notification) {
	t.Helper()
	for open := ends; open > 0; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		msg, err := sub.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Payload == "end" {
			open--
			continue
		}
		n, err := delivery.DecodeNotification([]byte(msg.Payload))
		if err != nil {
			t.Fatal(err)
		}
		got[msg.Channel] = append(got[msg.Channel], n)
	}
}

func lastInboxID(t *testing.T, e *env, u domain.UserID) string {
	t.Helper()
	m, err := e.rdb.XRevRangeN(context.Background(), e.keys.Inbox(u), "+", "-", 1).Result()
	if err != nil || len(m) != 1 {
		t.Fatalf("inbox of %s: %v %v", u, m, err)
	}
	return m[0].ID
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestNotifiesEachOnlineGatewayOncePerBatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, p := groupChat(t, e, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := users[0], users[1], users[2], users[3]
	live := time.Now().Add(time.Hour)
	e.route(t, alice, "phone", "gw-1", live)
	e.route(t, alice, "tablet", "gw-1", live)
	e.route(t, alice, "laptop", "gw-2", live)
	e.route(t, bob, "phone", "gw-1", live)
	e.route(t, carol, "phone", "gw-3", time.Now().Add(-time.Second)) // its gateway died
	// dave is offline: no route at all.

	channels := []string{e.keys.Notify("gw-1"), e.keys.Notify("gw-2"), e.keys.Notify("gw-3"), e.keys.Notify("gw-4")}
	sub := e.rdb.Subscribe(ctx, channels...)
	defer sub.Close()
	for range channels {
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmations
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	proj := e.projector(t, inbox.Config{Registerer: reg})
	const token = 7
	if _, err := proj.Claim(ctx, p, token); err != nil {
		t.Fatal(err)
	}

	var after eventstore.Position
	prev := map[domain.UserID]string{alice.User: "0-0", bob.User: "0-0"}
	for round := range 2 {
		for i := range 3 {
			e.say(t, users[i], gid, fmt.Sprintf("round %d message %d", round, i))
		}
		b := e.batch(t, p, token, after)
		if err := proj.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		after = b.To
		got := drain(t, e, sub, channels)
		// Each head carries the user's entries of the batch, after the
		// entry the previous round ended with.
		ha, hb := carriedHead(t, e, alice.User, prev[alice.User]), carriedHead(t, e, bob.User, prev[bob.User])
		want := map[string][]delivery.Notification{
			channels[0]: {{Users: sortHeads(ha, hb)}},
			channels[1]: {{Users: []delivery.Head{ha}}},
		}
		prev[alice.User], prev[bob.User] = ha.Last, hb.Last
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: notifications\n%+v\nwant\n%+v", round, got, want)
		}
		if n := len(e.inbox(t, dave.User)); n == 0 {
			t.Fatal("offline dave has no inbox entries")
		}
	}
	if got := counter(t, reg, "mpim_inbox_notifications_published_total"); got != 4 {
		t.Fatalf("notifications metric %v, want 4", got)
	}
	var total float64
	for _, u := range users {
		total += float64(len(e.inbox(t, u.User)))
	}
	if got := counter(t, reg, "mpim_inbox_entries_written_total"); got != total {
		t.Fatalf("entries metric %v, inboxes hold %v", got, total)
	}
}

func sortHeads(hs ...delivery.Head) []delivery.Head {
	slices.SortFunc(hs, func(a, b delivery.Head) int {
		switch {
		case a.User < b.User:
			return -1
		case a.User > b.User:
			return 1
		}
		return 0
	})
	return hs
}

func TestFencedOrMovedBatchWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, p := groupChat(t, e, "alice", "bob")
	e.route(t, users[1], "phone", "gw-1", time.Now().Add(time.Hour))
	e.say(t, users[0], gid, "hello")
	proj := e.projector(t, inbox.Config{})

	// Tokens beyond 2^53 that differ in the last digit: a Lua number would
	// call them equal.
	const old, current, newer = 1_700_000_000_000_000_000, 1_700_000_000_000_000_001, 1_700_000_000_000_000_002
	if pos, err := proj.Claim(ctx, p, current); err != nil || !pos.IsZero() {
		t.Fatalf("claim: %v %v", pos, err)
	}
	if _, err := proj.Claim(ctx, p, old); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("claim with an older token: %v, want ErrFenced", err)
	}
	nothingWritten := func(t *testing.T) {
		t.Helper()
		if keys := e.keysUnder(t, e.prefix+"inbox:*"); len(keys) != 0 {
			t.Fatalf("inbox keys written: %v", keys)
		}
		if keys := e.keysUnder(t, e.prefix+"quarantine:*"); len(keys) != 0 {
			t.Fatalf("quarantine written: %v", keys)
		}
		if keys := e.keysUnder(t, e.prefix+"proj:{inbox:*}:members:*"); len(keys) != 0 {
			t.Fatalf("member sets written: %v", keys)
		}
		if pos, err := proj.Checkpoint(ctx, p); err != nil || !pos.IsZero() {
			t.Fatalf("checkpoint %v %v, want zero", pos, err)
		}
	}

	b := e.batch(t, p, old, eventstore.Position{})
	b.Skipped = []*eventstore.DecodeError{{Partition: p, Position: b.To, Raw: []byte("x"), Err: errors.New("bad")}}
	if err := proj.Apply(ctx, b); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("apply with a stale token: %v, want ErrFenced", err)
	}
	nothingWritten(t)

	b.Token, b.After = current, eventstore.Position{Ms: 1}
	if err := proj.Apply(ctx, b); !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("apply after a stale checkpoint: %v, want ErrCheckpointMoved", err)
	}
	nothingWritten(t)

	b.Skipped = nil
	b.After = eventstore.Position{}
	if err := proj.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if pos, err := proj.Checkpoint(ctx, p); err != nil || pos != b.To {
		t.Fatalf("checkpoint %v %v, want %v", pos, err, b.To)
	}

	// A newer owner claims; the old one's next batch is refused.
	if _, err := proj.Claim(ctx, p, newer); err != nil {
		t.Fatal(err)
	}
	e.say(t, users[1], gid, "again")
	before := len(e.inbox(t, users[0].User))
	next := e.batch(t, p, current, b.To)
	if err := proj.Apply(ctx, next); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("apply by the fenced owner: %v, want ErrFenced", err)
	}
	if after := len(e.inbox(t, users[0].User)); after != before {
		t.Fatalf("fenced batch wrote %d entries", after-before)
	}
	next.Token = newer
	if err := proj.Apply(ctx, next); err != nil {
		t.Fatal(err)
	}
}

// A batch whose entries were written but whose commit never ran (a crash
// between the two) is applied again: entries repeat with the same event ids,
// and de-duplicating by id gives the first timeline back.
func TestReplayedBatchOnlyDuplicatesSameEventIDs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, p := groupChat(t, e, "alice", "bob", "carol")
	alice, bob, carol := users[0], users[1], users[2]
	e.say(t, bob, gid, "one")
	if _, err := e.svc.UpdateGroup(ctx, alice, gid, domain.KickMember{Actor: alice.User, Target: carol.User}); err != nil {
		t.Fatal(err)
	}
	e.say(t, alice, gid, "two")
	dave := e.register(t, "dave")
	if _, err := e.svc.UpdateGroup(ctx, dave, gid, domain.JoinGroup{User: dave.User}); err != nil {
		t.Fatal(err)
	}
	e.say(t, dave, gid, "three")
	users = append(users, dave)

	proj := e.projector(t, inbox.Config{})
	if _, err := proj.Claim(ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	state := e.keysUnder(t, fmt.Sprintf("%sproj:{inbox:p%d}*", e.prefix, p))
	snapshot := map[string]string{}
	for _, k := range state {
		snapshot[k] = e.rdb.Dump(ctx, k).Val()
	}
	b := e.batch(t, p, 1, eventstore.Position{})
	if err := proj.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	first := map[domain.UserID][][16]byte{}
	for _, u := range users {
		for _, en := range e.inbox(t, u.User) {
			first[u.User] = append(first[u.User], en.EventID)
		}
		if len(first[u.User]) == 0 {
			t.Fatalf("%s received nothing", u.User)
		}
	}
	members := e.keysUnder(t, fmt.Sprintf("%sproj:{inbox:p%d}:members:*", e.prefix, p))
	membersAfter := e.rdb.SMembers(ctx, members[0]).Val()
	slices.Sort(membersAfter)

	// Undo the commit: the projector's state goes back to the snapshot, the
	// entries stay, as after a crash before the commit.
	if err := e.rdb.Del(ctx, e.keysUnder(t, fmt.Sprintf("%sproj:{inbox:p%d}*", e.prefix, p))...).Err(); err != nil {
		t.Fatal(err)
	}
	for k, v := range snapshot {
		if err := e.rdb.Restore(ctx, k, 0, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := proj.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		var dedup [][16]byte
		count := map[[16]byte]int{}
		for _, en := range e.inbox(t, u.User) {
			if count[en.EventID]++; count[en.EventID] == 1 {
				dedup = append(dedup, en.EventID)
			}
		}
		for id, n := range count {
			if n != 2 {
				t.Errorf("%s holds event %x %d times, want 2 (once per application)", u.User, id, n)
			}
		}
		if !reflect.DeepEqual(dedup, first[u.User]) {
			t.Errorf("%s: de-duplicated timeline differs from the first", u.User)
		}
	}
	again := e.rdb.SMembers(ctx, members[0]).Val()
	slices.Sort(again)
	if !reflect.DeepEqual(again, membersAfter) {
		t.Fatalf("members after the replay %v, want %v", again, membersAfter)
	}
}

func TestInboxIsCappedToTheWindow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	conv := domain.DirectConversation(alice.User, bob.User)
	const window, sent = 10, 250
	var ids [][16]byte
	for i := range sent {
		m, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: fmt.Sprint("m", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.EventID)
	}
	proj := e.projector(t, inbox.Config{Window: window})
	e.runToHead(t, proj, proj)
	node, err := e.rdb.ConfigGet(ctx, "stream-node-max-entries").Result()
	if err != nil {
		t.Fatal(err)
	}
	var nodeMax int
	if _, err := fmt.Sscan(node["stream-node-max-entries"], &nodeMax); err != nil {
		t.Fatal(err)
	}
	for _, u := range []command.Actor{alice, bob} {
		got := e.inbox(t, u.User)
		if len(got) < window || len(got) > window+nodeMax {
			t.Fatalf("inbox of %s holds %d entries, want %d..%d", u.User, len(got), window, window+nodeMax)
		}
		if len(got) == sent {
			t.Fatalf("inbox of %s was not trimmed", u.User)
		}
		// What is kept is the newest, in order.
		for i, en := range got {
			if want := ids[sent-len(got)+i]; en.EventID != want {
				t.Fatalf("inbox of %s entry %d is %x, want %x", u.User, i, en.EventID, want)
			}
		}
	}
}

func TestUndecodableEntryIsQuarantinedAndPassed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, bob := e.register(t, "alice"), e.register(t, "bob")
	conv := domain.DirectConversation(alice.User, bob.User)
	m1, err := e.svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "before"})
	if err != nil {
		t.Fatal(err)
	}
	p := e.store.PartitionOf(conv.PartitionKey())
	garbage := "\xff\x00not an envelope"
	bad, err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fmt.Sprintf("%s{p%d}:log", e.prefix, p), Values: []any{"v", "1", "s", "0", "d", garbage}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := e.svc.Send(ctx, bob, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "after"})
	if err != nil {
		t.Fatal(err)
	}
	proj := e.projector(t, inbox.Config{})
	e.runToHead(t, proj, proj)

	q, err := e.rdb.XRange(ctx, e.prefix+"quarantine:inbox", "-", "+").Result()
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine: %v %v, want one entry", q, err)
	}
	v := q[0].Values
	if v["partition"] != fmt.Sprint(p) || v["position"] != bad || v["raw"] != garbage || v["reason"] == "" {
		t.Fatalf("quarantine entry %v, want partition %d position %s", v, p, bad)
	}
	for _, u := range []command.Actor{alice, bob} {
		got := e.inbox(t, u.User)
		if len(got) != 2 || got[0].EventID != m1.EventID || got[1].EventID != m2.EventID {
			t.Fatalf("inbox of %s: %d entries, want the messages around the bad entry", u.User, len(got))
		}
	}
}

// TestInboxIsCappedToTheQuota: 16 KiB group messages, far more than the byte
// quota, leave every member's inbox within the quota, holding the newest
// entries in order, with a byte count that matches what is kept.
func TestInboxIsCappedToTheQuota(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, _ := groupChat(t, e, "ann", "ben", "cid")
	const quota, sent = 64 << 10, 60
	text := strings.Repeat("x", 16<<10)
	var ids [][16]byte
	for i := range sent {
		ids = append(ids, e.say(t, users[i%len(users)], gid, fmt.Sprint(i, text[:len(text)-8])).EventID)
	}
	proj := e.projector(t, inbox.Config{Window: 10_000, QuotaBytes: quota})
	e.runToHead(t, proj, proj)
	for _, u := range users {
		msgs, err := e.rdb.XRange(ctx, e.keys.Inbox(u.User), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		for _, m := range msgs {
			for k, v := range m.Values {
				bytes += int64(len(k) + len(fmt.Sprint(v)))
			}
		}
		if bytes > quota || len(msgs) < 2 {
			t.Fatalf("inbox of %s holds %d entries of %d bytes, want within %d bytes", u.User, len(msgs), bytes, quota)
		}
		count, err := e.rdb.Get(ctx, e.keys.InboxBytes(u.User)).Int64()
		if err != nil || count != bytes {
			t.Fatalf("inbox of %s: byte count %d (%v), the entries hold %d", u.User, count, err, bytes)
		}
		got := e.inbox(t, u.User)
		for i, en := range got[1:] { // the first may be the group's creation
			if want := ids[sent-len(got)+1+i]; en.EventID != want {
				t.Fatalf("inbox of %s entry %d is %x, want the newest in order", u.User, i+1, en.EventID)
			}
		}
	}
}
