package cache_test

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
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/redis/go-redis/v9"
)

type env struct {
	rdb    redis.UniversalClient
	store  *eventstore.Store
	svc    *command.Service
	prefix string
	keys   cachekeys.Keys
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	w := commandtest.New(tb, commandtest.Options{Partitions: 4})
	return &env{rdb: w.RDB, store: w.Store, svc: w.Svc, prefix: w.Prefix, keys: cachekeys.New(w.Prefix)}
}

func (e *env) projector(tb testing.TB) *cache.Projector {
	tb.Helper()
	p, err := cache.New(e.rdb, cache.Config{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func (e *env) register(tb testing.TB, name string) command.Actor {
	tb.Helper()
	return commandtest.Register(tb, e.svc, name, strings.ToUpper(name))
}

// runToHead runs proj until its checkpoint of every partition is the
// partition's last entry.
func (e *env) runToHead(tb testing.TB, proj *cache.Projector) {
	tb.Helper()
	projectorstest.RunToHead(tb, e.store, proj, proj, 16)
}

// dump returns every key under the model's namespace with its canonical
// content.
func (e *env) dump(tb testing.TB) map[string]string {
	tb.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := e.rdb.Scan(ctx, 0, e.keys.Namespace()+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ := e.rdb.Type(ctx, k).Val(); typ {
		case "hash":
			out[k] = fmt.Sprint(e.rdb.HGetAll(ctx, k).Val()) // fmt sorts map keys
		case "set":
			m := e.rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			out[k] = fmt.Sprint(m)
		default:
			tb.Fatalf("key %s has type %s", k, typ)
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

type step struct{ tb testing.TB }

func (s step) ok(_ command.Result, err error) {
	s.tb.Helper()
	if err != nil {
		s.tb.Fatal(err)
	}
}

// world produces contacts, profiles and groups through the write path.
func world(t *testing.T, e *env) ([]command.Actor, []domain.GroupID) {
	ctx := context.Background()
	s := step{t}
	var us []command.Actor
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		us = append(us, e.register(t, n))
	}
	a, b, c, d, er := us[0], us[1], us[2], us[3], us[4]
	befriend := func(x, y command.Actor) {
		s.ok(e.svc.Contact(ctx, x, y.User, domain.RequestFriend{From: x.User, To: y.User}))
		s.ok(e.svc.Contact(ctx, y, x.User, domain.AcceptFriend{By: y.User}))
	}
	befriend(a, b)
	befriend(a, c)
	befriend(b, c)
	befriend(d, er)
	s.ok(e.svc.Contact(ctx, c, b.User, domain.RemoveFriend{By: c.User}))
	s.ok(e.svc.Contact(ctx, a, c.User, domain.Block{By: a.User})) // ends a-c friendship
	s.ok(e.svc.Contact(ctx, d, b.User, domain.Block{By: d.User}))
	s.ok(e.svc.Contact(ctx, b, d.User, domain.Block{By: b.User}))
	s.ok(e.svc.Contact(ctx, d, b.User, domain.Unblock{By: d.User}))
	s.ok(e.svc.UpdateUser(ctx, a, domain.UpdateProfile{DisplayName: "Alice A", AvatarURL: "https://example.com/a.png"}))
	s.ok(e.svc.UpdateUser(ctx, er, domain.UpdateProfile{DisplayName: "Erin"}))

	g1, res, err := e.svc.CreateGroup(ctx, a, "team", []domain.UserID{b.User, c.User}, true)
	s.ok(res, err)
	s.ok(e.svc.UpdateGroup(ctx, d, g1, domain.JoinGroup{User: d.User}))
	s.ok(e.svc.UpdateGroup(ctx, a, g1, domain.SetRole{Actor: a.User, Target: b.User, Role: domain.RoleAdmin}))
	s.ok(e.svc.UpdateGroup(ctx, b, g1, domain.KickMember{Actor: b.User, Target: c.User}))
	s.ok(e.svc.UpdateGroup(ctx, b, g1, domain.MuteMember{Actor: b.User, Target: d.User, Until: time.Now().Add(time.Hour)}))
	s.ok(e.svc.UpdateGroup(ctx, d, g1, domain.AddMember{Actor: d.User, User: er.User}))
	s.ok(e.svc.UpdateGroup(ctx, a, g1, domain.MuteMember{Actor: a.User, Target: er.User}))
	s.ok(e.svc.UpdateGroup(ctx, a, g1, domain.UnmuteMember{Actor: a.User, Target: er.User}))
	s.ok(e.svc.UpdateGroup(ctx, a, g1, domain.RenameGroup{Actor: a.User, Name: "team two"}))
	s.ok(e.svc.UpdateGroup(ctx, er, g1, domain.LeaveGroup{User: er.User}))
	if _, err := e.svc.Send(ctx, a, domain.SendMessage{Conversation: domain.GroupConversation(g1), Kind: domain.KindText, Text: "hi"}); err != nil {
		t.Fatal(err)
	}

	g2, res, err := e.svc.CreateGroup(ctx, c, "closed", []domain.UserID{er.User, d.User}, false)
	s.ok(res, err)
	s.ok(e.svc.UpdateGroup(ctx, c, g2, domain.DissolveGroup{Actor: c.User}))
	return us, []domain.GroupID{g1, g2}
}

// checkModel compares the model with the state the write side decides on.
func checkModel(t *testing.T, e *env, us []command.Actor, gs []domain.GroupID) {
	t.Helper()
	ctx := context.Background()
	sorted := func(m []string) []string { slices.Sort(m); return m }
	for _, u := range us {
		user, err := e.svc.User(ctx, u.User)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{cachekeys.ProfileUsername: user.Username(), cachekeys.ProfileName: user.DisplayName(), cachekeys.ProfileAvatar: user.AvatarURL()}
		if got := e.rdb.HGetAll(ctx, e.keys.Profile(u.User)).Val(); !reflect.DeepEqual(got, want) {
			t.Errorf("profile of %s: %v, want %v", u.User, got, want)
		}
		friends, blocks, blockedBy := []string{}, []string{}, []string{}
		for _, o := range us {
			if o.User == u.User {
				continue
			}
			rel, err := e.svc.Relationship(ctx, u.User, o.User)
			if err != nil {
				t.Fatal(err)
			}
			if rel.Friends() {
				friends = append(friends, string(o.User))
			}
			if rel.Blocked(u.User) {
				blocks = append(blocks, string(o.User))
			}
			if rel.Blocked(o.User) {
				blockedBy = append(blockedBy, string(o.User))
			}
		}
		for name, c := range map[string]struct {
			key  string
			want []string
		}{
			"friends":    {e.keys.Friends(u.User), friends},
			"blocks":     {e.keys.Blocks(u.User), blocks},
			"blocked by": {e.keys.BlockedBy(u.User), blockedBy},
		} {
			if got := sorted(e.rdb.SMembers(ctx, c.key).Val()); !reflect.DeepEqual(got, sorted(c.want)) {
				t.Errorf("%s of %s: %v, want %v", name, u.User, got, c.want)
			}
		}
	}
	myGroups := map[domain.UserID][]string{}
	for _, gid := range gs {
		g, err := e.svc.Group(ctx, gid)
		if err != nil {
			t.Fatal(err)
		}
		info := map[string]string{cachekeys.GroupName: g.Name(), cachekeys.GroupOwner: string(g.Owner()),
			cachekeys.GroupOpen: flag(g.Open()), cachekeys.GroupDissolved: flag(g.Dissolved())}
		if got := e.rdb.HGetAll(ctx, e.keys.GroupInfo(gid)).Val(); !reflect.DeepEqual(got, info) {
			t.Errorf("info of %s: %v, want %v", gid, got, info)
		}
		roles, muted := map[string]string{}, map[string]string{}
		for _, m := range g.Members() {
			roles[string(m.User)] = m.Role.String()
			myGroups[m.User] = append(myGroups[m.User], string(gid))
			if m.Muted {
				var until int64
				if !m.MutedUntil.IsZero() {
					until = m.MutedUntil.UnixMilli()
				}
				muted[string(m.User)] = fmt.Sprint(until)
			}
		}
		if got := e.rdb.HGetAll(ctx, e.keys.Members(gid)).Val(); !reflect.DeepEqual(got, roles) {
			t.Errorf("members of %s: %v, want %v", gid, got, roles)
		}
		if got := e.rdb.HGetAll(ctx, e.keys.Muted(gid)).Val(); !reflect.DeepEqual(got, muted) {
			t.Errorf("mutes of %s: %v, want %v", gid, got, muted)
		}
	}
	for _, u := range us {
		if got, want := sorted(e.rdb.SMembers(ctx, e.keys.Groups(u.User)).Val()), sorted(append([]string{}, myGroups[u.User]...)); !reflect.DeepEqual(got, want) {
			t.Errorf("groups of %s: %v, want %v", u.User, got, want)
		}
	}
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func TestModelMatchesTheDomainAndARebuildAfterReset(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	us, gs := world(t, e)
	proj := e.projector(t)
	e.runToHead(t, proj)
	checkModel(t, e, us, gs)
	built := e.dump(t)
	if len(built) < 20 {
		t.Fatalf("the model has only %d keys", len(built))
	}

	if err := proj.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if left := e.dump(t); len(left) != 0 {
		t.Fatalf("Reset left %d model keys", len(left))
	}
	for p := range e.store.Partitions() {
		if pos, err := proj.Checkpoint(ctx, p); err != nil || !pos.IsZero() {
			t.Fatalf("checkpoint of partition %d after Reset: %v %v", p, pos, err)
		}
	}
	e.runToHead(t, e.projector(t))
	if rebuilt := e.dump(t); !reflect.DeepEqual(rebuilt, built) {
		t.Fatalf("rebuilt model differs:\n%v\nwant\n%v", rebuilt, built)
	}
}

// Replaying a batch after a crash that left its writes done but the
// checkpoint behind gives the same model.
func TestReappliedBatchGivesTheSameModel(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	us, gs := world(t, e)
	proj := e.projector(t)
	for p := range e.store.Partitions() {
		if _, err := proj.Claim(ctx, p, 1); err != nil {
			t.Fatal(err)
		}
		recs, err := e.store.ReadPartition(ctx, p, eventstore.Position{}, 100_000)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			continue
		}
		// Half the partition first, then all of it from zero again.
		half := &projectors.Batch{Partition: p, Token: 1, To: recs[len(recs)/2].Position, Events: recs[:len(recs)/2+1]}
		if err := proj.Apply(ctx, half); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%sproj:{cache:p%d}:ckpt", e.prefix, p)
		if err := e.rdb.HDel(ctx, key, "pos").Err(); err != nil { // the checkpoint never moved
			t.Fatal(err)
		}
		all := &projectors.Batch{Partition: p, Token: 1, To: recs[len(recs)-1].Position, Events: recs}
		if err := proj.Apply(ctx, all); err != nil {
			t.Fatal(err)
		}
	}
	checkModel(t, e, us, gs)
}

func TestFencedOrMovedBatchWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.register(t, "alice")
	p := e.store.PartitionOf(string(a.User))
	proj := e.projector(t)
	const old, current = 1_700_000_000_000_000_000, 1_700_000_000_000_000_001
	if _, err := proj.Claim(ctx, p, current); err != nil {
		t.Fatal(err)
	}
	if _, err := proj.Claim(ctx, p, old); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("claim with an older token: %v, want ErrFenced", err)
	}
	recs, err := e.store.ReadPartition(ctx, p, eventstore.Position{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	b := &projectors.Batch{Partition: p, Token: old, To: recs[len(recs)-1].Position, Events: recs}
	if err := proj.Apply(ctx, b); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("apply with a stale token: %v, want ErrFenced", err)
	}
	b.Token, b.After = current, eventstore.Position{Ms: 1}
	if err := proj.Apply(ctx, b); !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("apply after a stale checkpoint: %v, want ErrCheckpointMoved", err)
	}
	if m := e.dump(t); len(m) != 0 {
		t.Fatalf("refused batches wrote %v", m)
	}
	b.After = eventstore.Position{}
	if err := proj.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if pos, err := proj.Checkpoint(ctx, p); err != nil || pos != b.To {
		t.Fatalf("checkpoint %v %v, want %v", pos, err, b.To)
	}
	if e.rdb.HGet(ctx, e.keys.Profile(a.User), cachekeys.ProfileUsername).Val() != "alice" {
		t.Fatal("profile not written")
	}
}

func TestUndecodableEntryIsQuarantinedAndPassed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := e.register(t, "alice")
	p := e.store.PartitionOf(string(a.User))
	garbage := "not an envelope"
	bad, err := e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: fmt.Sprintf("%s{p%d}:log", e.prefix, p), Values: []any{"v", "1", "s", "0", "d", garbage}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdateUser(ctx, a, domain.UpdateProfile{DisplayName: "after"}); err != nil {
		t.Fatal(err)
	}
	proj := e.projector(t)
	e.runToHead(t, proj)
	q, err := e.rdb.XRange(ctx, e.prefix+"quarantine:cache", "-", "+").Result()
	if err != nil || len(q) != 1 {
		t.Fatalf("quarantine: %v %v, want one entry", q, err)
	}
	if v := q[0].Values; v["position"] != bad || v["raw"] != garbage || v["partition"] != fmt.Sprint(p) || v["reason"] == "" {
		t.Fatalf("quarantine entry %v", v)
	}
	if got := e.rdb.HGet(ctx, e.keys.Profile(a.User), cachekeys.ProfileName).Val(); got != "after" {
		t.Fatalf("event after the bad entry not applied: name %q", got)
	}
	if err := proj.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.rdb.Exists(ctx, e.prefix+"quarantine:cache").Val(); n != 0 {
		t.Fatal("Reset kept the quarantine")
	}
}
