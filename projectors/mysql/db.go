package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// MySQL error numbers the projectors react to.
const (
	errLockWaitTimeout = 1205
	errDeadlock        = 1213
)

func mysqlErrno(err error) uint16 {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// transient reports whether err is a lock conflict that a fresh attempt of
// the same transaction resolves: a deadlock (InnoDB rolled the transaction
// back) or a lock wait timeout.
func transient(err error) bool {
	n := mysqlErrno(err)
	return n == errDeadlock || n == errLockWaitTimeout
}

// txRetries is how many times inTx re-runs a transaction that hit a deadlock
// before returning the error (the runner then retries the batch).
const txRetries = 8

// inTx runs fn in a READ COMMITTED transaction and commits it, rolling back
// on any error. A deadlock or lock wait timeout re-runs the whole
// transaction after a short random sleep, up to txRetries times. fn must
// therefore keep no effects outside the transaction. Errors are returned as
// fn or the driver gave them.
func inTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := func() error {
			tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
			if err != nil {
				return err
			}
			if err := fn(tx); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		}()
		if err == nil || !transient(err) || attempt >= txRetries || ctx.Err() != nil {
			return err
		}
		d := time.Duration(rand.Int64N(int64(2*time.Millisecond) << min(attempt, 5)))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Bounds of one multi-row statement: max_allowed_packet is 16 MiB by default
// on MariaDB and 64 MiB on MySQL 8.
const (
	defaultMaxRows  = 1000
	maxStmtArgBytes = 4 << 20
)

// multiRow accumulates the rows of one multi-row statement
// (INSERT ... VALUES (...), (...) [ON DUPLICATE KEY UPDATE ...]) and sends it
// when a bound is reached or on flush. Values travel as placeholders: with a
// statement cache, as server-side prepared statements for a ladder of row
// counts (the server then parses no values at all, which is about a fifth of
// its work for interpolated multi-row statements); without one, as one
// statement with the driver's client-side interpolation.
type multiRow struct {
	head, tail string // text before the first row and after the last
	ncols      int
	maxRows    int
	cache      *stmtCache
	args       []any
	rows       int
	bytes      int
}

func newMultiRow(head, tail string, ncols, maxRows int, cache *stmtCache) *multiRow {
	return &multiRow{head: head, tail: tail, ncols: ncols, maxRows: maxRows, cache: cache}
}

// add queues one row; vals must have ncols values.
func (m *multiRow) add(ctx context.Context, tx *sql.Tx, vals ...any) error {
	if len(vals) != m.ncols {
		return fmt.Errorf("mysql: internal error: %d values for %d columns in %q", len(vals), m.ncols, m.head)
	}
	m.args = append(m.args, vals...)
	m.rows++
	for _, v := range vals {
		switch v := v.(type) {
		case string:
			m.bytes += len(v)
		case []byte:
			m.bytes += len(v)
		default:
			m.bytes += 8
		}
	}
	if m.rows >= m.maxRows || m.bytes >= maxStmtArgBytes {
		return m.flush(ctx, tx)
	}
	return nil
}

// flush sends the queued rows, if any.
func (m *multiRow) flush(ctx context.Context, tx *sql.Tx) error {
	if m.rows == 0 {
		return nil
	}
	defer func() {
		clear(m.args)
		m.args, m.rows, m.bytes = m.args[:0], 0, 0
	}()
	if m.cache == nil {
		if _, err := tx.ExecContext(ctx, multiRowSQL(m.head, m.tail, m.ncols, m.rows), m.args...); err != nil {
			return fmt.Errorf("mysql: %s: %w", firstWords(m.head), err)
		}
		return nil
	}
	for done := 0; done < m.rows; {
		n := ladderStep(m.rows - done)
		stmt, err := m.cache.get(ctx, m.head, m.tail, m.ncols, n)
		if err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, stmt).ExecContext(ctx, m.args[done*m.ncols:(done+n)*m.ncols]...); err != nil {
			return fmt.Errorf("mysql: %s: %w", firstWords(m.head), err)
		}
		done += n
	}
	return nil
}

// ladder holds the row counts multi-row statements are prepared for: the
// powers of two up to 256, so a count below 256 is sent as one statement per
// binary digit set (40 rows: 32 + 8), a round trip each. A sparser ladder
// (256, 64, 16, 4, 1: 40 rows in 16 + 16 + 4 + 4) prepares fewer statements
// per connection but cost a batch of 40 direct messages a third more
// statements and MariaDB about a fifth more CPU per event
// (BenchmarkProjectMessages/pairs); sending the rest of a count off the
// ladder as one interpolated statement cut statements further but cost
// MariaDB more CPU than the round trips it saved.
var ladder = [...]int{256, 128, 64, 32, 16, 8, 4, 2, 1}

func ladderStep(n int) int {
	for _, l := range ladder {
		if l <= n {
			return l
		}
	}
	return 1
}

// multiRowSQL returns head, n rows of ncols placeholders, tail.
func multiRowSQL(head, tail string, ncols, n int) string {
	row := "(" + placeholders(ncols) + ")"
	var sb strings.Builder
	sb.Grow(len(head) + len(tail) + n*(len(row)+1))
	sb.WriteString(head)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(row)
	}
	sb.WriteString(tail)
	return sb.String()
}

// stmtCache holds the prepared multi-row statements of one projector.
// database/sql prepares each on a connection the first time a transaction
// on that connection uses it, and reuses it afterwards.
type stmtCache struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts map[stmtKey]*sql.Stmt
}

type stmtKey struct {
	head, tail string
	rows       int
}

// newStmtCache returns a projector's statement cache on db. It is nil
// (statements are interpolated) when the pool holds one
// connection: preparing outside the transaction that owns it would wait
// forever.
func newStmtCache(db *sql.DB) *stmtCache {
	if db.Stats().MaxOpenConnections == 1 {
		return nil
	}
	return &stmtCache{db: db, stmts: map[stmtKey]*sql.Stmt{}}
}

func (c *stmtCache) get(ctx context.Context, head, tail string, ncols, rows int) (*sql.Stmt, error) {
	k := stmtKey{head, tail, rows}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.stmts[k]; s != nil {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, multiRowSQL(head, tail, ncols, rows))
	if err != nil {
		return nil, fmt.Errorf("mysql: preparing %s: %w", firstWords(head), err)
	}
	c.stmts[k] = s
	return s, nil
}

// close releases every prepared statement.
func (c *stmtCache) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for k, s := range c.stmts {
		errs = append(errs, s.Close())
		delete(c.stmts, k)
	}
	return errors.Join(errs...)
}

// firstWords returns the start of a statement for error messages.
func firstWords(s string) string {
	if i := strings.Index(s, "("); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// placeholders returns "?, ?, ..., ?" with n placeholders.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// ms is a time in Unix milliseconds, the precision of events and of the
// DATETIME(3) columns. nullTime stands for SQL NULL.
type ms int64

const nullTime ms = -1 << 63

func msOf(t time.Time) ms { return ms(t.UnixMilli()) }

// fitsDatetime reports whether t can be written to a DATETIME(3) column:
// its UTC year is 1..9999 (beyond, the driver refuses to format it and the
// server to store it).
func fitsDatetime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// sql returns the value to bind: a UTC time.Time, or nil for nullTime.
func (m ms) sql() any {
	if m == nullTime {
		return nil
	}
	return time.UnixMilli(int64(m)).UTC()
}

// scan returns a Scanner that reads a DATETIME (as time.Time with parseTime,
// or as text without it) or NULL into m.
func (m *ms) scan() sql.Scanner { return (*msScanner)(m) }

type msScanner ms

func (s *msScanner) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*s = msScanner(nullTime)
	case time.Time:
		*s = msScanner(v.UnixMilli())
	case []byte:
		return s.parse(string(v))
	case string:
		return s.parse(v)
	default:
		return fmt.Errorf("mysql: cannot scan %T as a time", v)
	}
	return nil
}

func (s *msScanner) parse(v string) error {
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", v, time.UTC)
	if err != nil {
		return fmt.Errorf("mysql: cannot parse time %q: %w", v, err)
	}
	*s = msScanner(t.UnixMilli())
	return nil
}
