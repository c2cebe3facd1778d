package eventstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster the fsync-always requirement holds for every master:
// one master with appendfsync everysec among masters with always refuses
// the open and names that master; all three with always open.
func TestFsyncAlwaysIsCheckedOnEveryMaster(t *testing.T) {
	ct := testsvc.StartRedisCluster(t, "--appendonly", "yes", "--appendfsync", "always")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	defer rdb.Close()
	cfg := eventstore.Config{Prefix: ct.Prefix, Partitions: 4, Durability: eventstore.Durability{RequireFsyncAlways: true}}
	store, err := eventstore.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatalf("every master with appendfsync always: %v", err)
	}
	store.Close()

	masters := ct.Masters(t)
	lax := masters[len(masters)-1]
	node := redis.NewClient(&redis.Options{Addr: lax})
	defer node.Close()
	if err := node.ConfigSet(ctx, "appendfsync", "everysec").Err(); err != nil {
		t.Fatal(err)
	}
	_, err = eventstore.Open(ctx, rdb, cfg)
	if err == nil {
		t.Fatalf("master %s with appendfsync everysec passed the check", lax)
	}
	if !strings.Contains(err.Error(), lax+" has appendonly yes, appendfsync everysec") || strings.Count(err.Error(), "appendfsync everysec") != 1 {
		t.Fatalf("error %q does not name master %s alone", err, lax)
	}
}

// On a Redis Cluster with one replica per master, an append with
// WaitReplicas 1 is confirmed by a WAIT on the master that took it: each
// append raises cmdstat_wait on its partition's master by one and on no
// other master. Asking for 2 replicas (a master has one) fails the append
// as unavailable with the count that master's WAIT returned.
func TestWaitRunsOnTheMasterOfTheAppend(t *testing.T) {
	ct := testsvc.RedisCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := eventstore.Config{Prefix: ct.Prefix, Partitions: 16, Durability: eventstore.Durability{WaitReplicas: 1}}
	rdb, store := openOnCluster(t, ct, cfg)

	masters := ct.Masters(t)
	aggOn := map[string]string{} // master -> an aggregate whose partition it holds
	for i := 0; i < 1000 && len(aggOn) < len(masters); i++ {
		agg := fmt.Sprintf("g/01J%023d", i)
		key := fmt.Sprintf("%s{p%d}:log", ct.Prefix, store.PartitionOf(agg))
		node, err := rdb.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := aggOn[node.Options().Addr]; !ok {
			aggOn[node.Options().Addr] = agg
		}
	}
	if len(aggOn) != len(masters) {
		t.Fatalf("partitions cover %d of %d masters", len(aggOn), len(masters))
	}
	// Each master twice in a row: a WAIT sent to masters in turn or at
	// random would miss.
	var order []string
	for _, m := range masters {
		order = append(order, m, m)
	}
	for _, m := range order {
		before := ct.CommandCalls(t, "wait")
		agg := aggOn[m]
		if _, err := store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: agg, Expected: eventstore.Any, Events: []*mpimv1.Event{renameEvent(agg, "w")},
		}}}); err != nil {
			t.Fatalf("append on master %s: %v", m, err)
		}
		after := ct.CommandCalls(t, "wait")
		for _, o := range masters {
			want := int64(0)
			if o == m {
				want = 1
			}
			if d := after[o] - before[o]; d != want {
				t.Fatalf("append on master %s: %d WAIT on master %s, want %d", m, d, o, want)
			}
		}
	}

	cfg.Durability = eventstore.Durability{WaitReplicas: 2, WaitTimeout: 100 * time.Millisecond}
	strict, err := eventstore.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	agg := aggOn[masters[0]]
	_, err = strict.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: agg, Expected: eventstore.Any, Events: []*mpimv1.Event{renameEvent(agg, "x")},
	}}})
	if domain.ErrorCode(err) != domain.EUnavailable || !strings.Contains(err.Error(), "committed on "+masters[0]+" but confirmed by 1 of 2 replicas") {
		t.Fatalf("append asking 2 replicas of a master with 1: %v", err)
	}
}

// When the partition's slot moved to another master after the client
// learned the slot map, the append sent to the old master is refused with
// MOVED (nothing written) and is sent again to the new master with its
// WAIT: one WAIT on each, the event in the log, and the new master's
// replica confirmed it.
func TestWaitFollowsAMovedSlot(t *testing.T) {
	m := newSlotMove(t)
	m.migrate(t)
	m.finish(t)
	m.appendWaitingOnBoth(t)
	m.wantOnDst(t, 1)
}

// While the partition's slot is migrating (MIGRATING on its master src,
// IMPORTING on dst) and its keys have moved to dst, src refuses the append
// with ASK (nothing written) and it is sent to dst after ASKING, with its
// WAIT there: one WAIT on each, one ASKING on dst, and dst's replica
// confirmed the append (WaitReplicas 1). Once the migration ends, both
// events are in the log on dst. (The partition's keys must all be on dst:
// an importing master refuses a script whose keys it lacks in part with
// TRYAGAIN.)
func TestWaitFollowsAnAskRedirect(t *testing.T) {
	m := newSlotMove(t)
	m.appendMessage(t) // the partition's keys, on src
	m.migrate(t)
	m.moveKeys(t)
	dst := m.dst.Options().Addr
	asking := m.ct.CommandCalls(t, "asking")[dst]
	m.appendWaitingOnBoth(t)
	if d := m.ct.CommandCalls(t, "asking")[dst] - asking; d != 1 {
		t.Errorf("the importing master ran %d ASKING, want 1 (before the append it was asked for)", d)
	}
	m.finish(t)
	m.wantOnDst(t, 2)
}

// While the partition's slot is migrating and only some of its keys have
// moved (the log on dst, the heads still on src), src answers the append's
// script TRYAGAIN (nothing written). The append is sent again after a
// backoff; once the resharding moved the rest and gave the slot to dst
// (here 300 ms later), it is redirected there and succeeds, with WaitReplicas
// confirmed on dst: the client never sees the migration.
func TestAppendWaitsOutAMigratingSlot(t *testing.T) {
	m := newSlotMove(t)
	m.appendMessage(t) // the partition's keys, on src
	m.migrate(t)
	m.moveKey(t, m.log)
	tryAgain := m.appendRaw(t)
	if tryAgain == nil || !strings.HasPrefix(tryAgain.Error(), "TRYAGAIN") {
		t.Fatalf("a script on src with its log moved answered %v, want TRYAGAIN (the test's premise)", tryAgain)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		m.moveKeys(t)
		m.finish(t)
	}()
	m.appendMessage(t)
	<-done
	m.wantOnDst(t, 2)
}

// moveKey migrates key from src to dst.
func (m *slotMove) moveKey(t *testing.T, key string) {
	t.Helper()
	host, port, _ := strings.Cut(m.dst.Options().Addr, ":")
	if err := m.src.Do(context.Background(), "MIGRATE", host, port, key, 0, 5000).Err(); err != nil {
		t.Fatalf("MIGRATE %s to %s: %v", key, m.dst.Options().Addr, err)
	}
}

// appendRaw runs a two-key script on src over the partition's log and a
// key of the slot still on src, as the append does, and returns its error.
func (m *slotMove) appendRaw(t *testing.T) error {
	t.Helper()
	ctx := context.Background()
	left, err := m.src.ClusterGetKeysInSlot(ctx, int(m.slot), 1).Result()
	if err != nil || len(left) == 0 {
		t.Fatalf("keys of slot %d left on src: %v %v", m.slot, left, err)
	}
	return m.src.Eval(ctx, "return redis.call('EXISTS', KEYS[1], KEYS[2])", []string{m.log, left[0]}).Err()
}

// slotMove is a cluster of the test's own, a store on it (WaitReplicas 1)
// and the slot of a conversation's partition, empty, about to move from
// its master src to another master dst.
type slotMove struct {
	ct           *testsvc.RedisClusterTarget
	store        *eventstore.Store
	conv, log    string // the conversation and its partition's log key
	slot         int64
	src, dst     *redis.Client
	srcID, dstID string
}

func newSlotMove(t *testing.T) *slotMove {
	t.Helper()
	ctx := context.Background()
	m := &slotMove{ct: testsvc.StartRedisCluster(t), conv: "d/MOVING.SLOT"}
	rdb, store := openOnCluster(t, m.ct, eventstore.Config{Prefix: m.ct.Prefix, Partitions: 16, Durability: eventstore.Durability{WaitReplicas: 1}})
	m.store = store
	p := store.PartitionOf(m.conv)
	m.log = fmt.Sprintf("%s{p%d}:log", m.ct.Prefix, p)
	var err error
	if m.src, err = rdb.MasterForKey(ctx, m.log); err != nil {
		t.Fatal(err)
	}
	if m.slot, err = m.src.ClusterKeySlot(ctx, fmt.Sprintf("{p%d}", p)).Result(); err != nil {
		t.Fatal(err)
	}
	if n := m.src.ClusterCountKeysInSlot(ctx, int(m.slot)).Val(); n != 0 {
		t.Fatalf("slot %d holds %d keys before the first append", m.slot, n)
	}
	for _, a := range m.ct.Masters(t) {
		if a != m.src.Options().Addr {
			m.dst = redis.NewClient(&redis.Options{Addr: a})
			t.Cleanup(func() { m.dst.Close() })
			break
		}
	}
	m.srcID, m.dstID = m.src.Do(ctx, "CLUSTER", "MYID").Val().(string), m.dst.Do(ctx, "CLUSTER", "MYID").Val().(string)
	return m
}

// migrate starts moving the slot: IMPORTING on dst, MIGRATING on src.
func (m *slotMove) migrate(t *testing.T) {
	t.Helper()
	m.setSlot(t, m.dst, "IMPORTING", m.srcID)
	m.setSlot(t, m.src, "MIGRATING", m.dstID)
}

// moveKeys migrates every key of the slot from src to dst, as a
// resharding does between migrate and finish.
func (m *slotMove) moveKeys(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	keys, err := m.src.ClusterGetKeysInSlot(ctx, int(m.slot), 100).Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys of slot %d on %s: %v %v", m.slot, m.src.Options().Addr, keys, err)
	}
	host, port, _ := strings.Cut(m.dst.Options().Addr, ":")
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	if err := m.src.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("MIGRATE %v to %s: %v", keys, m.dst.Options().Addr, err)
	}
}

// finish gives the slot to dst, on dst and then src.
func (m *slotMove) finish(t *testing.T) {
	t.Helper()
	m.setSlot(t, m.dst, "NODE", m.dstID)
	m.setSlot(t, m.src, "NODE", m.dstID)
}

func (m *slotMove) setSlot(t *testing.T, on *redis.Client, state, id string) {
	t.Helper()
	if err := on.Do(context.Background(), "CLUSTER", "SETSLOT", m.slot, state, id).Err(); err != nil {
		t.Fatalf("CLUSTER SETSLOT %d %s %s on %s: %v", m.slot, state, id, on.Options().Addr, err)
	}
}

// appendMessage appends a message with a cell (the script's keys: the
// partition's log and heads, the conversation's cells) to the
// conversation.
func (m *slotMove) appendMessage(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: m.conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(m.conv, "m")}, Cells: []*eventstore.Cell{{Value: []byte("c")}},
	}}}); err != nil {
		t.Fatalf("append to slot %d: %v", m.slot, err)
	}
}

// appendWaitingOnBoth appends a message and checks that src and dst ran
// one WAIT each meanwhile: src's in the pipeline it refused with the
// redirect, dst's after the append.
func (m *slotMove) appendWaitingOnBoth(t *testing.T) {
	t.Helper()
	before := m.ct.CommandCalls(t, "wait")
	m.appendMessage(t)
	after := m.ct.CommandCalls(t, "wait")
	for _, a := range []string{m.src.Options().Addr, m.dst.Options().Addr} {
		if d := after[a] - before[a]; d != 1 {
			t.Errorf("master %s ran %d WAIT, want 1 (the old master's after the redirect, the new one's after the append)", a, d)
		}
	}
}

// wantOnDst checks that dst holds n entries of the log.
func (m *slotMove) wantOnDst(t *testing.T, n int64) {
	t.Helper()
	if got := m.dst.XLen(context.Background(), m.log).Val(); got != n {
		t.Errorf("the new master holds %d log entries, want %d", got, n)
	}
}

// openOnCluster opens a store with cfg on a cluster client of ct; both
// close when the test ends.
func openOnCluster(tb testing.TB, ct *testsvc.RedisClusterTarget, cfg eventstore.Config) (*redis.ClusterClient, *eventstore.Store) {
	tb.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs})
	tb.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return rdb, store
}

// With WaitReplicas, Tail hands entries on only once the replicas of the
// partition's master have them: on a cluster with one replica per master
// the entries come with a WAIT on that master; a store asking for 2
// replicas gets unavailable, naming the count, and no entries; a tail that
// finds nothing sends no WAIT.
func TestTailConfirmsEntriesReplicated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ct, rdb, store, cfg := openWaiting(t)
	const agg = "g/01J00000000000000000000002"
	res, err := store.Append(ctx, eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
		Aggregate: agg, Expected: eventstore.Any, Events: []*mpimv1.Event{renameEvent(agg, "t")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Partition
	m := masterOf(t, ct, rdb, p)
	before := ct.CommandCalls(t, "wait")[m]
	recs, err := store.Tail(ctx, p, eventstore.Position{}, 10, time.Millisecond)
	if err != nil || len(recs) != 1 {
		t.Fatalf("tail with one replica: %d entries, %v", len(recs), err)
	}
	if n := ct.CommandCalls(t, "wait")[m] - before; n != 1 {
		t.Fatalf("tail of partition %d: %d WAIT on its master %s, want 1", p, n, m)
	}
	recs, err = store.Tail(ctx, p, recs[0].Position, 10, time.Millisecond)
	if err != nil || len(recs) != 0 {
		t.Fatalf("tail at the head: %d entries, %v", len(recs), err)
	}
	if n := ct.CommandCalls(t, "wait")[m] - before; n != 1 {
		t.Fatalf("a tail that found nothing sent a WAIT (%d in all)", n)
	}

	cfg.Durability = eventstore.Durability{WaitReplicas: 2, WaitTimeout: 100 * time.Millisecond}
	strict, err := eventstore.Open(ctx, rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	recs, err = strict.Tail(ctx, p, eventstore.Position{}, 10, time.Millisecond)
	if domain.ErrorCode(err) != domain.EUnavailable || !strings.Contains(err.Error(), "is on 1 of 2 replicas") || len(recs) != 0 {
		t.Fatalf("tail asking 2 replicas of a master with 1: %d entries, %v", len(recs), err)
	}
}

// With WaitReplicas an append answered as a duplicate is confirmed on its
// master's replicas itself (its script wrote nothing, so the group
// commit's WAIT counts an earlier write): it raises cmdstat_wait on the
// master by two.
func TestDuplicateIsConfirmedReplicated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ct, rdb, store, _ := openWaiting(t)
	const agg = "g/01J00000000000000000000003"
	req := eventstore.AppendRequest{IdempotencyKey: "dup-1", Streams: []eventstore.StreamAppend{{
		Aggregate: agg, Expected: eventstore.Any, Events: []*mpimv1.Event{renameEvent(agg, "d")},
	}}}
	first, err := store.Append(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	m := masterOf(t, ct, rdb, first.Partition)
	before := ct.CommandCalls(t, "wait")[m]
	again, err := store.Append(ctx, req)
	if err != nil || !again.Duplicate || again.Events[0].Position != first.Events[0].Position {
		t.Fatalf("the retry: %+v, %v; want the first result as a duplicate", again, err)
	}
	if n := ct.CommandCalls(t, "wait")[m] - before; n != 2 {
		t.Fatalf("the duplicate ran %d WAIT on its master, want 2 (the group commit's and its own)", n)
	}

}

// openWaiting opens a store with WaitReplicas 1 on the shared cluster.
func openWaiting(t *testing.T) (*testsvc.RedisClusterTarget, *redis.ClusterClient, *eventstore.Store, eventstore.Config) {
	t.Helper()
	ct := testsvc.RedisCluster(t)
	cfg := eventstore.Config{Prefix: ct.Prefix, Partitions: 4, Durability: eventstore.Durability{WaitReplicas: 1}}
	rdb, store := openOnCluster(t, ct, cfg)
	return ct, rdb, store, cfg
}

// masterOf returns the address of the master of partition p's log.
func masterOf(t *testing.T, ct *testsvc.RedisClusterTarget, rdb *redis.ClusterClient, p int) string {
	t.Helper()
	master, err := rdb.MasterForKey(context.Background(), fmt.Sprintf("%s{p%d}:log", ct.Prefix, p))
	if err != nil {
		t.Fatal(err)
	}
	return master.Options().Addr
}
