package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Dead letters. An entry a tap group failed to handle MaxDeliveries times is
// moved to the group's dead-letter stream of its partition,
// <prefix>{pN}:dlq:<group> (the entry's fields plus "from", its position in
// the log, and "n", how often it was delivered), and acknowledged in the log.
//
// Requeue moves dead letters to the group's retry stream of the partition,
// <prefix>{pN}:retry:<group>, which every tap of the group reads (with the
// same group, XREADGROUP) before the log: each requeued entry is delivered
// again to one consumer, once more up to MaxDeliveries times, under its
// original position. It lands after entries the group already received, so
// a consumer that needs log order per aggregate must handle such an entry
// by its position. An acknowledged retry entry is deleted from the retry
// stream; one that fails again goes back to the dead-letter stream. Moving
// is one script per batch, so a dead letter is never lost between the two
// streams nor requeued twice.

func (k keys) dlq(p int, group string) string   { return k.tag(p) + "dlq:" + group }
func (k keys) retry(p int, group string) string { return k.tag(p) + "retry:" + group }

// DeadLetter is one entry of a dead-letter stream. ID is its id in the
// dead-letter stream (its time is when it was dead-lettered); Recorded
// holds the entry with its original partition and position. Err is set
// when the entry cannot be decoded.
type DeadLetter struct {
	Recorded
	ID         Position
	Deliveries int64
	Err        error
}

// DeadLetteredAt is the time the entry was moved to the dead-letter stream.
func (d DeadLetter) DeadLetteredAt() time.Time { return time.UnixMilli(int64(d.ID.Ms)).UTC() }

// checkTapGroup refuses a partition out of range and a group that does not
// exist on partition p's log (XINFO GROUPS only reads).
func (s *Store) checkTapGroup(ctx context.Context, group string, p int) (redis.XInfoGroup, error) {
	if err := s.checkPartition(p); err != nil {
		return redis.XInfoGroup{}, err
	}
	groups, err := s.rdb.XInfoGroups(ctx, s.keys.log(p)).Result()
	if err != nil && !isNoSuchKey(err) {
		return redis.XInfoGroup{}, fmt.Errorf("eventstore: tap groups of partition %d: %w", p, err)
	}
	for _, g := range groups {
		if g.Name == group {
			return g, nil
		}
	}
	return redis.XInfoGroup{}, fmt.Errorf("eventstore: no tap group %q on partition %d", group, p)
}

// DeadLetters returns up to count dead letters of group on partition p whose
// dead-letter id is after after (the zero Position: from the oldest).
func (s *Store) DeadLetters(ctx context.Context, group string, p int, after Position, count int64) ([]DeadLetter, error) {
	if _, err := s.checkTapGroup(ctx, group, p); err != nil {
		return nil, err
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.dlq(p, group), "("+after.String(), "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: reading dead letters of partition %d: %w", p, err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		id, _ := ParsePosition(m.ID)
		d := DeadLetter{ID: id}
		d.Recorded, d.Err = decodeTapped(m.Values)
		d.Partition = p
		from, _ := m.Values["from"].(string)
		if d.Position, err = ParsePosition(from); err != nil && d.Err == nil {
			d.Err = fmt.Errorf("dead letter without its position: %w", err)
		}
		n, _ := m.Values["n"].(string)
		d.Deliveries, _ = strconv.ParseInt(n, 10, 64)
		out = append(out, d)
	}
	return out, nil
}

// requeueScript moves up to ARGV[3] dead letters with ids from ARGV[1]
// (an XRANGE start) up to ARGV[2] from KEYS[1] (dead letters) to KEYS[2]
// (the retry stream), creating the retry stream and its group ARGV[4] when
// missing. It returns how many moved and the id of the last one.
var requeueScript = redis.NewScript(`
local msgs = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', tonumber(ARGV[3]))
if #msgs == 0 then return {0, ''} end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[4], '0', 'MKSTREAM')
end
for _, m in ipairs(msgs) do
  redis.call('XADD', KEYS[2], '*', unpack(m[2]))
  redis.call('XDEL', KEYS[1], m[1])
end
return {#msgs, msgs[#msgs][1]}
`)

// RequeueDeadLetters moves the dead letters of group on partition p with ids
// up to upTo (the zero Position: all there are now, not those that fail
// again meanwhile) to the group's retry stream, where the group's taps
// deliver them again first. It returns how many moved.
func (s *Store) RequeueDeadLetters(ctx context.Context, group string, p int, upTo Position) (int64, error) {
	if _, err := s.checkTapGroup(ctx, group, p); err != nil {
		return 0, err
	}
	dlq := s.keys.dlq(p, group)
	if upTo.IsZero() {
		last, err := s.rdb.XRevRangeN(ctx, dlq, "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			if err != nil {
				return 0, fmt.Errorf("eventstore: reading dead letters of partition %d: %w", p, err)
			}
			return 0, nil
		}
		upTo = mustPosition(last[0].ID)
	}
	var moved int64
	start := "-"
	for {
		res, err := requeueScript.Run(ctx, s.rdb, []string{dlq, s.keys.retry(p, group)}, start, upTo.String(), 500, group).Slice()
		if err != nil {
			return moved, fmt.Errorf("eventstore: requeueing dead letters of partition %d: %w", p, err)
		}
		n, _ := res[0].(int64)
		last, _ := res[1].(string)
		if moved += n; n == 0 {
			return moved, nil
		}
		start = "(" + last
	}
}

// PurgeDeadLetters deletes the dead letters of group on partition p whose id
// is before before (XTRIM MINID, exact; the zero Position: all of them) and
// returns how many were deleted.
func (s *Store) PurgeDeadLetters(ctx context.Context, group string, p int, before Position) (int64, error) {
	if _, err := s.checkTapGroup(ctx, group, p); err != nil {
		return 0, err
	}
	key := s.keys.dlq(p, group)
	if before.IsZero() {
		n, err := s.rdb.XLen(ctx, key).Result()
		if err == nil {
			err = s.rdb.Del(ctx, key).Err()
		}
		if err != nil {
			return 0, fmt.Errorf("eventstore: purging dead letters of partition %d: %w", p, err)
		}
		return n, nil
	}
	n, err := s.rdb.XTrimMinID(ctx, key, before.String()).Result()
	if err != nil {
		return 0, fmt.Errorf("eventstore: purging dead letters of partition %d: %w", p, err)
	}
	return n, nil
}

// TrimDeadLetters deletes the dead letters of every tap group on every
// partition that were dead-lettered more than maxAge ago (their ids carry
// the time) and returns how many were deleted. The groups are those on the
// partition's log (XINFO GROUPS).
func (s *Store) TrimDeadLetters(ctx context.Context, maxAge time.Duration) (int64, error) {
	if maxAge <= 0 {
		return 0, fmt.Errorf("eventstore: dead-letter max age must be positive, got %s", maxAge)
	}
	min := Position{Ms: uint64(time.Now().Add(-maxAge).UnixMilli())}
	var removed int64
	for p := range s.cfg.Partitions {
		groups, err := s.rdb.XInfoGroups(ctx, s.keys.log(p)).Result()
		if err != nil && !isNoSuchKey(err) {
			return removed, fmt.Errorf("eventstore: tap groups of partition %d: %w", p, err)
		}
		for _, g := range groups {
			n, err := s.rdb.XTrimMinID(ctx, s.keys.dlq(p, g.Name), min.String()).Result()
			removed += n
			if err != nil {
				return removed, fmt.Errorf("eventstore: trimming dead letters of partition %d: %w", p, err)
			}
		}
	}
	return removed, nil
}

// readRetry returns up to count requeued entries of partition p for this
// consumer: retry entries other consumers left pending longer than MinIdle,
// then new ones. Acknowledged retry entries are deleted, so an empty retry
// stream (or none: a group never requeued) costs one XLEN.
func (t *Tap) readRetry(ctx context.Context, p int, count int64) ([]redis.XMessage, error) {
	key := t.s.keys.retry(p, t.cfg.Group)
	if n, err := t.s.rdb.XLen(ctx, key).Result(); err != nil || n == 0 {
		if err != nil {
			return nil, fmt.Errorf("eventstore: tap retry length on partition %d: %w", p, err)
		}
		return nil, nil
	}
	claimed, _, err := t.s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: key, Group: t.cfg.Group, Consumer: t.cfg.Consumer, MinIdle: t.cfg.MinIdle, Start: "0-0", Count: count,
	}).Result()
	if err != nil || len(claimed) > 0 {
		if err != nil {
			return nil, fmt.Errorf("eventstore: tap retry claim on partition %d: %w", p, err)
		}
		return claimed, nil
	}
	streams, err := t.s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: t.cfg.Group, Consumer: t.cfg.Consumer, Streams: []string{key, ">"}, Count: count, Block: -1,
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("eventstore: tap retry read on partition %d: %w", p, err)
	}
	if len(streams) == 1 {
		return streams[0].Messages, nil
	}
	return nil, nil
}
