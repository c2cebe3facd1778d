package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mpim/mpim/internal/keyscan"
	"github.com/redis/go-redis/v9"
)

// The key layout of aggregate heads, recorded in the meta hash (field
// "layout"):
//
//   - layout 1 (no field: deployments created before it existed): one hash
//     per aggregate, {pN}:h:<agg> with fields v and s;
//   - layout 2 (LayoutHeadsHash): one hash per partition, {pN}:h, field <agg>,
//     value "<v>" or "<v>:<s>" (s, the last message seq, only when non-zero),
//     so the append script reads every head of a call in one HMGET and writes
//     them in one HSET.
//
// A writable Open of a layout-1 deployment migrates it: it moves every
// {pN}:h:<agg> into its partition's hash (one script per page of keys, each
// key moved and deleted atomically, so concurrent or repeated migrations are
// harmless) and then records layout 2, before its committers start. Writers
// of the previous version must all be stopped first: they would keep writing
// the per-aggregate keys. Until layout 2 is recorded, a read-only store reads
// the partition hash and falls back to the per-aggregate key.
const (
	metaLayout      = "layout"
	LayoutHeadsHash = "2"
)

// migrateHeads moves old head keys (KEYS[2..]) into the heads hash
// (KEYS[1]), field ARGV[i-1] for KEYS[i]; a field already there with a
// higher version wins. It returns how many keys it moved.
var migrateHeads = redis.NewScript(`
local heads, moved = KEYS[1], 0
for i = 2, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 'v', 's')
  if r[1] then
    local agg = ARGV[i - 1]
    local cur = redis.call('HGET', heads, agg)
    local curv = -1
    if cur then curv = tonumber(string.match(cur, '^%d+')) end
    if tonumber(r[1]) > curv then
      if (tonumber(r[2]) or 0) == 0 then
        redis.call('HSET', heads, agg, r[1])
      else
        redis.call('HSET', heads, agg, r[1] .. ':' .. r[2])
      end
    end
    redis.call('DEL', KEYS[i])
    moved = moved + 1
  end
end
return moved`)

// migrateLayout brings a layout-1 deployment to layout 2 (see above).
func (s *Store) migrateLayout(ctx context.Context) error {
	// Any prefix: oldHeadPartition keeps this deployment's keys (no glob
	// escaping of the prefix needed).
	pattern := "*{p*}:h:*"
	err := keyscan.Each(ctx, s.rdb, pattern, func(_ redis.Cmdable, keys []string) error {
		byPartition := map[int][]string{}
		for _, k := range keys {
			if p, ok := s.keys.oldHeadPartition(k); ok {
				byPartition[p] = append(byPartition[p], k)
			}
		}
		for p, ks := range byPartition {
			aggs := make([]any, len(ks))
			for i, k := range ks {
				aggs[i] = strings.TrimPrefix(k, s.keys.oldHead(p, ""))
			}
			if err := migrateHeads.Run(ctx, s.rdb, append([]string{s.keys.heads(p)}, ks...), aggs...).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.rdb.HSet(ctx, s.keys.meta(), metaLayout, LayoutHeadsHash).Err()
	}
	if err != nil {
		return fmt.Errorf("eventstore: moving aggregate heads into one hash per partition: %w", err)
	}
	s.keys.oldHeads = false
	return nil
}

// oldHeadPartition parses the partition of a layout-1 head key.
func (k keys) oldHeadPartition(key string) (int, bool) {
	rest, ok := strings.CutPrefix(key, k.prefix+"{p")
	if !ok {
		return 0, false
	}
	n, rest, ok := strings.Cut(rest, "}:h:")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(n)
	if err != nil || p < 0 || p >= k.partitions || strconv.Itoa(p) != n {
		return 0, false
	}
	return p, true
}

// head reads an aggregate's version and last message seq.
func (s *Store) head(ctx context.Context, p int, aggregate string) (version, seq uint64, err error) {
	raw, err := s.rdb.HGet(ctx, s.keys.heads(p), aggregate).Result()
	if errors.Is(err, redis.Nil) && s.keys.oldHeads {
		vals, err := s.rdb.HMGet(ctx, s.keys.oldHead(p, aggregate), "v", "s").Result()
		if err != nil {
			return 0, 0, err
		}
		v, _ := vals[0].(string)
		sq, _ := vals[1].(string)
		raw = v + ":" + sq
	} else if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	} else if err != nil {
		return 0, 0, err
	}
	return parseHead(raw)
}

// parseHead parses a head value "<v>" or "<v>:<s>"; empty parts are 0.
func parseHead(raw string) (version, seq uint64, err error) {
	v, sq, _ := strings.Cut(raw, ":")
	if v != "" {
		if version, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("bad head %q", raw)
		}
	}
	if sq != "" {
		if seq, err = strconv.ParseUint(sq, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("bad head %q", raw)
		}
	}
	return version, seq, nil
}
