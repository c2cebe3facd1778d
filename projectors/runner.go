package projectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/prometheus/client_golang/prometheus"
)

// Log is what the runner reads: the event store's partitions.
type Log interface {
	Partitions() int
	Tail(ctx context.Context, p int, after eventstore.Position, limit int, block time.Duration) ([]eventstore.Recorded, error)
	Info(ctx context.Context, p int) (eventstore.PartitionInfo, error)
}

var _ Log = (*eventstore.Store)(nil)

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// BatchSize bounds the entries of one batch (default 500).
	BatchSize int
	// Block is how long a read waits for new events (default 1s).
	Block time.Duration
	// RetryBackoff is the first wait after a failed batch; it doubles up to
	// 5s (default 100ms).
	RetryBackoff time.Duration
	// Linger is how long, counted from a read, the runner waits before the
	// next read after a batch smaller than BatchSize, so that the next batch
	// collects what arrives meanwhile (see Lingering). 0 takes the
	// projector's Linger if it implements Lingering, else none; a negative
	// value means none whatever the projector says.
	Linger time.Duration
	Logger *slog.Logger
	// Registerer receives the runner's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Runner drives one projector over the log's partitions, with ownership
// from a Coordinator. It is safe to run one Runner per projector per process.
type Runner struct {
	log   Log
	coord Coordinator
	proj  Projector
	cfg   RunnerConfig
	m     *runnerMetrics
}

// NewRunner returns a Runner; it fails on an invalid configuration or a
// metrics registration conflict.
func NewRunner(log Log, coord Coordinator, proj Projector, cfg RunnerConfig) (*Runner, error) {
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.Block == 0 {
		cfg.Block = time.Second
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if l, ok := proj.(Lingering); ok && cfg.Linger == 0 {
		cfg.Linger = l.Linger()
	}
	var errs []error
	if cfg.BatchSize < 1 || cfg.BatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("projectors: batch size must be 1..100000, got %d", cfg.BatchSize))
	}
	if cfg.Block < time.Millisecond {
		errs = append(errs, fmt.Errorf("projectors: block must be at least 1ms, got %s", cfg.Block))
	}
	if cfg.Linger > time.Minute {
		errs = append(errs, fmt.Errorf("projectors: linger must be at most 1m, got %s", cfg.Linger))
	}
	if log == nil || coord == nil || proj == nil {
		errs = append(errs, errors.New("projectors: runner needs a log, a coordinator and a projector"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m, err := newRunnerMetrics(cfg.Registerer, proj.Name())
	if err != nil {
		return nil, err
	}
	return &Runner{log: log, coord: coord, proj: proj, cfg: cfg, m: m}, nil
}

// Run processes the partitions this process is given until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	return r.coord.Run(ctx, r.proj.Name(), r.log.Partitions(), r.partition)
}

// partition processes one owned partition until ctx ends or ownership is lost.
func (r *Runner) partition(ctx context.Context, p int, token uint64) error {
	lg := r.cfg.Logger.With("projector", r.proj.Name(), "partition", p, "token", token)
	pm := r.m.partition(strconv.Itoa(p))
	pos, err := r.claim(ctx, lg, p, token)
	if err != nil {
		return r.stop(ctx, lg, err)
	}
	pm.owned.Set(1)
	defer pm.owned.Set(0)
	var pause *time.Timer // lingering
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	var lagAt time.Time // when the lag was last observed
	for ctx.Err() == nil {
		b, err := r.next(ctx, lg, p, token, pos)
		if err != nil {
			return r.stop(ctx, lg, err)
		}
		if b == nil {
			// Idle for the block time: the lag is worth a look.
			r.observeLag(ctx, p, pm, pos)
			lagAt = time.Now()
			continue
		}
		readAt := time.Now()
		err = r.apply(ctx, lg, pm, b)
		if errors.Is(err, ErrCheckpointMoved) {
			lg.Info("checkpoint moved under the owner (replay swap); claiming again")
			if pos, err = r.claim(ctx, lg, p, token); err != nil {
				return r.stop(ctx, lg, err)
			}
			continue
		}
		if err != nil {
			return r.stop(ctx, lg, err)
		}
		pos = b.To
		// One lag read per second while busy, not one per batch: it is a
		// round trip of its own.
		now := time.Now()
		if now.Sub(lagAt) >= lagInterval {
			r.observeLag(ctx, p, pm, pos)
			lagAt = now
		}
		if wait := r.cfg.Linger - now.Sub(readAt); wait > 0 && len(b.Events)+len(b.Skipped) < r.cfg.BatchSize {
			if pause == nil {
				pause = time.NewTimer(wait)
			} else {
				pause.Reset(wait)
			}
			select {
			case <-pause.C:
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// lagInterval is how often a busy partition reads its lag.
const lagInterval = time.Second

func (r *Runner) claim(ctx context.Context, lg *slog.Logger, p int, token uint64) (eventstore.Position, error) {
	var pos eventstore.Position
	err := r.retry(ctx, lg, "claim", func() error {
		var err error
		pos, err = r.proj.Claim(ctx, p, token)
		return err
	})
	lg.Debug("partition claimed", "checkpoint", pos.String(), "err", err)
	return pos, err
}

// next reads the batch after pos: nil when there is nothing new within the
// block time. An undecodable entry ends the batch and is carried in Skipped.
func (r *Runner) next(ctx context.Context, lg *slog.Logger, p int, token uint64, pos eventstore.Position) (*Batch, error) {
	var b *Batch
	err := r.retry(ctx, lg, "read", func() error {
		recs, err := r.log.Tail(ctx, p, pos, r.cfg.BatchSize, r.cfg.Block)
		var de *eventstore.DecodeError
		switch {
		case errors.As(err, &de):
			b = &Batch{Partition: p, Token: token, After: pos, To: de.Position, Events: recs, Skipped: []*eventstore.DecodeError{de}}
		case err != nil:
			return err
		case len(recs) > 0:
			b = &Batch{Partition: p, Token: token, After: pos, To: recs[len(recs)-1].Position, Events: recs}
		}
		return nil
	})
	return b, err
}

// apply applies one batch, retrying failures other than fencing and a moved
// checkpoint.
func (r *Runner) apply(ctx context.Context, lg *slog.Logger, pm partitionMetrics, b *Batch) error {
	start := time.Now()
	err := r.retry(ctx, lg, "apply", func() error { return r.proj.Apply(ctx, b) })
	if err != nil {
		return err
	}
	r.m.batchSeconds.Observe(time.Since(start).Seconds())
	pm.events.Add(float64(len(b.Events)))
	if len(b.Skipped) > 0 {
		pm.quarantined.Add(float64(len(b.Skipped)))
		for _, s := range b.Skipped {
			lg.Error("undecodable event quarantined", "position", s.Position.String(), "err", s.Err)
		}
	}
	pm.checkpoint.Set(float64(b.To.Ms))
	return nil
}

// retry runs f until it succeeds, is fenced, or ctx ends, backing off
// exponentially between failures.
func (r *Runner) retry(ctx context.Context, lg *slog.Logger, what string, f func() error) error {
	backoff := r.cfg.RetryBackoff
	for {
		err := f()
		if err == nil || errors.Is(err, ErrFenced) || errors.Is(err, ErrCheckpointMoved) || ctx.Err() != nil {
			return err
		}
		r.m.errors.WithLabelValues(what).Inc()
		lg.Warn("projector step failed; retrying", "step", what, "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// stop turns the end of a partition's processing into work's result: a
// cancelled context or a fence is a normal end.
func (r *Runner) stop(ctx context.Context, lg *slog.Logger, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil
	case errors.Is(err, ErrFenced):
		lg.Warn("partition fenced by a newer owner; stopping")
		return nil
	}
	return err
}

// observeLag sets the lag gauges: milliseconds between the checkpoint and the
// partition's last entry (both are Redis clock times), and whether there are
// entries after the checkpoint at all.
func (r *Runner) observeLag(ctx context.Context, p int, pm partitionMetrics, pos eventstore.Position) {
	info, err := r.log.Info(ctx, p)
	if err != nil {
		return
	}
	var ms float64
	if info.Last.Compare(pos) > 0 {
		ms = float64(info.Last.Ms - min(pos.Ms, info.Last.Ms))
	}
	pm.lagMs.Set(ms)
}
