package inbox_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster a batch's inboxes are written by one script call each
// (append.lua), pipelined by master: every member's inbox gets the batch's
// entries in order, each notification carries exactly the entries after
// the inbox's previous last one (its Prev), batch after batch, with one to
// three messages per batch, also after the masters lost their scripts
// (SCRIPT FLUSH: the calls are made again, once); the byte counter of each
// inbox grows with every batch.
func TestClusterBatchWritesEveryInboxWithItsPrev(t *testing.T) {
	w := commandtest.New(t, commandtest.Options{Partitions: 8, Cluster: true})
	e := &env{rdb: w.RDB, addr: w.Addr, store: w.Store, svc: w.Svc, prefix: w.Prefix, keys: delivery.NewKeys(w.Prefix)}
	ctx := context.Background()
	cc := e.rdb.(*redis.ClusterClient)
	names := []string{"ann", "ben", "cat", "dan", "eve", "fox", "gil", "hal", "ivy", "jon"}
	users, gid, p := groupChat(t, e, names...)
	live := time.Now().Add(time.Hour)
	gateways := []string{"gw-1", "gw-2", "gw-3"}
	var channels []string
	for _, gw := range gateways {
		channels = append(channels, e.keys.Notify(gw))
	}
	chanOf := map[domain.UserID]string{}
	for i, u := range users {
		e.route(t, u, "phone", gateways[i%len(gateways)], live)
		chanOf[u.User] = channels[i%len(gateways)]
	}
	subs := map[string]*redis.PubSub{} // one per channel: their slots differ
	for _, ch := range channels {
		sub := cc.SSubscribe(ctx, ch)
		defer sub.Close()
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		subs[ch] = sub
	}
	proj := e.projector(t, inbox.Config{})
	const token = 5
	if _, err := proj.Claim(ctx, p, token); err != nil {
		t.Fatal(err)
	}
	var after eventstore.Position
	prev := map[domain.UserID]string{}
	bytes := map[domain.UserID]int64{}
	for _, u := range users {
		prev[u.User] = "0-0"
	}
	for round := range 6 {
		if round == 3 {
			if err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return m.ScriptFlush(ctx).Err() }); err != nil {
				t.Fatal(err)
			}
		}
		for k := range 1 + round%3 {
			e.say(t, users[(round+k)%len(users)], gid, fmt.Sprintf("round %d message %d", round, k))
		}
		b := e.batch(t, p, token, after)
		if err := proj.Apply(ctx, b); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		after = b.To
		got := drainSharded(t, cc, subs)
		want := map[string][]delivery.Notification{}
		for _, u := range users { // users are sorted by id in a notification
			h := carriedHead(t, e, u.User, prev[u.User])
			if n := len(h.Entries); round > 0 && n != 1+round%3 { // round 0 has the group's creation too
				t.Fatalf("round %d: %s's inbox got %d entries, want %d", round, u.User, n, 1+round%3)
			}
			ch := chanOf[u.User]
			if len(want[ch]) == 0 {
				want[ch] = []delivery.Notification{{}}
			}
			want[ch][0].Users = insertSorted(want[ch][0].Users, h)
			prev[u.User] = h.Last
			n, err := e.rdb.Get(ctx, e.keys.InboxBytes(u.User)).Int64()
			if err != nil || n <= bytes[u.User] {
				t.Fatalf("round %d: %s's byte count %d (%v), was %d", round, u.User, n, err, bytes[u.User])
			}
			bytes[u.User] = n
		}
		for _, ch := range channels {
			if !reflect.DeepEqual(got[ch], want[ch]) {
				t.Fatalf("round %d: %s got the heads of %v, want those of %v", round, ch, headUsers(got[ch]), headUsers(want[ch]))
			}
		}
	}
}

// insertSorted adds h to hs in user order.
func insertSorted(hs []delivery.Head, h delivery.Head) []delivery.Head {
	i := 0
	for i < len(hs) && hs[i].User < h.User {
		i++
	}
	return append(hs[:i], append([]delivery.Head{h}, hs[i:]...)...)
}

// drainSharded is drain for sharded pub/sub on a cluster, a
// subscription per channel.
func drainSharded(t *testing.T, cc *redis.ClusterClient, subs map[string]*redis.PubSub) map[string][]delivery.Notification {
	t.Helper()
	got := map[string][]delivery.Notification{}
	for ch, sub := range subs {
		if err := cc.SPublish(context.Background(), ch, "end").Err(); err != nil {
			t.Fatal(err)
		}
		receiveUntilEnd(t, sub, 1, got)
	}
	return got
}
