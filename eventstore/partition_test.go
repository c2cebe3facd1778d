package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand"
	"strings"
	"sync"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// mintedTogether returns n ULIDs minted in one millisecond the way ulid.Make
// does (monotonic: each one the previous plus a random step below 2^32),
// from a fixed seed so the test is deterministic.
func mintedTogether(n int, ms uint64, seed int64) []string {
	entropy := ulid.Monotonic(rand.New(rand.NewSource(seed)), 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = ulid.MustNew(ms, entropy).String()
	}
	return ids
}

// registeredTogether returns the ids of n users registered in one
// millisecond as command.RegisterSealed mints them: the first ULID whose
// partition is the partition of the username's aggregate (usernames
// "<prefix>-<i>", as mpim-bench names its users).
func registeredTogether(h eventstore.PartitionHash, n, partitions int, ms uint64, seed int64) []domain.UserID {
	entropy := ulid.Monotonic(rand.New(rand.NewSource(seed)), 0)
	users := make([]domain.UserID, n)
	for i := range users {
		want := h.Of(domain.UsernameAggregate(fmt.Sprintf("b%x-%d", ms, i)), partitions)
		for users[i] = ""; users[i] == "" || h.Of(string(users[i]), partitions) != want; {
			users[i] = domain.UserID("u/" + ulid.MustNew(ms, entropy).String())
		}
	}
	return users
}

// spread counts the keys per partition and returns the counts and the
// chi-square statistic against the uniform distribution.
func spread(h eventstore.PartitionHash, keys []string, partitions int) ([]int, float64) {
	counts := make([]int, partitions)
	for _, k := range keys {
		counts[h.Of(k, partitions)]++
	}
	want := float64(len(keys)) / float64(partitions)
	var chi float64
	for _, c := range counts {
		d := float64(c) - want
		chi += d * d / want
	}
	return counts, chi
}

// spreadKeys returns, for users registered together under h, the partition
// keys of 1,000 direct conversations (users 2i and 2i+1, as mpim-bench pairs
// them), of 1,000 users and of 1,000 groups minted in one millisecond.
func spreadKeys(h eventstore.PartitionHash, ms uint64, seed int64) map[string][]string {
	const n, partitions = 1000, 16
	users := registeredTogether(h, 2*n, partitions, ms, seed)
	keys := map[string][]string{}
	for i := range n {
		keys["direct conversations"] = append(keys["direct conversations"], domain.PairKey(users[2*i], users[2*i+1]))
		keys["users"] = append(keys["users"], string(users[i]))
	}
	for _, id := range mintedTogether(n, ms, seed+100) {
		keys["groups"] = append(keys["groups"], "g/"+id)
	}
	return keys
}

// TestPartitionHashSpreadsIdsMintedTogether: the partition keys of 1,000
// direct conversations between 2,000 users registered in the same
// millisecond (and of 1,000 of those users, and of 1,000 groups minted
// together) fill 16 partitions evenly. Per partition the count is binomial
// with mean 62.5 and standard deviation 7.65; 30..100 is more than 4
// deviations either side. The chi-square statistic has 15 degrees of freedom
// (mean 15); above 50 has a probability near 1e-5. The ids come from fixed
// seeds, so the figures are the same on every run. FNV-1a, for comparison,
// puts every such conversation on partitions of one parity: its low bits
// depend only on the low bits of each byte, and registration ties each
// user id's partition to its username's.
func TestPartitionHashSpreadsIdsMintedTogether(t *testing.T) {
	const partitions = 16
	for i, ms := range []uint64{1795711331632, 1795711331633, 1796000000000} {
		legacy := spreadKeys(eventstore.HashFNV1a, ms, int64(i+1))
		for name, keys := range spreadKeys(eventstore.HashFNV1aFmix32, ms, int64(i+1)) {
			counts, chi := spread(eventstore.HashFNV1aFmix32, keys, partitions)
			old, oldChi := spread(eventstore.HashFNV1a, legacy[name], partitions)
			t.Logf("ms %d, %d %s: %v (chi-square %.1f); legacy FNV-1a: %v (chi-square %.1f)", ms, len(keys), name, counts, chi, old, oldChi)
			for p, k := range counts {
				if k < 30 || k > 100 {
					t.Errorf("ms %d, %s: partition %d got %d of %d keys, want 30..100: %v", ms, name, p, k, len(keys), counts)
				}
			}
			if chi > 50 {
				t.Errorf("ms %d, %s: chi-square %.1f over 16 partitions, want <= 50: %v", ms, name, chi, counts)
			}
		}
	}
}

func metaKey(prefix string) string { return prefix + "mpim:meta" }

// TestNewDeploymentRecordsPartitionHash: Open creates the deployment with
// the mixing hash recorded, every process opening it at the same moment gets
// that hash, appends land where PartitionOf says, and a read-only open
// honours the record.
func TestNewDeploymentRecordsPartitionHash(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr, PoolSize: 16})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	cfg := eventstore.Config{Prefix: rt.Prefix, Partitions: 16}

	stores := make([]*eventstore.Store, 8)
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = eventstore.Open(ctx, rdb, cfg) })
	}
	wg.Wait()
	for i, s := range stores {
		if errs[i] != nil {
			t.Fatalf("open %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Close() })
		if got := s.PartitionHash(); got != eventstore.HashFNV1aFmix32 {
			t.Errorf("open %d of a new deployment uses partition hash %q, want %q", i, got, eventstore.HashFNV1aFmix32)
		}
	}
	if got, err := rdb.HGet(ctx, metaKey(rt.Prefix), "hash").Result(); err != nil || got != string(eventstore.HashFNV1aFmix32) {
		t.Fatalf("recorded hash %q, %v; want %q", got, err, eventstore.HashFNV1aFmix32)
	}
	conv := "d/" + domain.PairKey("u/01KBH3PK2XDSZR14D2PF2DBSQQ", "u/01KBH3PK2XDSZR14D2PF2DBSQR")
	key := strings.TrimPrefix(conv, "d/")
	res, err := stores[0].Append(ctx, eventstore.AppendRequest{PartitionKey: key, Streams: []eventstore.StreamAppend{{
		Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, "x")}}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := eventstore.HashFNV1aFmix32.Of(key, 16); res.Partition != want || stores[0].PartitionOf(key) != want {
		t.Errorf("append of %s landed on partition %d, PartitionOf %d; the mixing hash says %d", conv, res.Partition, stores[0].PartitionOf(key), want)
	}
	ro, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 16, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if ro.PartitionHash() != eventstore.HashFNV1aFmix32 || ro.PartitionOf(key) != res.Partition {
		t.Errorf("read-only open: hash %q, partition of %s %d; want %q, %d", ro.PartitionHash(), key, ro.PartitionOf(key), eventstore.HashFNV1aFmix32, res.Partition)
	}
}

// legacyPartition is FNV-1a 32 modulo partitions as the standard library
// computes it: the partition function of deployments created before the
// hash was recorded.
func legacyPartition(key string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

// TestLegacyDeploymentKeepsFNV1a: a deployment whose meta hash has no hash
// field (created before it existed) keeps FNV-1a, in writable and read-only
// opens, and opening it records no hash (only the key layout its heads were
// migrated to).
func TestLegacyDeploymentKeepsFNV1a(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.HSet(ctx, metaKey(rt.Prefix), "partitions", 16).Err(); err != nil {
		t.Fatal(err)
	}
	keys := mintedTogether(200, 1795711331632, 7)
	for _, ro := range []bool{false, true} {
		s, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 16, ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if s.PartitionHash() != eventstore.HashFNV1a {
			t.Errorf("read-only %v: legacy deployment opened with hash %q", ro, s.PartitionHash())
		}
		for _, k := range keys {
			if got, want := s.PartitionOf(k), legacyPartition(k, 16); got != want {
				t.Fatalf("read-only %v: legacy deployment maps %s to %d, FNV-1a says %d", ro, k, got, want)
			}
		}
	}
	if fields, err := rdb.HKeys(ctx, metaKey(rt.Prefix)).Result(); err != nil || fmt.Sprint(fields) != "[partitions layout]" {
		t.Errorf("meta fields after opening a legacy deployment: %v, %v; want [partitions layout]", fields, err)
	}
	// The hash recorded explicitly is the same function.
	if err := rdb.HSet(ctx, metaKey(rt.Prefix), "hash", "fnv1a").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 16})
	if err != nil || s.PartitionHash() != eventstore.HashFNV1a {
		t.Fatalf("open with hash fnv1a recorded: %v, %v", s, err)
	}
	s.Close()
}

// TestUnknownPartitionHashRefused: a recorded hash this version does not
// know stops every open with an error naming it, and changes nothing.
func TestUnknownPartitionHashRefused(t *testing.T) {
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.HSet(ctx, metaKey(rt.Prefix), "partitions", 16, "hash", "xxh3").Err(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		s, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 16, ReadOnly: ro})
		if err == nil {
			s.Close()
		}
		if !errors.Is(err, eventstore.ErrPartitionHash) || !strings.Contains(err.Error(), `partition hash "xxh3"`) {
			t.Errorf("read-only %v: open with an unknown hash: %v; want ErrPartitionHash naming it", ro, err)
		}
	}
	if got, err := rdb.HGet(ctx, metaKey(rt.Prefix), "hash").Result(); err != nil || got != "xxh3" {
		t.Errorf("recorded hash after refused opens: %q, %v", got, err)
	}
}
