package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tap groups and the trim floor. Every consumer group on a partition stream
// is a tap group (projectors read with XREAD from checkpoints, not with
// groups), whether `mpimctl tap`, Store.NewTap or an external consumer
// created it. The trim keeps what a tap group still needs, up to a maximum
// retention; beyond it the group is cut loose: a cut marker records the
// range it lost, and its next Read fails with a TapCutError instead of
// skipping the range.

// TapGroup describes one consumer group on one partition stream.
type TapGroup struct {
	Name      string
	Partition int
	// Floor is the lowest position the group still needs: its lowest
	// pending entry (FloorPending), or else its last-delivered id (it needs
	// what comes after it). The zero Position: it needs the whole stream.
	Floor        Position
	FloorPending bool
	// LastDelivered is the group's last-delivered id.
	LastDelivered Position
	// Pending is how many entries were delivered and not acknowledged.
	Pending int64
	// Lag is how many entries wait to be delivered (XINFO GROUPS lag); -1
	// when Redis cannot tell (after a trim passed the group, for one).
	Lag int64
	// Consumers is the number of consumers the group knows.
	Consumers int64
	// Cut is the loss recorded for the group on this partition, or nil.
	Cut *TapCut
}

// TapCut is a cut marker: the entries of a partition a tap group lost to a
// trim because it exceeded the retention (From and To inclusive).
type TapCut struct {
	Group     string
	Partition int
	From, To  Position
	At        time.Time
}

// TapCutError is returned by Tap.Read for a partition on which the group was
// cut loose: the entries From..To (inclusive) were trimmed before the group
// read them. Tap.AcceptLoss removes the marker; the archive holds the
// entries (mysql.ReadArchive, or `mpimctl export --mysql`).
type TapCutError struct {
	Group     string
	Partition int
	From, To  Position
}

func (e *TapCutError) Error() string {
	return fmt.Sprintf("eventstore: tap group %q lost events of partition %d from %s to %s: they were trimmed before the group read them "+
		"(it exceeded the tap retention); read them from the archive, then accept the loss (mpimctl tap --group %s --accept-loss)",
		e.Group, e.Partition, e.From, e.To, e.Group)
}

// tapCutKey is the cut marker of group on partition p (a hash: from, to, at).
func (k keys) tapCut(p int, group string) string { return k.tag(p) + "tapcut:" + group }

// TapGroups lists the consumer groups of partition p with their floors,
// lag, pending count and cut marker.
func (s *Store) TapGroups(ctx context.Context, p int) ([]TapGroup, error) {
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	key := s.keys.log(p)
	infos, err := s.rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		if isNoSuchKey(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("eventstore: tap groups of partition %d: %w", p, err)
	}
	if len(infos) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	pend := make([]*redis.XPendingCmd, len(infos))
	cuts := make([]*redis.MapStringStringCmd, len(infos))
	for i, g := range infos {
		pend[i] = pipe.XPending(ctx, key, g.Name)
		cuts[i] = pipe.HGetAll(ctx, s.keys.tapCut(p, g.Name))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("eventstore: tap group floors of partition %d: %w", p, err)
	}
	out := make([]TapGroup, 0, len(infos))
	for i, g := range infos {
		tg := TapGroup{Name: g.Name, Partition: p, Pending: g.Pending, Lag: g.Lag, Consumers: g.Consumers}
		if tg.LastDelivered, err = ParsePosition(g.LastDeliveredID); err != nil {
			return nil, fmt.Errorf("eventstore: tap group %q of partition %d: %w", g.Name, p, err)
		}
		tg.Floor = tg.LastDelivered
		if x, err := pend[i].Result(); err == nil && x.Count > 0 {
			if low, err := ParsePosition(x.Lower); err == nil && low.Compare(tg.Floor) <= 0 {
				tg.Floor, tg.FloorPending = low, true
			}
		}
		if tg.Cut, err = parseTapCut(g.Name, p, cuts[i].Val()); err != nil {
			return nil, err
		}
		out = append(out, tg)
	}
	return out, nil
}

func isNoSuchKey(err error) bool {
	return err != nil && err.Error() == "ERR no such key"
}

func parseTapCut(group string, p int, h map[string]string) (*TapCut, error) {
	if len(h) == 0 {
		return nil, nil
	}
	c := &TapCut{Group: group, Partition: p}
	from, err1 := ParsePosition(h["from"])
	to, err2 := ParsePosition(h["to"])
	at, err3 := strconv.ParseInt(h["at"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("eventstore: cut marker of tap group %q on partition %d is damaged: %w", group, p, err)
	}
	c.From, c.To, c.At = from, to, time.UnixMilli(at)
	return c, nil
}

// StreamBytes estimates the memory of partition p's stream (MEMORY USAGE
// with 5 samples: Redis sizes a few of the stream's listpack nodes and
// scales by their number, so the cost does not grow with the stream).
func (s *Store) StreamBytes(ctx context.Context, p int) (int64, error) {
	if err := s.checkPartition(p); err != nil {
		return 0, err
	}
	n, err := s.rdb.MemoryUsage(ctx, s.keys.log(p), 5).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("eventstore: memory usage of partition %d: %w", p, err)
	}
	return n, nil
}

// rangeStart is the XRANGE bound of the entries from floor on (after it
// unless inclusive; the zero floor: the whole stream).
func rangeStart(floor Position, inclusive bool) string {
	if inclusive || floor.IsZero() {
		return floor.String()
	}
	return "(" + floor.String()
}

// FirstBetween returns the first entry of partition p from `from` on (after
// it unless inclusive) and before `before`, or the zero Position.
func (s *Store) FirstBetween(ctx context.Context, p int, from Position, inclusive bool, before Position) (Position, error) {
	if err := s.checkPartition(p); err != nil {
		return Position{}, err
	}
	m, err := s.rdb.XRangeN(ctx, s.keys.log(p), rangeStart(from, inclusive), "("+before.String(), 1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Position{}, fmt.Errorf("eventstore: range of partition %d: %w", p, err)
	}
	if len(m) == 0 {
		return Position{}, nil
	}
	return ParsePosition(m[0].ID)
}

// CutTap records, before a trim of partition p to trimTo, that group loses
// the entries it still needs below trimTo: those from its floor (after it,
// unless floorPending) up to the last entry before trimTo. A marker already
// there keeps its From and gets the new To. It returns the marker, or nil
// when no entry is lost.
func (s *Store) CutTap(ctx context.Context, p int, group string, floor Position, floorPending bool, trimTo Position) (*TapCut, error) {
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	key := s.keys.log(p)
	start := rangeStart(floor, floorPending)
	pipe := s.rdb.Pipeline()
	first := pipe.XRangeN(ctx, key, start, "("+trimTo.String(), 1)
	last := pipe.XRevRangeN(ctx, key, "("+trimTo.String(), start, 1)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("eventstore: range tap group %q loses on partition %d: %w", group, p, err)
	}
	if len(first.Val()) == 0 || len(last.Val()) == 0 {
		return nil, nil
	}
	from, err1 := ParsePosition(first.Val()[0].ID)
	to, err2 := ParsePosition(last.Val()[0].ID)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	mk := s.keys.tapCut(p, group)
	tx := s.rdb.TxPipeline()
	tx.HSetNX(ctx, mk, "from", from.String())
	tx.HSetNX(ctx, mk, "at", strconv.FormatInt(time.Now().UnixMilli(), 10))
	tx.HSet(ctx, mk, "to", to.String())
	got := tx.HGetAll(ctx, mk)
	if _, err := tx.Exec(ctx); err != nil {
		return nil, fmt.Errorf("eventstore: writing the cut marker of tap group %q on partition %d: %w", group, p, err)
	}
	return parseTapCut(group, p, got.Val())
}

// TapCuts returns the cut markers of group, one per partition that has one.
func (s *Store) TapCuts(ctx context.Context, group string) ([]TapCut, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, s.cfg.Partitions)
	for p := range s.cfg.Partitions {
		cmds[p] = pipe.HGetAll(ctx, s.keys.tapCut(p, group))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("eventstore: reading the cut markers of tap group %q: %w", group, err)
	}
	var out []TapCut
	for p, c := range cmds {
		cut, err := parseTapCut(group, p, c.Val())
		if err != nil {
			return nil, err
		}
		if cut != nil {
			out = append(out, *cut)
		}
	}
	return out, nil
}

// checkCut fails with a TapCutError when the group was cut loose on p.
func (t *Tap) checkCut(ctx context.Context, p int) error { return t.s.checkTapCut(ctx, t.cfg.Group, p) }

// checkTapCut fails with a TapCutError when group was cut loose on p.
func (s *Store) checkTapCut(ctx context.Context, group string, p int) error {
	h, err := s.rdb.HGetAll(ctx, s.keys.tapCut(p, group)).Result()
	if err != nil {
		return fmt.Errorf("eventstore: reading the cut marker of partition %d: %w", p, err)
	}
	cut, err := parseTapCut(group, p, h)
	if err != nil || cut == nil {
		return err
	}
	return &TapCutError{Group: cut.Group, Partition: p, From: cut.From, To: cut.To}
}

// AcceptLoss removes the group's cut markers on every partition and returns
// them: the group reads on from the first entry still in each stream that it
// was not delivered (the entries the trim removed are gone from its pending
// list with XAUTOCLAIM). Until then the trim keeps no entries for a cut
// group.
func (t *Tap) AcceptLoss(ctx context.Context) ([]TapCut, error) {
	cuts, err := t.s.TapCuts(ctx, t.cfg.Group)
	if err != nil || len(cuts) == 0 {
		return nil, err
	}
	keys := make([]string, len(cuts))
	for i, c := range cuts {
		keys[i] = t.s.keys.tapCut(c.Partition, t.cfg.Group)
	}
	pipe := t.s.rdb.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k) // one key per call: the markers are in different slots
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("eventstore: removing the cut markers of tap group %q: %w", t.cfg.Group, err)
	}
	return cuts, nil
}
