package eventstore

import (
	"fmt"
	"strconv"
)

// PartitionHash names the function that maps a partition key to a
// partition. A deployment records it in its meta hash (field "hash") when
// it is created and keeps it for life: changing it would move aggregates to
// other partitions and break the order of their history.
type PartitionHash string

const (
	// HashFNV1a is FNV-1a 32 modulo the partition count: the hash of
	// deployments created before the field existed (a meta hash without
	// "hash" means this one). Its low bits depend only on the low bits of
	// each byte, so ids minted together crowd a few partitions.
	HashFNV1a PartitionHash = "fnv1a"
	// HashFNV1aFmix32 is FNV-1a 32 followed by murmur3's fmix32 finalizer,
	// modulo the partition count: every bit of the result depends on every
	// bit of the key. New deployments record it.
	HashFNV1aFmix32 PartitionHash = "fnv1a-fmix32"
)

// parsePartitionHash reads the "hash" field of a meta hash ("" when absent).
func parsePartitionHash(recorded string) (PartitionHash, error) {
	switch h := PartitionHash(recorded); h {
	case "":
		return HashFNV1a, nil
	case HashFNV1a, HashFNV1aFmix32:
		return h, nil
	}
	return "", fmt.Errorf("%w: the deployment records partition hash %q; this version knows %q and %q",
		ErrPartitionHash, recorded, HashFNV1a, HashFNV1aFmix32)
}

// Of returns the partition of partitionKey among partitions (> 0).
func (h PartitionHash) Of(partitionKey string, partitions int) int {
	x := uint32(2166136261) // FNV-1a 32, without allocating
	for i := 0; i < len(partitionKey); i++ {
		x ^= uint32(partitionKey[i])
		x *= 16777619
	}
	if h == HashFNV1aFmix32 {
		x ^= x >> 16
		x *= 0x85ebca6b
		x ^= x >> 13
		x *= 0xc2b2ae35
		x ^= x >> 16
	}
	return int(x % uint32(partitions))
}

// keys builds the key names of one deployment (see the package comment).
type keys struct {
	prefix     string
	partitions int
	hash       PartitionHash // set by Open from the meta hash
	// oldHeads: the deployment has not recorded layout 2 yet (read-only
	// opens read the per-aggregate heads as a fallback; see layout.go).
	oldHeads bool
}

// partitionOf is the deployment's partition of a partition key. It never
// changes for a deployment.
func (k keys) partitionOf(partitionKey string) int {
	return k.hash.Of(partitionKey, k.partitions)
}

func (k keys) tag(p int) string   { return k.prefix + "{p" + strconv.Itoa(p) + "}:" }
func (k keys) log(p int) string   { return k.tag(p) + "log" }
func (k keys) meta() string       { return k.prefix + "mpim:meta" }
func (k keys) heads(p int) string { return k.tag(p) + "h" }
func (k keys) oldHead(p int, agg string) string {
	return k.tag(p) + "h:" + agg // layout 1 (see layout.go)
}
func (k keys) history(p int, agg string) string {
	return k.tag(p) + "e:" + agg
}
func (k keys) cells(p int, agg string) string { return k.tag(p) + "c:" + agg }
func (k keys) snapshot(p int, agg string) string {
	return k.tag(p) + "snap:" + agg
}
func (k keys) idem(p int, key IdempotencyKey) string {
	return k.tag(p) + "i:" + string(key)
}
