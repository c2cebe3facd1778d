package cache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
)

// On a Redis Cluster with one replica per master, a batch applied with
// WaitReplicas 1 sends a WAIT to masters that took its writes before the
// checkpoint moves; with WaitReplicas 2 (a master has one) the batch fails
// unavailable, naming the count, and the checkpoint stays.
func TestCheckpointWaitsForReplicatedWrites(t *testing.T) {
	w := commandtest.New(t, commandtest.Options{Partitions: 4, Cluster: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ct := testsvc.RedisCluster(t)
	var users []domain.UserID
	for _, n := range []string{"alice", "bob", "carol", "dave"} {
		users = append(users, commandtest.Register(t, w.Svc, n, strings.ToUpper(n)).User)
	}
	p := w.Store.PartitionOf(string(users[0]))
	recs, err := w.Store.ReadPartition(ctx, p, eventstore.Position{}, 1000)
	if err != nil || len(recs) == 0 {
		t.Fatalf("partition %d: %d records, %v", p, len(recs), err)
	}
	b := &projectors.Batch{Partition: p, Token: 1, To: recs[len(recs)-1].Position, Events: recs}

	strict, err := cache.New(w.RDB, cache.Config{Prefix: w.Prefix, WaitReplicas: 2, WaitTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Claim(ctx, p, b.Token); err != nil {
		t.Fatal(err)
	}
	err = strict.Apply(ctx, b)
	if domain.ErrorCode(err) != domain.EUnavailable || !strings.Contains(err.Error(), " of 2 replicas within") {
		t.Fatalf("apply waiting for 2 replicas of masters with one: %v, want unavailable naming the count", err)
	}
	if pos, err := strict.Checkpoint(ctx, p); err != nil || !pos.IsZero() {
		t.Fatalf("checkpoint %v %v after the failed wait, want none", pos, err)
	}

	proj, err := cache.New(w.RDB, cache.Config{Prefix: w.Prefix, WaitReplicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	before := ct.CommandCalls(t, "wait")
	if err := proj.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	after := ct.CommandCalls(t, "wait")
	waits := int64(0)
	for a := range after {
		waits += after[a] - before[a]
	}
	if waits == 0 {
		t.Errorf("no master ran a WAIT for the batch's writes")
	}
	if pos, err := proj.Checkpoint(ctx, p); err != nil || pos != b.To {
		t.Fatalf("checkpoint %v %v, want %v", pos, err, b.To)
	}
	keys := cachekeys.New(w.Prefix)
	for _, u := range users {
		if w.Store.PartitionOf(string(u)) == p && w.RDB.HGet(ctx, keys.Profile(u), cachekeys.ProfileUsername).Val() == "" {
			t.Errorf("profile of %s not written", u)
		}
	}
}

func TestWaitSettingsOutOfRangeAreRefused(t *testing.T) {
	for _, cfg := range []cache.Config{{WaitReplicas: -1}, {WaitReplicas: 1, WaitTimeout: -time.Second}} {
		if _, err := cache.New(nil, cfg); err == nil || !strings.Contains(err.Error(), "must not be negative") {
			t.Errorf("config %+v: %v", cfg, err)
		}
	}
}
