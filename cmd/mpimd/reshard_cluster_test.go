package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// Resharding under traffic: the deployment runs on a Redis Cluster of its
// own (3 masters, one replica each, --wait-replicas 1) under the fault
// traffic, and every slot of the busiest master that holds keys is moved
// to another master, and then every slot of that one back, as an
// operator's resharding does it (redis-cli
// --cluster reshard: IMPORTING on the target, MIGRATING on the source,
// MIGRATE of the slot's keys a batch at a time, then the slot given to the
// target on every master). Meanwhile appends meet ASK and TRYAGAIN, the
// projectors' scripts meet keys on both sides, and the gateways' reads
// follow the keys. Nothing may be lost, duplicated or reordered in the
// log, the read models or on any device, and the senders may see at most
// a few retried unavailable answers (maxSilentRetries), as on a healthy
// stack.
//
//	go test -race -count=1 -run FaultRedisClusterReshard -v ./cmd/mpimd
func TestFaultRedisClusterReshardUnderTraffic(t *testing.T) {
	began := time.Now()
	ct := testsvc.StartRedisCluster(t)
	fc := startFaultCluster(t, strings.Join(ct.Addrs, ","), ct.Prefix, []string{"gw-a", "gw-b"}, "--wait-replicas", "1")
	devs, senders, gid := fc.setupUsers(t)
	tr := startFaultTraffic(t, fc.ctx, senders, gid)
	tr.waitEach("traffic before the resharding", make([]int, len(senders)), outageSends)

	ft := &failoverTest{ct: ct, fc: fc, tr: tr}
	src, convs := ft.busiestMaster(t)
	var dst string
	for _, m := range ct.Masters(t) {
		if m != src {
			dst = m
			break
		}
	}
	// An inbox write may be cut off between inboxes by a redirect and the
	// batch fanned out again.
	fc.faults.refanout.Store(true)
	atMove := tr.snapshot()
	moveStart := time.Now()
	moved, keys := reshard(t, src, dst, ct.Prefix)
	took := time.Since(moveStart)
	tr.waitEach("every sender acked again after the resharding", atMove, outageSends)
	// And back: every slot of the target that holds keys goes to the
	// first master, under traffic again.
	atBack := tr.snapshot()
	backStart := time.Now()
	back, backKeys := reshard(t, dst, src, ct.Prefix)
	backTook := time.Since(backStart)
	tr.waitEach("every sender acked again after the resharding back", atBack, outageSends)
	tr.finish(false)
	if t.Failed() {
		t.FailNow()
	}
	checkAlive(t, append([]*mpimdProc{fc.projector}, fc.gateways...)...)

	// The slots moved back are the first master's again.
	for _, slot := range back {
		if owner := slotOwner(t, src, slot); owner != src {
			t.Errorf("slot %d is %s's on %s, want %s's", slot, owner, src, src)
		}
	}
	sent := tr.sent.all()
	la := fc.auditLog(t, sent)
	rows := fc.auditReadModels(t, sent)
	final := waitDelivered(t, "every acknowledged send", sent, devs)
	logFaultAudit(t, &tr.st, la, rows, final, began)
	wantAuditsOK(t, la, len(sent), final)
	var failed int
	tr.st.count(func(s *sendStats) { failed = s.failed })
	t.Logf("moved %d slots (%d keys) from %s (%d of the traffic's conversations) to %s in %.1fs under traffic, then %d slots (%d keys) back in %.1fs; "+
		"%d sends acked before, %d in all; %d answered unavailable/conflict and retried",
		len(moved), keys, src, convs, dst, took.Seconds(), len(back), backKeys, backTook.Seconds(), sum(atMove), len(sent), failed)
}

// reshard moves every slot of the master src that holds keys under
// prefix to the master dst, one slot after the other, as redis-cli
// --cluster reshard does, and returns the slots and how many keys moved.
func reshard(t *testing.T, src, dst, prefix string) (slots []int, keys int) {
	t.Helper()
	ctx := context.Background()
	s, d := redis.NewClient(&redis.Options{Addr: src}), redis.NewClient(&redis.Options{Addr: dst})
	defer s.Close()
	defer d.Close()
	srcID, dstID := nodeID(t, s), nodeID(t, d)
	var masters []*redis.Client
	for _, n := range clusterMasters(t, s) {
		c := redis.NewClient(&redis.Options{Addr: n})
		defer c.Close()
		masters = append(masters, c)
	}
	setSlot := func(on *redis.Client, slot int, args ...any) {
		if err := on.Do(ctx, append([]any{"CLUSTER", "SETSLOT", slot}, args...)...).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT %d %v on %s: %v", slot, args, on.Options().Addr, err)
		}
	}
	host, port, _ := strings.Cut(dst, ":")
	for _, slot := range slotsHoldingPrefix(t, src, prefix) {
		setSlot(d, slot, "IMPORTING", srcID)
		setSlot(s, slot, "MIGRATING", dstID)
		for {
			batch, err := s.ClusterGetKeysInSlot(ctx, slot, 10).Result()
			if err != nil {
				t.Fatalf("keys of slot %d on %s: %v", slot, src, err)
			}
			if len(batch) == 0 {
				break
			}
			args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
			for _, k := range batch {
				args = append(args, k)
			}
			if err := s.Do(ctx, args...).Err(); err != nil {
				t.Fatalf("MIGRATE %v to %s: %v", batch, dst, err)
			}
			keys += len(batch)
		}
		setSlot(d, slot, "NODE", dstID)
		setSlot(s, slot, "NODE", dstID)
		for _, m := range masters {
			if a := m.Options().Addr; a != src && a != dst {
				setSlot(m, slot, "NODE", dstID)
			}
		}
		slots = append(slots, slot)
	}
	if len(slots) == 0 {
		t.Fatalf("no slot of %s holds keys under %s", src, prefix)
	}
	return slots, keys
}

// slotsHoldingPrefix returns the slots of the master at addr that hold a
// key under prefix (a SCAN of the node).
func slotsHoldingPrefix(t *testing.T, addr, prefix string) []int {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ranges, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS on %s: %v", addr, err)
	}
	seen := map[int]bool{}
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		slot, err := c.ClusterKeySlot(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", iter.Val(), err)
		}
		if ownerIn(ranges, int(slot)) == addr {
			seen[int(slot)] = true
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s: %v", addr, err)
	}
	slots := make([]int, 0, len(seen))
	for s := range seen {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	return slots
}

// slotOwner returns the address of the master that owns slot in the slot
// map of the node at addr.
func slotOwner(t *testing.T, addr string, slot int) string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ranges, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS on %s: %v", addr, err)
	}
	return ownerIn(ranges, slot)
}

// ownerIn returns the address of slot's master in a CLUSTER SLOTS answer.
func ownerIn(ranges []redis.ClusterSlot, slot int) string {
	for _, r := range ranges {
		if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
			return r.Nodes[0].Addr
		}
	}
	return ""
}

// clusterMasters returns the addresses of the masters in the slot map of
// the node c.
func clusterMasters(t *testing.T, c *redis.Client) []string {
	t.Helper()
	ranges, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS on %s: %v", c.Options().Addr, err)
	}
	var out []string
	for _, r := range ranges {
		if len(r.Nodes) > 0 && !slices.Contains(out, r.Nodes[0].Addr) {
			out = append(out, r.Nodes[0].Addr)
		}
	}
	return out
}

// nodeID returns the cluster node id of c.
func nodeID(t *testing.T, c *redis.Client) string {
	t.Helper()
	id, err := c.Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("CLUSTER MYID on %s: %v", c.Options().Addr, err)
	}
	return id
}
