package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// ReadModelName is the name of the read-model projector (its runner metrics
// and ZooKeeper paths use it; quarantined events are recorded under it).
const ReadModelName = "mysql"

// Config configures a ReadModel. The zero value of each field takes the
// default documented next to it.
type Config struct {
	// Logger receives a notice for every quarantined event (default: none).
	Logger *slog.Logger
	// MaxRowsPerStatement bounds the rows of one multi-row statement
	// (default 1000); statements are also cut at about 4 MiB of values.
	MaxRowsPerStatement int
	// PausePoll is how often a paused projector looks whether a replay's
	// swap is over (default 50ms).
	PausePoll time.Duration
	// Linger is how long a runner lets a partition's events gather before
	// it applies a batch that is not full (projectors.Lingering; default
	// DefaultLinger, negative: none): one transaction then serves every
	// event of that time, at the price of that much more lag.
	Linger time.Duration
}

// DefaultLinger is the default Linger of the read model. Each batch is a
// transaction of a dozen round trips and a redo-log flush, which cost
// MariaDB and this process far more than the rows themselves. Measured with
// mpim-bench pairs at 1,000 msg/s on the 2-core machine: lingering 200ms
// (the archiver 1s) made read-model batches of 18 events instead of 7 and
// cut MariaDB's CPU per message from about 520 to 150 µs and the projector
// process's from about 490 to 290 µs; 50ms changed nothing there, as a
// batch took about that long anyway. Clients see history and conversation
// lists that much later; pushes come from the inbox, which does not linger.
const DefaultLinger = 200 * time.Millisecond

// DefaultArchiveLinger is the default Linger of the archiver: nothing reads
// the archive while its events are still in the log, so it batches a second.
const DefaultArchiveLinger = time.Second

func (c *Config) setDefaults() {
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	c.MaxRowsPerStatement = cmp.Or(c.MaxRowsPerStatement, defaultMaxRows)
	c.PausePoll = cmp.Or(c.PausePoll, 50*time.Millisecond)
	c.Linger = cmp.Or(c.Linger, DefaultLinger)
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.MaxRowsPerStatement < 1 || c.MaxRowsPerStatement > 10_000 {
		errs = append(errs, fmt.Errorf("mysql: max rows per statement must be 1..10000, got %d", c.MaxRowsPerStatement))
	}
	if c.PausePoll < time.Millisecond {
		errs = append(errs, fmt.Errorf("mysql: pause poll must be at least 1ms, got %s", c.PausePoll))
	}
	return errors.Join(errs...)
}

// ReadModel is the MySQL read-model projector ("mysql"): users and devices,
// friend requests, friendships, blocks, groups and members, message history,
// per-user deletions, conversations and per-user conversation lists with
// unread counts (see package doc). It keeps the projectors.Projector
// contract: each Apply is one transaction that applies the batch and moves
// the partition's checkpoint (read_model_checkpoints) from After to To with
// a compare-and-set on position and fencing token.
//
// A ReadModel is safe for concurrent use by one goroutine per partition.
type ReadModel struct {
	db   *sql.DB
	cfg  Config
	t    tables
	ckpt checkpoints
	// live: this is the model readers use, which a replay may pause (its
	// shadow during a rebuild is not).
	live  bool
	stmts *stmtCache
	// pauses logs the pauses the live model waits for.
	pauses pauseLog
	// hook, when set (tests), runs between the statements of Apply; an
	// error it returns fails the transaction there.
	hook func(ctx context.Context, stage string) error
}

var (
	_ projectors.Projector    = (*ReadModel)(nil)
	_ projectors.Checkpointer = (*ReadModel)(nil)
	_ projectors.Lingering    = (*ReadModel)(nil)
)

// NewReadModel returns the projector of the read model in db, whose schema
// must be migrated (schema.Migrate). Any pool works; one from connect.MySQL saves
// round trips. Close releases its prepared statements.
func NewReadModel(db *sql.DB, cfg Config) (*ReadModel, error) {
	return newReadModel(db, cfg, "", true)
}

func newReadModel(db *sql.DB, cfg Config, suffix string, live bool) (*ReadModel, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("mysql: read model needs a database")
	}
	t := newTables(suffix)
	return &ReadModel{db: db, cfg: cfg, t: t, ckpt: newPositionCheckpoints(t.checkpoints), live: live, stmts: newStmtCache(db)}, nil
}

// Close releases the projector's prepared statements. It must not be
// called while a Claim or Apply is in flight; the ReadModel is unusable
// afterwards.
func (m *ReadModel) Close() error { return m.stmts.close() }

// Name returns "mysql".
func (m *ReadModel) Name() string { return ReadModelName }

// Linger returns Config.Linger (projectors.Lingering).
func (m *ReadModel) Linger() time.Duration { return m.cfg.Linger }

// errPaused means a replay has paused the live model; the caller waits.
var errPaused = errors.New("mysql: read model paused for a swap")

// Claim records token as partition p's fencing token and returns the
// checkpoint to resume after. It fails with an error wrapping
// projectors.ErrFenced if a newer token is stored. While a replay swaps
// tables it waits for the swap to end (or ctx).
func (m *ReadModel) Claim(ctx context.Context, p int, token uint64) (eventstore.Position, error) {
	var pos eventstore.Position
	err := m.whenUnpaused(ctx, func(tx *sql.Tx) error {
		var err error
		pos, err = claim(ctx, tx, m.ckpt, p, token)
		return err
	})
	return pos, err
}

// Apply applies the batch's effects and moves the checkpoint from b.After to
// b.To in one transaction. It fails, applying nothing, with an error wrapping
// projectors.ErrFenced if a newer token is stored and with one wrapping
// projectors.ErrCheckpointMoved if the stored position is not b.After (or b's
// token was never claimed in these tables, as after a replay's swap).
//
// Undecodable entries (b.Skipped) and events that make no sense for the read
// model (an unknown user or group, a message that does not exist, ...) are
// recorded in the quarantine table in the same transaction and passed over.
// An event whose aggregate version does not follow the row's (an event
// applied twice or skipped) fails the batch with an error wrapping
// ErrOutOfOrder: a bug, which retries do not cure, so the partition stops
// there (the runner logs every retry) until it is fixed.
//
// Deadlocks with other partitions' batches (user_conversations rows are
// written from two partitions) are retried a few times inside Apply, then
// returned. While a replay swaps tables Apply waits for the swap to end.
func (m *ReadModel) Apply(ctx context.Context, b *projectors.Batch) error {
	if b == nil {
		return errors.New("mysql: nil batch")
	}
	items := decodeBatch(b)
	var quarantined []quarantined
	err := m.whenUnpaused(ctx, func(tx *sql.Tx) error {
		if err := m.step(ctx, "begin"); err != nil {
			return err
		}
		if err := begin(ctx, tx, m.ckpt, b); err != nil {
			return err
		}
		a := newApplier(m, tx, b.Partition)
		if err := a.run(ctx, items, b.Skipped); err != nil {
			return err
		}
		if err := m.step(ctx, "advance"); err != nil {
			return err
		}
		if err := m.ckpt.advance(ctx, tx, b.Partition, b.To); err != nil {
			return err
		}
		quarantined = a.quarantined
		return m.step(ctx, "commit")
	})
	if err != nil {
		return err
	}
	if err := m.step(ctx, "committed"); err != nil {
		return err
	}
	for _, q := range quarantined {
		m.cfg.Logger.Warn("event quarantined", "projector", ReadModelName, "partition", b.Partition,
			"position", q.pos.String(), "reason", q.reason)
	}
	return nil
}

// step runs the test hook, if any.
func (m *ReadModel) step(ctx context.Context, stage string) error {
	if m.hook == nil {
		return nil
	}
	return m.hook(ctx, stage)
}

// whenUnpaused runs fn in a transaction once the live model is not paused:
// the transaction first reads the control row under a shared lock, which a
// replay's pause waits for, and fn runs only if no pause is in force (or
// its rebuild is dead, see pauseHeld). A paused attempt rolls back and
// polls again.
func (m *ReadModel) whenUnpaused(ctx context.Context, fn func(tx *sql.Tx) error) error {
	for {
		err := inTx(ctx, m.db, func(tx *sql.Tx) error {
			if m.live {
				var paused sql.NullBool
				var until sql.NullTime
				var by string
				err := tx.QueryRowContext(ctx,
					"SELECT paused_until > UTC_TIMESTAMP(3), paused_until, paused_by FROM "+tControl+" WHERE id = 1 LOCK IN SHARE MODE").Scan(&paused, &until, &by)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("mysql: reading the pause: %w", err)
				}
				active := paused.Valid && paused.Bool
				var held error
				if active {
					held = m.pauseHeld(ctx, tx)
					if held != nil && !errors.Is(held, errPaused) {
						return held
					}
				}
				m.pauses.observe(m.cfg.Logger, active, held != nil, by, until)
				if held != nil {
					return held
				}
			}
			return fn(tx)
		})
		if !errors.Is(err, errPaused) {
			return err
		}
		select {
		case <-time.After(m.cfg.PausePoll):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pauseHeld returns errPaused if the rebuild that paused the live model is
// still running, that is, holds the rebuild lock (see Rebuild). A rebuild
// that died (killed mid-swap) lost the lock with its session: its pause is
// ignored rather than waited out until its lease ends, as it protects
// nothing any more. It runs only while a pause is in force.
func (m *ReadModel) pauseHeld(ctx context.Context, tx *sql.Tx) error {
	name, err := rebuildLockName(ctx, tx)
	if err != nil {
		return err
	}
	var holder sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&holder); err != nil {
		return fmt.Errorf("mysql: reading the rebuild lock: %w", err)
	}
	if holder.Valid {
		return errPaused
	}
	return nil
}

// Checkpoint returns partition p's stored checkpoint without claiming it
// (the zero Position if there is none), for trimming the log.
func (m *ReadModel) Checkpoint(ctx context.Context, p int) (eventstore.Position, error) {
	var pos eventstore.Position
	err := m.db.QueryRowContext(ctx, "SELECT pos_ms, pos_seq FROM "+m.t.checkpoints+" WHERE partition_no = ?", p).Scan(&pos.Ms, &pos.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("mysql: reading checkpoint of partition %d: %w", p, err)
	}
	return pos, nil
}

// Checkpoints returns the stored checkpoint of every partition that has
// one.
func (m *ReadModel) Checkpoints(ctx context.Context) (map[int]eventstore.Position, error) {
	return readPositions(ctx, m.db, m.t.checkpoints)
}

func readPositions(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, table string) (map[int]eventstore.Position, error) {
	rows, err := q.QueryContext(ctx, "SELECT partition_no, pos_ms, pos_seq FROM "+table)
	if err != nil {
		return nil, fmt.Errorf("mysql: reading %s: %w", table, err)
	}
	defer rows.Close()
	out := make(map[int]eventstore.Position)
	for rows.Next() {
		var p int
		var pos eventstore.Position
		if err := rows.Scan(&p, &pos.Ms, &pos.Seq); err != nil {
			return nil, fmt.Errorf("mysql: reading %s: %w", table, err)
		}
		out[p] = pos
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mysql: reading %s: %w", table, err)
	}
	return out, nil
}
