package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster, `mpimctl stats` (given the cluster's seed nodes)
// counts the inboxes of every master: 20 inboxes spread by user hash tag
// are all counted, their cursors are not.
func TestStatsCountsInboxesOnEveryMasterOfACluster(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: ct.Prefix, Partitions: 4}) // records the deployment
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	keys := inbox.NewKeys(ct.Prefix)
	const users = 20
	var entries int64
	for i := range users {
		u := domain.UserID(fmt.Sprintf("u/%02d", i))
		for j := range i%3 + 1 {
			entries++
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Inbox(u), Values: []any{"n", j}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := rdb.Set(ctx, keys.Cursor(u, "phone"), "0-1", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := ctl(t, "stats", "--json", "--redis-addr", strings.Join(ct.Addrs[:3], ","), "--prefix", ct.Prefix, "--partitions", "4")
	if err != nil {
		t.Fatal(err)
	}
	var st stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats %q: %v", out, err)
	}
	if st.Inboxes.Count != users || st.Inboxes.Entries != entries || st.Inboxes.Largest != 3 {
		t.Fatalf("inboxes %+v, want %d inboxes of %d entries", st.Inboxes, users, entries)
	}
}
