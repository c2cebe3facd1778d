package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// checkpoints is where a projector keeps, per partition, the position of the
// last entry it applied and the fencing token of the latest owner. Every
// method runs inside the caller's transaction.
type checkpoints interface {
	// create inserts the partition's row (position zero, token 0) if it is
	// missing.
	create(ctx context.Context, tx *sql.Tx, p int) error
	// lock reads the partition's row and locks it until the transaction
	// ends; ok is false if there is no row.
	lock(ctx context.Context, tx *sql.Tx, p int) (pos eventstore.Position, token uint64, ok bool, err error)
	setToken(ctx context.Context, tx *sql.Tx, p int, token uint64) error
	advance(ctx context.Context, tx *sql.Tx, p int, to eventstore.Position) error
}

// claim records token as partition p's fencing token unless a newer one is
// stored (ErrFenced), and returns the stored position.
func claim(ctx context.Context, tx *sql.Tx, c checkpoints, p int, token uint64) (eventstore.Position, error) {
	if err := c.create(ctx, tx, p); err != nil {
		return eventstore.Position{}, err
	}
	pos, stored, _, err := c.lock(ctx, tx, p)
	if err != nil {
		return eventstore.Position{}, err
	}
	if stored > token {
		return eventstore.Position{}, fmt.Errorf("mysql: partition %d claimed with token %d, token %d is stored: %w", p, token, stored, projectors.ErrFenced)
	}
	if stored != token {
		if err := c.setToken(ctx, tx, p, token); err != nil {
			return eventstore.Position{}, err
		}
	}
	return pos, nil
}

// begin locks partition b.Partition's checkpoint and checks that the batch
// may be applied: its token is the stored one (ErrFenced if the stored one is
// newer) and its After is the stored position (ErrCheckpointMoved if not). A
// batch whose token is newer than the stored one, or a partition without a
// row, was not claimed in these tables (a replay swapped them in): that is
// ErrCheckpointMoved too, so the owner claims again.
func begin(ctx context.Context, tx *sql.Tx, c checkpoints, b *projectors.Batch) error {
	pos, token, ok, err := c.lock(ctx, tx, b.Partition)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("mysql: partition %d has no checkpoint: %w", b.Partition, projectors.ErrCheckpointMoved)
	case token > b.Token:
		return fmt.Errorf("mysql: partition %d: batch token %d, token %d is stored: %w", b.Partition, b.Token, token, projectors.ErrFenced)
	case token < b.Token:
		return fmt.Errorf("mysql: partition %d: batch token %d was not claimed here (stored %d): %w", b.Partition, b.Token, token, projectors.ErrCheckpointMoved)
	case pos != b.After:
		return fmt.Errorf("mysql: partition %d: batch follows %s, checkpoint is %s: %w", b.Partition, b.After, pos, projectors.ErrCheckpointMoved)
	}
	if b.To.Compare(b.After) <= 0 {
		return fmt.Errorf("mysql: partition %d: batch ends at %s, not after %s", b.Partition, b.To, b.After)
	}
	return nil
}

// positionCheckpoints keeps checkpoints as numbers, one row per partition,
// in a table of their own (read_model_checkpoints and its rebuild shadow).
type positionCheckpoints struct {
	createSQL, lockSQL, tokenSQL, advanceSQL string
}

func newPositionCheckpoints(table string) *positionCheckpoints {
	return &positionCheckpoints{
		createSQL:  "INSERT INTO " + table + " (partition_no) VALUES (?) ON DUPLICATE KEY UPDATE partition_no = partition_no",
		lockSQL:    "SELECT pos_ms, pos_seq, fencing_token FROM " + table + " WHERE partition_no = ? FOR UPDATE",
		tokenSQL:   "UPDATE " + table + " SET fencing_token = ? WHERE partition_no = ?",
		advanceSQL: "UPDATE " + table + " SET pos_ms = ?, pos_seq = ? WHERE partition_no = ?",
	}
}

func (c *positionCheckpoints) create(ctx context.Context, tx *sql.Tx, p int) error {
	if _, err := tx.ExecContext(ctx, c.createSQL, p); err != nil {
		return fmt.Errorf("mysql: creating checkpoint of partition %d: %w", p, err)
	}
	return nil
}

func (c *positionCheckpoints) lock(ctx context.Context, tx *sql.Tx, p int) (eventstore.Position, uint64, bool, error) {
	var pos eventstore.Position
	var token uint64
	err := tx.QueryRowContext(ctx, c.lockSQL, p).Scan(&pos.Ms, &pos.Seq, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return pos, 0, false, nil
	}
	if err != nil {
		return pos, 0, false, fmt.Errorf("mysql: reading checkpoint of partition %d: %w", p, err)
	}
	return pos, token, true, nil
}

func (c *positionCheckpoints) setToken(ctx context.Context, tx *sql.Tx, p int, token uint64) error {
	if _, err := tx.ExecContext(ctx, c.tokenSQL, token, p); err != nil {
		return fmt.Errorf("mysql: claiming partition %d: %w", p, err)
	}
	return nil
}

func (c *positionCheckpoints) advance(ctx context.Context, tx *sql.Tx, p int, to eventstore.Position) error {
	if _, err := tx.ExecContext(ctx, c.advanceSQL, to.Ms, to.Seq, p); err != nil {
		return fmt.Errorf("mysql: advancing checkpoint of partition %d: %w", p, err)
	}
	return nil
}

// namedCheckpoints keeps checkpoints in the shared projector_checkpoints
// table, under the projector's name, with the position as its stream entry
// id text ("<ms>-<seq>", "0" for zero), parsed and compared as numbers.
type namedCheckpoints struct {
	projector string
}

func (c *namedCheckpoints) create(ctx context.Context, tx *sql.Tx, p int) error {
	_, err := tx.ExecContext(ctx,
		"INSERT INTO projector_checkpoints (projector, partition_no, position, fencing_token) VALUES (?, ?, '0', 0) ON DUPLICATE KEY UPDATE projector = projector",
		c.projector, p)
	if err != nil {
		return fmt.Errorf("mysql: creating %s checkpoint of partition %d: %w", c.projector, p, err)
	}
	return nil
}

func (c *namedCheckpoints) lock(ctx context.Context, tx *sql.Tx, p int) (eventstore.Position, uint64, bool, error) {
	var text string
	var token uint64
	err := tx.QueryRowContext(ctx,
		"SELECT position, fencing_token FROM projector_checkpoints WHERE projector = ? AND partition_no = ? FOR UPDATE",
		c.projector, p).Scan(&text, &token)
	if errors.Is(err, sql.ErrNoRows) {
		return eventstore.Position{}, 0, false, nil
	}
	if err != nil {
		return eventstore.Position{}, 0, false, fmt.Errorf("mysql: reading %s checkpoint of partition %d: %w", c.projector, p, err)
	}
	pos, err := eventstore.ParsePosition(text)
	if err != nil {
		return eventstore.Position{}, 0, false, fmt.Errorf("mysql: %s checkpoint of partition %d: %w", c.projector, p, err)
	}
	return pos, token, true, nil
}

func (c *namedCheckpoints) setToken(ctx context.Context, tx *sql.Tx, p int, token uint64) error {
	_, err := tx.ExecContext(ctx, "UPDATE projector_checkpoints SET fencing_token = ? WHERE projector = ? AND partition_no = ?", token, c.projector, p)
	if err != nil {
		return fmt.Errorf("mysql: claiming %s partition %d: %w", c.projector, p, err)
	}
	return nil
}

func (c *namedCheckpoints) advance(ctx context.Context, tx *sql.Tx, p int, to eventstore.Position) error {
	_, err := tx.ExecContext(ctx, "UPDATE projector_checkpoints SET position = ? WHERE projector = ? AND partition_no = ?", to.String(), c.projector, p)
	if err != nil {
		return fmt.Errorf("mysql: advancing %s checkpoint of partition %d: %w", c.projector, p, err)
	}
	return nil
}
