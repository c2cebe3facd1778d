package mysql

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrSwapBlocked means every attempt of a rebuild's RENAME TABLE ran into
// its lock wait timeout (RebuildOptions.SwapLockWait): a long transaction
// or query held a table of the read model. The rebuilt tables are kept; the
// next Rebuild without Fresh catches them up and tries the swap again.
var ErrSwapBlocked = errors.New("mysql: rebuild: the swap's RENAME TABLE waited too long for other sessions' locks")

// swap runs up to SwapAttempts attempts of swapOnce. An attempt whose
// RENAME TABLE times out waiting for metadata locks has held the readers
// queued behind it for at most SwapLockWait; the live projector is unpaused
// between attempts, and the next attempt comes SwapLockWait later.
func (rb *rebuild) swap(ctx context.Context) error {
	attempts := rb.opts.SwapAttempts
	var err error
	for attempt := 1; attempt <= attempts; attempt++ {
		rb.opts.Logger.Info("rebuild swap attempt", "attempt", attempt, "of", attempts, "lock_wait", rb.opts.SwapLockWait)
		err = rb.swapOnce(ctx)
		if !errors.Is(err, ErrSwapBlocked) {
			return err
		}
		rb.opts.Logger.Warn("rebuild swap blocked by another session's lock; live tables untouched, projector unpaused",
			"attempt", attempt, "of", attempts, "err", err)
		if attempt == attempts {
			break
		}
		select {
		case <-time.After(rb.opts.SwapLockWait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("%w (%d attempts, each waiting at most %s; the rebuilt tables are kept: end the long transaction, "+
		"see SHOW PROCESSLIST, and run the replay again to catch them up and swap)", err, attempts, rb.opts.SwapLockWait)
}

// pauseOwner is what read_model_control.paused_by says while this rebuild
// pauses the live projector: who and since when (shown by mpimctl stats).
func (rb *rebuild) pauseOwner() string {
	host, _ := os.Hostname()
	s := fmt.Sprintf("%s (host %s pid %d) since %s", rb.id, host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return s[:min(len(s), 255)]
}

// swapOnce pauses the live projector, catches the shadow up to the frozen
// live checkpoints, copies the fencing tokens and renames the tables (steps
// 4-7 of Rebuild). A RENAME TABLE that times out waiting for locks returns
// an error wrapping ErrSwapBlocked with the shadow tables intact and their
// own fencing token back in place. The live projector is unpaused whatever
// happens.
func (rb *rebuild) swapOnce(ctx context.Context) (err error) {
	owner := rb.pauseOwner()
	pause := func() error {
		_, err := rb.conn.ExecContext(ctx,
			"INSERT INTO "+tControl+" (id, paused_until, paused_by) VALUES (1, UTC_TIMESTAMP(3) + INTERVAL ? MICROSECOND, ?)"+
				" ON DUPLICATE KEY UPDATE paused_until = VALUES(paused_until), paused_by = VALUES(paused_by)",
			rb.opts.PauseLease.Microseconds(), owner)
		if err != nil {
			return fmt.Errorf("mysql: rebuild: pausing the live projector: %w", err)
		}
		return nil
	}
	paused := false
	unpause := func() error {
		if !paused {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := rb.conn.ExecContext(ctx, "UPDATE "+tControl+" SET paused_until = NULL, paused_by = '' WHERE id = 1 AND paused_by = ?", owner)
		if err != nil {
			return fmt.Errorf("mysql: rebuild: unpausing the live projector: %w", err)
		}
		paused = false
		return nil
	}
	defer func() { err = errors.Join(err, unpause()) }()
	if err := pause(); err != nil {
		return err
	}
	paused = true
	live, err := readPositions(ctx, rb.db, tCheckpoints)
	if err != nil {
		return err
	}
	if _, err := rb.catchUp(ctx, live); err != nil {
		return err
	}
	if err := pause(); err != nil { // renew the lease for the rename
		return err
	}
	_, err = rb.conn.ExecContext(ctx, "UPDATE "+tCheckpoints+rebuildSuffix+" s JOIN "+tCheckpoints+" l ON s.partition_no = l.partition_no"+
		" SET s.fencing_token = l.fencing_token")
	if err != nil {
		return fmt.Errorf("mysql: rebuild: copying fencing tokens: %w", err)
	}
	if _, err := rb.conn.ExecContext(ctx, "SET SESSION lock_wait_timeout = ?", int(rb.opts.SwapLockWait/time.Second)); err != nil {
		return fmt.Errorf("mysql: rebuild: %w", err)
	}
	defer func() {
		// The connection goes back to the pool.
		_, _ = rb.conn.ExecContext(context.WithoutCancel(ctx), "SET SESSION lock_wait_timeout = DEFAULT")
	}()
	var renames, olds []string
	for _, t := range swapTables() {
		renames = append(renames, t+" TO "+t+oldSuffix, t+rebuildSuffix+" TO "+t)
		olds = append(olds, t+oldSuffix)
	}
	rb.phase(PhaseRename)
	if _, err := rb.conn.ExecContext(ctx, "RENAME TABLE "+strings.Join(renames, ", ")); err != nil {
		err = fmt.Errorf("mysql: rebuild: swapping tables: %w", err)
		if n := mysqlErrno(err); n == errLockWaitTimeout || n == errDeadlock {
			err = fmt.Errorf("%w: %w", ErrSwapBlocked, err)
		}
		return errors.Join(err, rb.ownTokens(ctx))
	}
	rb.phase(PhaseSwapped)
	if err := unpause(); err != nil {
		return err
	}
	if _, err := rb.conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(olds, ", ")); err != nil {
		return fmt.Errorf("mysql: rebuild: dropping the old tables: %w", err)
	}
	return nil
}

// ownTokens gives every shadow checkpoint the rebuild's own fencing token
// again, after a swap copied the live ones in and then failed, so that the
// shadow can be caught up further (by this rebuild or the next).
func (rb *rebuild) ownTokens(ctx context.Context) error {
	_, err := rb.conn.ExecContext(context.WithoutCancel(ctx), "UPDATE "+tCheckpoints+rebuildSuffix+" SET fencing_token = ?", rebuildToken)
	if err != nil {
		return fmt.Errorf("mysql: rebuild: restoring the rebuilt tables' fencing token: %w", err)
	}
	return nil
}

// reusableShadow reports whether the shadow tables of an earlier rebuild
// (one whose swap failed, or that was killed) are all there with the live
// tables' columns, so that this rebuild can catch them up instead of
// building from zero.
func (rb *rebuild) reusableShadow(ctx context.Context) (bool, error) {
	for _, t := range swapTables() {
		var live, shadow string
		q := "SELECT COALESCE(GROUP_CONCAT(column_name, ' ', column_type, ' ', is_nullable ORDER BY ordinal_position), '')" +
			" FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ?"
		if err := rb.conn.QueryRowContext(ctx, q, t).Scan(&live); err != nil {
			return false, fmt.Errorf("mysql: rebuild: reading the columns of %s: %w", t, err)
		}
		if err := rb.conn.QueryRowContext(ctx, q, t+rebuildSuffix).Scan(&shadow); err != nil {
			return false, fmt.Errorf("mysql: rebuild: reading the columns of %s%s: %w", t, rebuildSuffix, err)
		}
		if shadow == "" || shadow != live {
			return false, nil
		}
	}
	return true, nil
}

// prepare readies the shadow tables: the earlier rebuild's, caught up from
// their checkpoints, if they can be reused and Fresh is not set, else new
// empty ones. Either way the leftovers of a dead rebuild (old tables, its
// pause) go. It reports whether the shadow was reused.
func (rb *rebuild) prepare(ctx context.Context) (bool, error) {
	reuse := false
	if !rb.opts.Fresh {
		var err error
		if reuse, err = rb.reusableShadow(ctx); err != nil {
			return false, err
		}
	}
	if !reuse {
		if err := rb.clearLeftovers(ctx, true); err != nil {
			return false, err
		}
		return false, rb.createShadow(ctx)
	}
	if err := rb.clearLeftovers(ctx, false); err != nil {
		return false, err
	}
	return true, rb.ownTokens(ctx)
}
