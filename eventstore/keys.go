package eventstore

import (
	"hash/fnv"
	"strconv"
)

// keys builds the key names of one deployment (see the package comment).
type keys struct {
	prefix     string
	partitions int
}

// partitionOf is the stable hash of a partition key: FNV-1a 32 modulo the
// partition count. It never changes for a deployment.
func (k keys) partitionOf(partitionKey string) int {
	h := fnv.New32a()
	h.Write([]byte(partitionKey))
	return int(h.Sum32() % uint32(k.partitions))
}

func (k keys) tag(p int) string              { return k.prefix + "{p" + strconv.Itoa(p) + "}:" }
func (k keys) log(p int) string              { return k.tag(p) + "log" }
func (k keys) meta() string                  { return k.prefix + "mpim:meta" }
func (k keys) head(p int, agg string) string { return k.tag(p) + "h:" + agg }
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
