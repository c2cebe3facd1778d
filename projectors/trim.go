package projectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Checkpointer reads a projector's checkpoint of a partition without
// claiming it (the zero Position: nothing processed yet).
type Checkpointer interface {
	Name() string
	Checkpoint(ctx context.Context, partition int) (eventstore.Position, error)
}

// TrimmableLog is the log a trim acts on.
type TrimmableLog interface {
	Partitions() int
	TrimBefore(ctx context.Context, p int, min eventstore.Position) (int64, error)
}

var _ TrimmableLog = (*eventstore.Store)(nil)

// TrimLog trims each partition of log below the lowest checkpoint of every
// given projector. Pass every projector that reads the log, including the
// archiver: an entry is removed only once all of them processed it, and the
// archive keeps it for replays. A partition that any projector has not
// started is left whole. It returns the number of entries removed.
func TrimLog(ctx context.Context, log TrimmableLog, projectors []Checkpointer) (int64, error) {
	if len(projectors) == 0 {
		return 0, errors.New("projectors: trim needs at least one projector's checkpoints")
	}
	var removed int64
	for p := range log.Partitions() {
		low, err := projectorFloor(ctx, p, projectors)
		if err != nil {
			return removed, err
		}
		n, err := log.TrimBefore(ctx, p, low)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// projectorFloor is the lowest checkpoint of partition p among projectors.
func projectorFloor(ctx context.Context, p int, projectors []Checkpointer) (eventstore.Position, error) {
	var low eventstore.Position
	for i, c := range projectors {
		pos, err := c.Checkpoint(ctx, p)
		if err != nil {
			return low, fmt.Errorf("projectors: reading %s checkpoint of partition %d: %w", c.Name(), p, err)
		}
		if i == 0 || pos.Compare(low) < 0 {
			low = pos
		}
	}
	return low, nil
}

// TapLog is the log's view of its tap groups (every consumer group on a
// partition stream) for the trim.
type TapLog interface {
	TapGroups(ctx context.Context, p int) ([]eventstore.TapGroup, error)
	StreamBytes(ctx context.Context, p int) (int64, error)
	FirstBetween(ctx context.Context, p int, from eventstore.Position, inclusive bool, before eventstore.Position) (eventstore.Position, error)
	CutTap(ctx context.Context, p int, group string, floor eventstore.Position, floorPending bool, trimTo eventstore.Position) (*eventstore.TapCut, error)
}

var _ TapLog = (*eventstore.Store)(nil)

// TapRetention bounds how much of the log tap groups hold back.
type TapRetention struct {
	// MaxAge: a group whose oldest needed entry is older is cut loose.
	MaxAge time.Duration
	// MaxBytes: while a partition stream is larger (MEMORY USAGE), every
	// group holding it back below the projectors' checkpoints is cut loose.
	MaxBytes int64
	Logger   *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// TapTrimmer trims the log below every projector's checkpoint and every tap
// group's floor, cutting loose the groups beyond the retention.
type TapTrimmer struct {
	log        TrimmableLog
	taps       TapLog
	projectors []Checkpointer
	cfg        TapRetention
	cuts       *prometheus.CounterVec
	held       *prometheus.GaugeVec
}

// NewTapTrimmer registers the trim's tap metrics with reg (nil: none).
func NewTapTrimmer(log TrimmableLog, taps TapLog, projectors []Checkpointer, cfg TapRetention, reg prometheus.Registerer) (*TapTrimmer, error) {
	if len(projectors) == 0 {
		return nil, errors.New("projectors: trim needs at least one projector's checkpoints")
	}
	if cfg.MaxAge <= 0 || cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("projectors: tap retention must be positive, got max age %s and max bytes %d", cfg.MaxAge, cfg.MaxBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	t := &TapTrimmer{log: log, taps: taps, projectors: projectors, cfg: cfg,
		cuts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_tap_groups_cut_total",
			Help: "Tap groups cut loose by the trim (they exceeded the tap retention and lost entries), by group."}, []string{"group"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mpim_tap_group_held_milliseconds",
			Help: "Age of the oldest entry a tap group holds back from the trim (0: none), by group and partition."}, []string{"group", "partition"}),
	}
	if err := promreg.Register(reg, "projectors: tap trim metrics", t.cuts, t.held); err != nil {
		return nil, err
	}
	return t, nil
}

// Trim trims every partition once and returns the number of entries removed.
func (t *TapTrimmer) Trim(ctx context.Context) (int64, error) {
	var removed int64
	for p := range t.log.Partitions() {
		low, err := projectorFloor(ctx, p, t.projectors)
		if err != nil {
			return removed, err
		}
		if low.IsZero() {
			continue
		}
		target, err := t.tapFloor(ctx, p, low)
		if err != nil {
			return removed, err
		}
		n, err := t.log.TrimBefore(ctx, p, target)
		removed += n
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// tapFloor lowers the trim point low of partition p to every tap group's
// floor, except for groups beyond the retention: those are cut loose (their
// marker written before the trim), as are groups cut before (their marker
// extended to the new trim point).
func (t *TapTrimmer) tapFloor(ctx context.Context, p int, low eventstore.Position) (eventstore.Position, error) {
	groups, err := t.taps.TapGroups(ctx, p)
	if err != nil || len(groups) == 0 {
		return low, err
	}
	now := t.cfg.Now()
	var bytes int64 = -1
	target := low
	var cut, cutBefore []eventstore.TapGroup
	var reasons []string
	for _, g := range groups {
		label := strconv.Itoa(p)
		if g.Cut != nil {
			t.held.WithLabelValues(g.Name, label).Set(0)
			cutBefore = append(cutBefore, g)
			continue
		}
		if g.Floor.Compare(low) >= 0 {
			t.held.WithLabelValues(g.Name, label).Set(0)
			continue
		}
		oldest, err := t.oldestNeeded(ctx, p, g, low)
		if err != nil {
			return low, err
		}
		if oldest.IsZero() { // nothing it needs is below low
			t.held.WithLabelValues(g.Name, label).Set(0)
			continue
		}
		age := now.Sub(time.UnixMilli(int64(oldest.Ms)))
		t.held.WithLabelValues(g.Name, label).Set(float64(max(age.Milliseconds(), 0)))
		if bytes < 0 {
			if bytes, err = t.taps.StreamBytes(ctx, p); err != nil {
				return low, err
			}
		}
		switch {
		case age > t.cfg.MaxAge:
			reasons = append(reasons, fmt.Sprintf("its oldest needed entry is %s old, over the tap max age %s", age.Round(time.Second), t.cfg.MaxAge))
		case bytes > t.cfg.MaxBytes:
			reasons = append(reasons, fmt.Sprintf("the partition stream it holds back uses %d bytes, over the tap max bytes %d", bytes, t.cfg.MaxBytes))
		default:
			if g.Floor.Compare(target) < 0 {
				target = g.Floor
			}
			continue
		}
		cut = append(cut, g)
	}
	for i, g := range cut {
		c, err := t.taps.CutTap(ctx, p, g.Name, g.Floor, g.FloorPending, target)
		if err != nil {
			return low, err
		}
		if c == nil {
			continue
		}
		t.cuts.WithLabelValues(g.Name).Inc()
		t.cfg.Logger.Error("tap group cut loose: it loses events the trim removes before it read them",
			"group", g.Name, "partition", p, "from", c.From.String(), "to", c.To.String(), "trim_to", target.String(), "reason", reasons[i])
	}
	for _, g := range cutBefore {
		if g.Cut.To.Compare(target) < 0 {
			if _, err := t.taps.CutTap(ctx, p, g.Name, g.Cut.To, false, target); err != nil {
				return low, err
			}
		}
	}
	return target, nil
}

// oldestNeeded is the first entry of partition p below low that group g
// still needs (zero: none). A group that needs the whole stream starts at
// the stream's first entry, not at its zero floor.
func (t *TapTrimmer) oldestNeeded(ctx context.Context, p int, g eventstore.TapGroup, low eventstore.Position) (eventstore.Position, error) {
	return t.taps.FirstBetween(ctx, p, g.Floor, g.FloorPending, low)
}
