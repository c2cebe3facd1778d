package mysql

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// Log is the hot part of the log a rebuild reads once the archive has
// nothing more: the partition streams. *eventstore.Store satisfies it.
type Log interface {
	Partitions() int
	ReadPartitionState(ctx context.Context, p int, after eventstore.Position, limit int) ([]eventstore.Recorded, eventstore.StreamState, error)
}

var _ Log = (*eventstore.Store)(nil)

// RebuildOptions configures Rebuild. The zero value of each field takes the
// default documented next to it.
type RebuildOptions struct {
	// Config configures the projector that builds the new tables.
	Config Config
	// BatchSize bounds the entries applied in one transaction (default
	// 20000). Large batches fold many events into each row written (a
	// conversation's messages update its rows once per batch) and insert
	// history rows in key order, which makes a rebuild several times faster
	// than the live projector's small batches.
	BatchSize int
	// Parallelism is how many partitions are rebuilt at once (default 4).
	Parallelism int
	// PauseLease bounds how long the live projector stays paused if the
	// rebuild dies during the swap (default 2m).
	PauseLease time.Duration
	// SwapLockWait bounds the wait of one attempt of the RENAME TABLE for
	// other sessions' metadata locks (lock_wait_timeout, whole seconds,
	// default 2s); it must be shorter than PauseLease. Readers of the tables
	// queue behind a waiting RENAME, so this is also the longest they stall.
	SwapLockWait time.Duration
	// SwapAttempts is how many times the swap is tried when it times out
	// waiting for locks (default 5, 1..101), each attempt SwapLockWait after
	// the last, with the live projector unpaused in between.
	SwapAttempts int
	// Fresh builds from zero even if an earlier rebuild left its shadow
	// tables (a failed swap, a kill); without it they are caught up from
	// their checkpoints and swapped in.
	Fresh bool
	// Progress, if set, is called after every batch applied and at each
	// phase change, never concurrently.
	Progress func(RebuildProgress)
	// Logger receives the phases (default: none).
	Logger *slog.Logger
}

// RebuildPhase names a step of Rebuild.
type RebuildPhase string

const (
	// PhaseBuild applies the whole log, archive then stream, to the new
	// tables while the live projector keeps running.
	PhaseBuild RebuildPhase = "build"
	// PhaseChase brings partitions behind the live checkpoints up to them,
	// still without pausing anything.
	PhaseChase RebuildPhase = "chase"
	// PhaseSwap pauses the live projector, catches up to its frozen
	// checkpoints and swaps the tables.
	PhaseSwap RebuildPhase = "swap"
	// PhaseRename: the live projector is paused and the new tables are
	// caught up to its checkpoints; the one RENAME TABLE comes next.
	PhaseRename RebuildPhase = "rename"
	// PhaseSwapped: the RENAME TABLE is done, the rebuilt model is live;
	// next the live projector is unpaused and the old tables dropped.
	PhaseSwapped RebuildPhase = "swapped"
	// PhaseDone: the rebuilt model is live and the old tables are dropped.
	PhaseDone RebuildPhase = "done"
)

// RebuildProgress reports how far a rebuild got.
type RebuildProgress struct {
	Phase RebuildPhase
	// Partition and Position are those of the batch just applied; Partition
	// is -1 on a phase change.
	Partition int
	Position  eventstore.Position
	// Events counts the events applied so far by this Rebuild, all
	// partitions together.
	Events int64
	// Total is an estimate of the entries this Rebuild reads (the archive's
	// rows after the shadow checkpoints, from the table statistics when
	// building from zero, plus the stream entries not yet archived), at
	// least Events.
	Total int64
	// Resumed: the shadow tables of an earlier rebuild were reused.
	Resumed bool
	// Elapsed is the time since Rebuild started.
	Elapsed time.Duration
}

func (o *RebuildOptions) setDefaults() {
	o.BatchSize = cmp.Or(o.BatchSize, 20_000)
	o.Parallelism = cmp.Or(o.Parallelism, 4)
	o.PauseLease = cmp.Or(o.PauseLease, 2*time.Minute)
	o.SwapLockWait = cmp.Or(o.SwapLockWait, 2*time.Second)
	o.SwapAttempts = cmp.Or(o.SwapAttempts, 5)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of the options (after defaults) at once.
func (o RebuildOptions) Validate() error {
	var errs []error
	if o.BatchSize < 1 || o.BatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("mysql: rebuild batch size must be 1..100000, got %d", o.BatchSize))
	}
	if o.Parallelism < 1 {
		errs = append(errs, fmt.Errorf("mysql: rebuild parallelism must be positive, got %d", o.Parallelism))
	}
	if o.SwapLockWait < time.Second || o.SwapLockWait%time.Second != 0 || o.SwapLockWait >= o.PauseLease {
		errs = append(errs, fmt.Errorf("mysql: swap lock wait (%s) must be whole seconds, at least 1s and shorter than the pause lease (%s)", o.SwapLockWait, o.PauseLease))
	}
	if o.SwapAttempts < 1 || o.SwapAttempts > 101 {
		errs = append(errs, fmt.Errorf("mysql: swap attempts must be 1..101, got %d", o.SwapAttempts))
	}
	return errors.Join(errs...)
}

// rebuildToken is the fencing token of the rebuild's own projector.
const rebuildToken = 1

// Rebuild rebuilds the MySQL read model from position zero and swaps it in,
// while the log keeps growing and the live projector keeps running. It is
// what `mpimctl replay mysql` runs. The protocol:
//
//  1. Take the user lock "mpim_rebuild.<database>" (GET_LOCK): one rebuild
//     per database at a time. Drop leftovers of an earlier rebuild (its
//     old tables, and its pause if it died paused). Reuse its shadow
//     tables if they are all there with the live columns and Fresh is not
//     set (a failed swap keeps them), else drop them and create the shadow
//     tables, "<table>__rebuild" LIKE each model table and
//     read_model_checkpoints (same DDL).
//  2. Build: apply every partition from its shadow checkpoint (zero for new
//     tables) to its head into the
//     shadow tables, with the same projector code and the same
//     transactional checkpoints (in read_model_checkpoints__rebuild),
//     reading the archive and then the stream (src) seamlessly through a
//     LogReader, which fails with a GapError rather than skip entries the
//     log lost. Readers keep using the live tables, which the live
//     projector keeps updating.
//  3. Chase: partitions whose shadow checkpoint is behind the live
//     checkpoint are brought up to it, still unpaused, so the pause is short.
//  4. Pause: set read_model_control.paused_until to now + PauseLease. Every
//     live Claim and Apply reads that row under a shared lock as its first
//     statement, so the update waits for the batches in flight, and later
//     ones see the pause and wait (polling) instead of writing. The live
//     checkpoints are now frozen.
//  5. Catch up each shadow partition to its frozen live checkpoint (exactly;
//     partitions already ahead stay ahead), renew the lease, and copy the
//     live fencing tokens into the shadow checkpoints, so a stale owner
//     stays fenced after the swap.
//  6. Swap with one statement, atomically for every reader:
//     RENAME TABLE users TO users__old, users__rebuild TO users, ...,
//     read_model_checkpoints TO read_model_checkpoints__old,
//     read_model_checkpoints__rebuild TO read_model_checkpoints,
//     under lock_wait_timeout = SwapLockWait: a RENAME waiting for a
//     metadata lock (a long transaction that read a table) queues every
//     later reader of that table behind it, so its wait is kept short. One
//     that times out unpauses and is tried again from step 4, up to
//     SwapAttempts in all; then Rebuild fails with ErrSwapBlocked and keeps
//     the shadow tables for the next Rebuild.
//  7. Unpause, and drop the __old tables.
//
// A rebuild killed at any point leaves the live tables whole, either all
// old (before the rename) or all new (after it), each with its own
// checkpoints: a restarted live projector carries on from them, and the
// next Rebuild drops what the dead one left.
//
// After the swap a live owner whose next batch does not follow the new
// checkpoint gets projectors.ErrCheckpointMoved and claims again (the
// runner does so by itself); it then resumes from the rebuilt checkpoint. If
// anything fails before the rename the live model is untouched, the pause
// is lifted and the shadow tables stay for the next Rebuild to reuse (or,
// with Fresh, to drop).
// If the rebuild dies while paused (before or after the rename), its
// session ends and with it the lock of step 1: the live projector ignores
// a pause whose rebuild no longer holds the lock, and the lease ends the
// pause if the database never notices the death. Correctness
// never depends on the pause (a checkpoint always sits beside the tables it
// describes); the pause keeps readers from seeing the model step back.
//
// Rebuild needs the schema migrated and the archive (if any) written by an
// Archiver into the same database.
func Rebuild(ctx context.Context, db *sql.DB, src Log, opts RebuildOptions) error {
	opts.setDefaults()
	if err := opts.Validate(); err != nil {
		return err
	}
	if db == nil || src == nil {
		return errors.New("mysql: rebuild needs a database and a log")
	}
	shadow, err := newReadModel(db, opts.Config, rebuildSuffix, false)
	if err != nil {
		return err
	}
	defer shadow.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysql: rebuild: %w", err)
	}
	defer conn.Close()
	unlock, err := lockRebuild(ctx, conn)
	if err != nil {
		return err
	}
	defer unlock()

	rb := &rebuild{
		db: db, conn: conn, src: src, opts: opts, shadow: shadow, start: time.Now(),
		reader: NewLogReader(db, src), pos: make([]eventstore.Position, src.Partitions()),
		id: "rebuild-" + strings.ToLower(rand.Text()[:12]),
	}
	if rb.resumed, err = rb.prepare(ctx); err != nil {
		return err
	}
	for p := range rb.pos {
		if rb.pos[p], err = shadow.Claim(ctx, p, rebuildToken); err != nil {
			return err
		}
	}
	if rb.resumed {
		opts.Logger.Info("rebuild resumes from the rebuilt tables an earlier rebuild left")
	}
	if rb.total, err = rb.estimate(ctx); err != nil {
		return err
	}

	rb.phase(PhaseBuild)
	if err := rb.eachPartition(ctx, func(p int) error { return rb.pump(ctx, p, nil) }); err != nil {
		return err
	}
	rb.phase(PhaseChase)
	for range 3 {
		live, err := readPositions(ctx, db, tCheckpoints)
		if err != nil {
			return err
		}
		behind, err := rb.catchUp(ctx, live)
		if err != nil {
			return err
		}
		if behind == 0 {
			break
		}
	}
	rb.phase(PhaseSwap)
	if err := rb.swap(ctx); err != nil {
		return err
	}
	rb.phase(PhaseDone)
	return nil
}

// rebuild is the state of one Rebuild.
type rebuild struct {
	db     *sql.DB
	conn   *sql.Conn // holds the rebuild lock; runs the DDL
	src    Log
	opts   RebuildOptions
	shadow *ReadModel
	reader *LogReader
	start  time.Time
	id     string // paused_by starts with it
	// resumed: the shadow tables of an earlier rebuild were reused; total
	// estimates the entries to read (RebuildProgress.Total).
	resumed bool
	total   int64

	pos    []eventstore.Position // shadow checkpoint per partition; pump of p owns pos[p]
	events atomic.Int64
	mu     sync.Mutex // serialises Progress
	cur    RebuildPhase
}

// rebuildLockName returns the name of the user lock a Rebuild holds from
// start to end on its database: "mpim_rebuild.<database>", cut to MySQL's
// 64 characters.
func rebuildLockName(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (string, error) {
	var dbName sql.NullString
	if err := q.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&dbName); err != nil {
		return "", fmt.Errorf("mysql: rebuild: reading the database name: %w", err)
	}
	if !dbName.Valid {
		return "", errors.New("mysql: rebuild: no database selected")
	}
	name := "mpim_rebuild." + dbName.String
	if len(name) > 64 {
		name = name[:64]
	}
	return name, nil
}

func lockRebuild(ctx context.Context, conn *sql.Conn) (func(), error) {
	name, err := rebuildLockName(ctx, conn)
	if err != nil {
		return nil, err
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		return nil, fmt.Errorf("mysql: rebuild: taking lock %s: %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("mysql: rebuild: another rebuild holds %s", name)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", name)
	}, nil
}

func (rb *rebuild) phase(ph RebuildPhase) {
	rb.opts.Logger.Info("rebuild phase", "phase", string(ph), "events", rb.events.Load(), "elapsed", time.Since(rb.start))
	rb.mu.Lock()
	rb.cur = ph
	rb.mu.Unlock()
	rb.report(-1, eventstore.Position{})
}

func (rb *rebuild) report(p int, pos eventstore.Position) {
	if rb.opts.Progress == nil {
		return
	}
	rb.mu.Lock()
	defer rb.mu.Unlock()
	ev := rb.events.Load()
	rb.opts.Progress(RebuildProgress{Phase: rb.cur, Partition: p, Position: pos, Events: ev, Total: max(rb.total, ev),
		Resumed: rb.resumed, Elapsed: time.Since(rb.start)})
}

// clearLeftovers undoes what an earlier rebuild that died (a crash, a
// SIGKILL) left: its old tables, its shadow tables if shadowToo, and its pause of the live
// projector, which would otherwise hold until its lease ends, for the
// earlier rebuild's lock is free but this one's is not. Holding the lock,
// no other rebuild can be running.
func (rb *rebuild) clearLeftovers(ctx context.Context, shadowToo bool) error {
	var drop []string
	for _, t := range swapTables() {
		if shadowToo {
			drop = append(drop, t+rebuildSuffix)
		}
		drop = append(drop, t+oldSuffix)
	}
	if _, err := rb.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(drop, ", ")); err != nil {
		return fmt.Errorf("mysql: rebuild: dropping leftover tables: %w", err)
	}
	if _, err := rb.conn.ExecContext(ctx, "UPDATE "+tControl+" SET paused_until = NULL, paused_by = '' WHERE id = 1"); err != nil {
		return fmt.Errorf("mysql: rebuild: lifting a dead rebuild's pause: %w", err)
	}
	return nil
}

// createShadow creates the shadow tables empty, with the live tables' DDL.
func (rb *rebuild) createShadow(ctx context.Context) error {
	for _, t := range swapTables() {
		if _, err := rb.conn.ExecContext(ctx, "CREATE TABLE "+t+rebuildSuffix+" LIKE "+t); err != nil {
			return fmt.Errorf("mysql: rebuild: creating %s%s: %w", t, rebuildSuffix, err)
		}
	}
	return nil
}

// eachPartition runs fn for every partition, Parallelism at a time, and
// returns the first error (the others are cancelled).
func (rb *rebuild) eachPartition(ctx context.Context, fn func(p int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, rb.opts.Parallelism)
	var wg sync.WaitGroup
	for p := range rb.pos {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(p); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// catchUp brings every shadow partition behind its live checkpoint up to it
// and returns how many were behind.
func (rb *rebuild) catchUp(ctx context.Context, live map[int]eventstore.Position) (int, error) {
	var behind atomic.Int64
	err := rb.eachPartition(ctx, func(p int) error {
		to, ok := live[p]
		if !ok || rb.pos[p].Compare(to) >= 0 {
			return nil
		}
		behind.Add(1)
		return rb.pump(ctx, p, &to)
	})
	return int(behind.Load()), err
}

// pump applies partition p's entries after the shadow checkpoint to the
// shadow tables, up to the head, or up to and including upTo if not nil
// (which must be an entry's position). It reads the next batch while it
// applies the current one.
func (rb *rebuild) pump(ctx context.Context, p int, upTo *eventstore.Position) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *projectors.Batch, 2)
	readErr := make(chan error, 1)
	go func() {
		defer close(batches)
		pos := rb.pos[p]
		for upTo == nil || pos.Compare(*upTo) < 0 {
			b, err := rb.next(ctx, p, pos, upTo)
			if err != nil || b == nil {
				readErr <- err
				return
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
			pos = b.To
		}
		readErr <- nil
	}()
	for b := range batches {
		if err := rb.shadow.Apply(ctx, b); err != nil {
			return fmt.Errorf("mysql: rebuild: partition %d after %s: %w", p, b.After, err)
		}
		rb.pos[p] = b.To
		rb.events.Add(int64(len(b.Events)))
		rb.report(p, b.To)
	}
	if err := <-readErr; err != nil {
		return fmt.Errorf("mysql: rebuild: reading partition %d: %w", p, err)
	}
	if upTo != nil && rb.pos[p].Compare(*upTo) < 0 {
		return fmt.Errorf("mysql: rebuild: partition %d ends at %s, before the live checkpoint %s", p, rb.pos[p], *upTo)
	}
	return nil
}

// next reads the batch of partition p after pos (nil at the head), cut after
// upTo. An undecodable entry ends the batch and is carried in Skipped, as
// the runner does.
func (rb *rebuild) next(ctx context.Context, p int, pos eventstore.Position, upTo *eventstore.Position) (*projectors.Batch, error) {
	recs, err := rb.reader.Read(ctx, p, pos, rb.opts.BatchSize)
	var de *eventstore.DecodeError
	if err != nil && !errors.As(err, &de) {
		return nil, err
	}
	if upTo != nil {
		n := 0
		for n < len(recs) && recs[n].Position.Compare(*upTo) <= 0 {
			n++
		}
		if n < len(recs) || (de != nil && de.Position.Compare(*upTo) > 0) {
			recs, de = recs[:n], nil
		}
	}
	b := &projectors.Batch{Partition: p, Token: rebuildToken, After: pos, Events: recs}
	switch {
	case de != nil:
		b.Skipped, b.To = []*eventstore.DecodeError{de}, de.Position
	case len(recs) > 0:
		b.To = recs[len(recs)-1].Position
	default:
		return nil, nil
	}
	return b, nil
}
