package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// TapConfig configures a consumer-group reader of the log.
type TapConfig struct {
	// Group is the consumer group name (one group per tap application).
	Group string
	// Consumer is this reader's name within the group.
	Consumer string
	// Start is where a new group starts: the zero Position means the oldest
	// entry still in the log. An existing group keeps its own position.
	Start Position
	// MinIdle is how long an entry stays pending with a consumer before
	// another consumer claims it (default 30s).
	MinIdle time.Duration
	// MaxDeliveries moves an entry delivered this many times to the
	// dead-letter stream instead of delivering it again (default 5).
	MaxDeliveries int64
}

// Tap reads the log with consumer groups: the competing-consumer path for
// analytics and external consumers (XREADGROUP, XACK, XAUTOCLAIM of a dead
// consumer's pending entries, dead-letter after MaxDeliveries). Projectors do
// not use it: they read with XREAD from their own checkpoints.
type Tap struct {
	s   *Store
	cfg TapConfig
}

// TapEntry is one delivered entry. Err is set for an undecodable entry
// (Raw then holds its stored bytes); it is delivered (and must be
// acknowledged) like any other.
type TapEntry struct {
	Recorded
	Deliveries int64
	Err        error
	// Retry is the entry's id in the group's retry stream when it is a
	// requeued dead letter (Position is its position in the log), else
	// zero. AckEntries acknowledges it where it came from.
	Retry Position
}

// NewTap creates the group on every partition (if missing) of an existing
// deployment; without one it fails with ErrNoDeployment and creates nothing.
func (s *Store) NewTap(ctx context.Context, cfg TapConfig) (*Tap, error) {
	if cfg.MinIdle == 0 {
		cfg.MinIdle = 30 * time.Second
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = 5
	}
	var errs []error
	if cfg.Group == "" || strings.ContainsAny(cfg.Group, " \n") {
		errs = append(errs, fmt.Errorf("eventstore: tap group %q must be a non-empty word", cfg.Group))
	}
	if cfg.Consumer == "" {
		errs = append(errs, errors.New("eventstore: tap consumer name is empty"))
	}
	if cfg.MaxDeliveries < 1 {
		errs = append(errs, fmt.Errorf("eventstore: tap max deliveries must be positive, got %d", cfg.MaxDeliveries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// A group on a wrong prefix would create streams there (MKSTREAM, which
	// a partition nobody appended to yet needs): check the deployment first.
	if _, _, _, err := s.recordedMeta(ctx); err != nil {
		return nil, err
	}
	for p := range s.cfg.Partitions {
		err := s.rdb.XGroupCreateMkStream(ctx, s.keys.log(p), cfg.Group, cfg.Start.String()).Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return nil, fmt.Errorf("eventstore: creating tap group on partition %d: %w", p, err)
		}
	}
	return &Tap{s: s, cfg: cfg}, nil
}

// DeadLetterKey is the stream where entries of partition p that exceeded
// MaxDeliveries are moved (fields: the original entry's, plus "from").
func (t *Tap) DeadLetterKey(p int) string { return t.s.keys.dlq(p, t.cfg.Group) }

// Read returns up to count entries of partition p for this consumer: first
// entries other consumers left pending for longer than MinIdle (claimed with
// XAUTOCLAIM), then new ones (XREADGROUP, blocking up to block). Entries
// delivered MaxDeliveries times are dead-lettered and acknowledged instead.
// A partition on which the group was cut loose fails with a *TapCutError.
func (t *Tap) Read(ctx context.Context, p int, count int64, block time.Duration) ([]TapEntry, error) {
	if err := t.s.checkPartition(p); err != nil {
		return nil, err
	}
	if err := t.checkCut(ctx, p); err != nil {
		return nil, err
	}
	retried, err := t.readRetry(ctx, p, count)
	if err != nil || len(retried) > 0 {
		if err != nil {
			return nil, err
		}
		return t.deliver(ctx, p, t.s.keys.retry(p, t.cfg.Group), retried)
	}
	key := t.s.keys.log(p)
	claimed, _, err := t.s.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: key, Group: t.cfg.Group, Consumer: t.cfg.Consumer, MinIdle: t.cfg.MinIdle, Start: "0-0", Count: count,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: tap claim on partition %d: %w", p, err)
	}
	msgs := claimed
	if len(msgs) == 0 {
		streams, err := t.s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: t.cfg.Group, Consumer: t.cfg.Consumer, Streams: []string{key, ">"}, Count: count, Block: max(block, time.Millisecond),
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("eventstore: tap read on partition %d: %w", p, err)
		}
		if len(streams) == 1 {
			msgs = streams[0].Messages
		}
	}
	return t.deliver(ctx, p, key, msgs)
}

// deliver looks up delivery counts, dead-letters entries over the limit and
// decodes the rest. key is the stream msgs come from: the log or the
// group's retry stream (whose entries carry their log position in "from").
func (t *Tap) deliver(ctx context.Context, p int, key string, msgs []redis.XMessage) ([]TapEntry, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	retry := key != t.s.keys.log(p)
	pending, err := t.s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: key, Group: t.cfg.Group, Start: msgs[0].ID, End: msgs[len(msgs)-1].ID, Count: int64(len(msgs)) * 4,
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: tap pending on partition %d: %w", p, err)
	}
	deliveries := make(map[string]int64, len(pending))
	for _, pe := range pending {
		deliveries[pe.ID] = pe.RetryCount
	}
	out := make([]TapEntry, 0, len(msgs))
	for _, m := range msgs {
		n := deliveries[m.ID]
		if n > t.cfg.MaxDeliveries {
			values := map[string]any{"from": m.ID}
			for k, v := range m.Values {
				values[k] = v // a retry entry keeps its "from"
			}
			values["n"] = n - 1
			pipe := t.s.rdb.TxPipeline()
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: t.DeadLetterKey(p), Values: values})
			pipe.XAck(ctx, key, t.cfg.Group, m.ID)
			if retry {
				pipe.XDel(ctx, key, m.ID)
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return out, fmt.Errorf("eventstore: tap dead-letter on partition %d: %w", p, err)
			}
			continue
		}
		e := TapEntry{Deliveries: n}
		var r Recorded
		r, e.Err = decodeTapped(m.Values)
		r.Partition, r.Position = p, mustPosition(m.ID)
		if retry {
			from, _ := m.Values["from"].(string)
			e.Retry, r.Position = r.Position, mustPosition(from)
		}
		e.Recorded = r
		out = append(out, e)
	}
	return out, nil
}

// decodeTapped decodes an entry a tap or peek hands out; an undecodable
// one keeps its stored bytes in Raw, for its report.
func decodeTapped(values map[string]any) (Recorded, error) {
	r, err := decodeEntry(values)
	if err != nil {
		raw, _ := values["d"].(string)
		r.Raw = []byte(raw)
	}
	return r, err
}

// mustPosition parses an entry id Redis gave (a malformed one, impossible,
// reads as the zero Position).
func mustPosition(id string) Position {
	pos, _ := ParsePosition(id)
	return pos
}

// Ack acknowledges processed entries of partition p.
func (t *Tap) Ack(ctx context.Context, p int, positions ...Position) error {
	if len(positions) == 0 {
		return nil
	}
	ids := make([]string, len(positions))
	for i, pos := range positions {
		ids[i] = pos.String()
	}
	if err := t.s.rdb.XAck(ctx, t.s.keys.log(p), t.cfg.Group, ids...).Err(); err != nil {
		return fmt.Errorf("eventstore: tap ack on partition %d: %w", p, err)
	}
	return nil
}

// AckEntries acknowledges delivered entries of partition p where each came
// from: the log, or the group's retry stream (where it is also deleted).
func (t *Tap) AckEntries(ctx context.Context, p int, entries ...TapEntry) error {
	var logged []Position
	var retried []string
	for _, e := range entries {
		if e.Retry.IsZero() {
			logged = append(logged, e.Position)
		} else {
			retried = append(retried, e.Retry.String())
		}
	}
	if len(retried) > 0 {
		key := t.s.keys.retry(p, t.cfg.Group)
		pipe := t.s.rdb.TxPipeline()
		pipe.XAck(ctx, key, t.cfg.Group, retried...)
		pipe.XDel(ctx, key, retried...)
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("eventstore: tap retry ack on partition %d: %w", p, err)
		}
	}
	return t.Ack(ctx, p, logged...)
}

// TapGroupPosition returns group's last-delivered position on partition p:
// its consumers' next new entry comes after it. It only reads (XINFO
// GROUPS) and refuses a group that does not exist. A partition on which
// the group was cut loose fails with a *TapCutError, as Tap.Read does: a
// peek must not skip the lost range without saying so.
func (s *Store) TapGroupPosition(ctx context.Context, group string, p int) (Position, error) {
	g, err := s.checkTapGroup(ctx, group, p)
	if err != nil {
		return Position{}, err
	}
	if err := s.checkTapCut(ctx, group, p); err != nil {
		return Position{}, err
	}
	return ParsePosition(g.LastDeliveredID)
}

// PeekAfter returns up to count entries of partition p after after (XRANGE),
// changing nothing: no group reads, claims or acknowledges them.
// Undecodable entries have Err set.
func (s *Store) PeekAfter(ctx context.Context, p int, after Position, count int64) ([]TapEntry, error) {
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.log(p), "("+after.String(), "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: peeking partition %d: %w", p, err)
	}
	out := make([]TapEntry, len(msgs))
	for i, m := range msgs {
		out[i].Recorded, out[i].Err = decodeTapped(m.Values)
		out[i].Partition, out[i].Position = p, mustPosition(m.ID)
	}
	return out, nil
}

// PeekPending returns up to count of group's pending entries of partition
// p (delivered, not yet acknowledged) with their delivery counts, changing
// nothing (XPENDING, XRANGE). An entry trimmed from the log has Err set.
func (s *Store) PeekPending(ctx context.Context, group string, p int, count int64) ([]TapEntry, error) {
	if _, err := s.checkTapGroup(ctx, group, p); err != nil {
		return nil, err
	}
	key := s.keys.log(p)
	pending, err := s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: count}).Result()
	if err != nil {
		return nil, fmt.Errorf("eventstore: pending entries of partition %d: %w", p, err)
	}
	pipe := s.rdb.Pipeline()
	ranges := make([]*redis.XMessageSliceCmd, len(pending))
	for i, pe := range pending {
		ranges[i] = pipe.XRange(ctx, key, pe.ID, pe.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("eventstore: pending entries of partition %d: %w", p, err)
	}
	out := make([]TapEntry, len(pending))
	for i, pe := range pending {
		out[i].Deliveries = pe.RetryCount
		if msgs := ranges[i].Val(); len(msgs) == 1 {
			out[i].Recorded, out[i].Err = decodeTapped(msgs[0].Values)
		} else {
			out[i].Err = errors.New("no longer in the log (trimmed)")
		}
		out[i].Partition, out[i].Position = p, mustPosition(pe.ID)
	}
	return out, nil
}
