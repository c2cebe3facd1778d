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
	// MaxAttempts is how many times a batch is applied while it fails with
	// errors that are not Transient before the runner isolates the entry
	// that fails and quarantines it (see Quarantiner); 1..1000, default
	// DefaultMaxAttempts. Transient errors are retried without bound.
	MaxAttempts int
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

// DefaultMaxAttempts is the default RunnerConfig.MaxAttempts: with the
// default backoff an event is quarantined about 1.5s after its first failure.
const DefaultMaxAttempts = 5

// Runner drives one projector over the log's partitions, with ownership
// from a Coordinator. It is safe to run one Runner per projector per process.
type Runner struct {
	log   Log
	coord Coordinator
	proj  Projector
	cfg   RunnerConfig
	m     *runnerMetrics
	// now and linger are the clock and the wait of a linger (lingerFor);
	// tests replace them (export_test.go) so that a linger ends when the
	// test says, whatever the machine's speed.
	now    func() time.Time
	linger func(ctx context.Context, o *owned, d time.Duration)
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
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
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
	if cfg.MaxAttempts < 1 || cfg.MaxAttempts > 1000 {
		errs = append(errs, fmt.Errorf("projectors: max attempts must be 1..1000, got %d", cfg.MaxAttempts))
	}
	if cfg.RetryBackoff < 0 {
		errs = append(errs, fmt.Errorf("projectors: retry backoff must not be negative, got %s", cfg.RetryBackoff))
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
	return &Runner{log: log, coord: coord, proj: proj, cfg: cfg, m: m, now: time.Now, linger: lingerFor}, nil
}

// Run processes the partitions this process is given until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	return r.coord.Run(ctx, r.proj.Name(), r.log.Partitions(), r.partition)
}

// owned is the state of one partition while this process owns it.
type owned struct {
	p     int
	token uint64
	lg    *slog.Logger
	pm    partitionMetrics
	// pos is the checkpoint as the runner knows it; lagAt is when the lag
	// was last observed.
	pos   eventstore.Position
	lagAt time.Time
	// pause is the timer of lingerFor, reused from linger to linger.
	pause *time.Timer
}

// partition processes one owned partition until ctx ends or ownership is lost.
func (r *Runner) partition(ctx context.Context, p int, token uint64) error {
	o := &owned{p: p, token: token, pm: r.m.partition(strconv.Itoa(p)),
		lg: r.cfg.Logger.With("projector", r.proj.Name(), "partition", p, "token", token)}
	if err := r.claim(ctx, o); err != nil {
		return r.stop(ctx, o.lg, err)
	}
	o.pm.owned.Set(1)
	defer o.pm.owned.Set(0)
	defer func() {
		if o.pause != nil {
			o.pause.Stop()
		}
	}()
	for ctx.Err() == nil {
		b, err := r.next(ctx, o)
		if err != nil {
			return r.stop(ctx, o.lg, err)
		}
		if b == nil {
			// Idle for the block time: the lag is worth a look.
			r.observeLag(ctx, o)
			continue
		}
		readAt := r.now()
		err = r.apply(ctx, o, b)
		if errors.Is(err, ErrCheckpointMoved) {
			o.lg.Info("checkpoint moved under the owner (replay swap); claiming again")
			if err := r.claim(ctx, o); err != nil {
				return r.stop(ctx, o.lg, err)
			}
			continue
		}
		if err != nil {
			return r.stop(ctx, o.lg, err)
		}
		// One lag read per second while busy, not one per batch: it is a
		// round trip of its own.
		r.lagEvery(ctx, o)
		if wait := r.cfg.Linger - r.now().Sub(readAt); wait > 0 && b.size() < r.cfg.BatchSize {
			r.linger(ctx, o, wait)
		}
	}
	return nil
}

// lingerFor waits d, or until ctx ends, on o's timer.
func lingerFor(ctx context.Context, o *owned, d time.Duration) {
	if o.pause == nil {
		o.pause = time.NewTimer(d)
	} else {
		o.pause.Reset(d)
	}
	select {
	case <-o.pause.C:
	case <-ctx.Done():
	}
}

// lagInterval is how often a busy partition, or one whose batch is being
// retried, reads its lag.
const lagInterval = time.Second

func (r *Runner) claim(ctx context.Context, o *owned) error {
	err := r.retry(ctx, o, "claim", 0, func() error {
		var err error
		o.pos, err = r.proj.Claim(ctx, o.p, o.token)
		return err
	})
	o.lg.Debug("partition claimed", "checkpoint", o.pos.String(), "err", err)
	return err
}

// next reads the batch after the checkpoint: nil when there is nothing new
// within the block time. An undecodable entry ends the batch and is carried
// in Skipped.
func (r *Runner) next(ctx context.Context, o *owned) (*Batch, error) {
	var b *Batch
	pos := o.pos
	err := r.retry(ctx, o, "read", 0, func() error {
		recs, err := r.log.Tail(ctx, o.p, pos, r.cfg.BatchSize, r.cfg.Block)
		var de *eventstore.DecodeError
		switch {
		case errors.As(err, &de):
			b = &Batch{Partition: o.p, Token: o.token, After: pos, To: de.Position, Events: recs, Skipped: []*eventstore.DecodeError{de}}
		case err != nil:
			return err
		case len(recs) > 0:
			b = &Batch{Partition: o.p, Token: o.token, After: pos, To: recs[len(recs)-1].Position, Events: recs}
		}
		return nil
	})
	return b, err
}

// apply applies one batch. Transient failures are retried without bound;
// after MaxAttempts other failures the entries that fail are isolated and
// quarantined (isolate) and the rest applied. It returns only when the
// checkpoint is at b.To, or with the error that ends the partition's
// processing (fenced, checkpoint moved, ctx).
func (r *Runner) apply(ctx context.Context, o *owned, b *Batch) error {
	start := time.Now()
	stopLag := r.lagWhileApplying(ctx, o)
	err := r.retry(ctx, o, "apply", r.cfg.MaxAttempts, func() error { return r.proj.Apply(ctx, b) })
	stopLag()
	switch {
	case err == nil:
		r.applied(o, b, start)
		return nil
	case stopping(ctx, err):
		return err
	}
	o.lg.Warn("batch failed repeatedly; isolating the entry that fails", "after", b.After.String(), "to", b.To.String(),
		"entries", b.size(), "err", err)
	return r.isolate(ctx, o, b, err)
}

// applied records a batch applied since start.
func (r *Runner) applied(o *owned, b *Batch, start time.Time) {
	r.m.batchSeconds.Observe(time.Since(start).Seconds())
	o.pm.events.Add(float64(len(b.Events)))
	if len(b.Skipped) > 0 {
		o.pm.quarantined.Add(float64(len(b.Skipped)))
		for _, s := range b.Skipped {
			o.lg.Error("undecodable event quarantined", "position", s.Position.String(), "err", s.Err)
		}
	}
	o.pos = b.To
	o.pm.checkpoint.Set(float64(b.To.Ms))
}

// retry runs f until it succeeds, is fenced, finds the checkpoint moved, ctx
// ends, or, when attempts > 0, it failed attempts times with errors that are
// not Transient; it returns f's last error. It backs off exponentially
// between failures and keeps the lag gauge moving while it waits.
func (r *Runner) retry(ctx context.Context, o *owned, what string, attempts int, f func() error) error {
	backoff := r.cfg.RetryBackoff
	failed := 0
	for {
		err := f()
		if err == nil || stopping(ctx, err) {
			return err
		}
		r.m.errors.WithLabelValues(what).Inc()
		transient := Transient(err)
		if !transient {
			failed++
			if attempts > 0 && failed >= attempts {
				return err
			}
		}
		o.lg.Warn("projector step failed; retrying", "step", what, "err", err, "transient", transient, "backoff", backoff)
		r.lagEvery(ctx, o)
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
		return nil //nolint:nilerr // a cancelled context is a normal end (above)
	case errors.Is(err, ErrFenced):
		lg.Warn("partition fenced by a newer owner; stopping")
		return nil
	}
	return err
}

// lagEvery observes the lag if it was last observed lagInterval ago.
func (r *Runner) lagEvery(ctx context.Context, o *owned) {
	if time.Since(o.lagAt) >= lagInterval {
		r.observeLag(ctx, o)
	}
}

// observeLag sets the lag gauge: milliseconds between the checkpoint and the
// partition's last entry (both are Redis clock times), 0 when there are no
// entries after the checkpoint.
func (r *Runner) observeLag(ctx context.Context, o *owned) {
	o.lagAt = time.Now()
	r.setLag(ctx, o.p, o.pos, o.pm.lagMs)
}

// setLag sets gauge to the milliseconds between pos and partition p's last
// entry.
func (r *Runner) setLag(ctx context.Context, p int, pos eventstore.Position, gauge prometheus.Gauge) {
	info, err := r.log.Info(ctx, p)
	if err != nil {
		return
	}
	var ms float64
	if info.Last.Compare(pos) > 0 {
		ms = float64(info.Last.Ms - min(pos.Ms, info.Last.Ms))
	}
	gauge.Set(ms)
}

// lagWhileApplying keeps o's lag gauge moving, every lagInterval, while one
// Apply takes longer than that (a projector waiting out a pause, a lock
// wait, a slow batch), until the returned stop is called. It reads the
// checkpoint before the batch and leaves o alone.
func (r *Runner) lagWhileApplying(ctx context.Context, o *owned) (stop func()) {
	pos, gauge := o.pos, o.pm.lagMs
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(lagInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				r.setLag(ctx, o.p, pos, gauge)
				t.Reset(lagInterval)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}
