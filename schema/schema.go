// Package schema holds mpim's MySQL schema as embedded migration files and the
// runner that applies them.
//
// # Migration files
//
// migrations/NNNN_name.sql (a version of at least four digits, then a
// lower-case name) are applied once each, in version order, and recorded in
// schema_migrations(version, name, applied_at, checksum) with the SHA-256 of
// the file. An applied file is never edited, not even a comment: change the
// schema with a new file. Changes are additive, like the event log's.
//
// The runner splits a file into statements without parsing SQL, so files obey
// one rule: a statement ends at a line whose last non-blank character is ';',
// and no other line ends with ';' (mind string literals and trailing
// comments). Comments are whole lines starting with "--"; block comments and
// '#' comments are rejected. Each statement is sent on its own
// (multiStatements stays off).
//
// MySQL commits DDL statement by statement, so a migration that fails halfway
// is left partly applied and unrecorded; the next run starts it again from
// its first statement. Write statements that are harmless to repeat (CREATE
// TABLE IF NOT EXISTS, ...).
//
// # Read models
//
// The tables are the read models of docs/architecture.md (users, contacts, groups,
// message history, conversation lists), the event archive, projector
// checkpoints, quarantined events and sessions. ReadModelTables lists the
// ones the MySQL projector derives from the log; Tables lists all of them.
// The SQL comments in migrations/ document each table's columns and
// invariants.
package schema

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

var (
	// ErrChecksum means a migration recorded as applied differs from the
	// embedded file of the same version: the file was edited (or renamed)
	// after it was applied.
	ErrChecksum = errors.New("schema: applied migration was changed")
	// ErrDiverged means the database's migration history is not a prefix of
	// (nor an extension of) the embedded one: an applied version is missing
	// from this binary while later ones are present, or a migration is still
	// pending although a later one was applied.
	ErrDiverged = errors.New("schema: migration history diverged")
)

// defaultLockWait bounds the wait for the migration lock when ctx has no
// deadline.
const defaultLockWait = 5 * time.Minute

// Migrate applies the embedded migrations that db has not applied yet and
// returns their names in the order applied (empty when the schema is current).
//
// Migrate is safe to call from several processes at once: it holds the
// MariaDB/MySQL user lock "mpim_schema.<database>" (GET_LOCK) on one
// dedicated connection from before it reads schema_migrations until it has
// recorded its last migration, so every migration is applied exactly once.
// It waits for the lock until ctx is done, or for five minutes when ctx has
// no deadline.
//
// Before applying anything Migrate checks the recorded history: it returns an
// error wrapping ErrChecksum if an applied migration was changed, and one
// wrapping ErrDiverged if the histories disagree. Versions recorded beyond the
// newest embedded one (a newer binary migrated this database) are accepted
// and left alone. A failing statement stops Migrate with an error naming the
// migration and the statement; migrations before it stay applied and are
// returned.
func Migrate(ctx context.Context, db *sql.DB) (applied []string, err error) {
	ms, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	defer conn.Close()

	lock, err := lockName(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := acquireLock(ctx, conn, lock); err != nil {
		return nil, err
	}
	defer func() {
		if rerr := releaseLock(ctx, conn, lock); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()

	if err := execScript(ctx, conn, "schema_migrations", bookkeepingSQL); err != nil {
		return nil, err
	}
	done, err := appliedMigrations(ctx, conn)
	if err != nil {
		return nil, err
	}
	pending, err := plan(ms, done)
	if err != nil {
		return nil, err
	}
	for _, m := range pending {
		if err := execScript(ctx, conn, m.Name, m.SQL); err != nil {
			return applied, err
		}
		if _, err := conn.ExecContext(ctx,
			"INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES (?, ?, UTC_TIMESTAMP(3), ?)",
			m.Version, m.Name, m.Checksum); err != nil {
			return applied, fmt.Errorf("schema: recording %s: %w", m.Name, err)
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}

// record is a row of schema_migrations.
type record struct {
	name, checksum string
}

func appliedMigrations(ctx context.Context, conn *sql.Conn) (map[uint64]record, error) {
	rows, err := conn.QueryContext(ctx, "SELECT version, name, checksum FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("schema: reading schema_migrations: %w", err)
	}
	defer rows.Close()
	done := make(map[uint64]record)
	for rows.Next() {
		var v uint64
		var r record
		if err := rows.Scan(&v, &r.name, &r.checksum); err != nil {
			return nil, fmt.Errorf("schema: reading schema_migrations: %w", err)
		}
		done[v] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("schema: reading schema_migrations: %w", err)
	}
	return done, nil
}

// plan checks the recorded history against the embedded migrations ms
// (sorted) and returns the ones to apply. It reports every problem at once.
func plan(ms []Migration, done map[uint64]record) ([]Migration, error) {
	var errs []error
	known := make(map[uint64]bool, len(ms))
	var newestKnown, newestDone uint64
	for _, m := range ms {
		known[m.Version] = true
		newestKnown = max(newestKnown, m.Version)
	}
	for v, r := range done {
		newestDone = max(newestDone, v)
		if !known[v] && v < newestKnown {
			errs = append(errs, fmt.Errorf("%w: applied migration %s (version %d) is not embedded in this binary", ErrDiverged, r.name, v))
		}
	}
	var pending []Migration
	for _, m := range ms {
		r, ok := done[m.Version]
		switch {
		case !ok && m.Version < newestDone:
			errs = append(errs, fmt.Errorf("%w: migration %s is pending but version %d is already applied", ErrDiverged, m.Name, newestDone))
		case !ok:
			pending = append(pending, m)
		case (r.checksum != m.Checksum && !slices.Contains(superseded[m.Name], r.checksum)) || r.name != m.Name:
			errs = append(errs, fmt.Errorf("%w: %s was applied as %s with checksum %.12s…, the embedded file has checksum %.12s…",
				ErrChecksum, m.Name, r.name, r.checksum, m.Checksum))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return pending, nil
}

// superseded lists earlier checksums of migrations whose text was changed
// without changing their effect; a database that applied the earlier text is
// up to date.
var superseded = map[string][]string{
	// ADD COLUMN IF NOT EXISTS (MariaDB only) became ADD COLUMN, which MySQL 8
	// and other MySQL-compatible servers accept too.
	"0002_read_model_swap": {"2d233fced9266217404ca4610c98010f84515867cce34594206afc2d21be765d"},
}

// errDupFieldName is MySQL's ER_DUP_FIELDNAME ("Duplicate column name").
const errDupFieldName = 1060

// execScript runs the statements of one migration file, one at a time. A
// statement adding a column that exists already counts as done: DDL is not
// transactional, so a file interrupted half-way is re-run from its start.
func execScript(ctx context.Context, conn *sql.Conn, name, src string) error {
	stmts, err := splitStatements(src)
	if err != nil {
		return fmt.Errorf("schema: %s: %w", name, err)
	}
	for i, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == errDupFieldName {
				continue
			}
			return fmt.Errorf("schema: %s: statement %d (%s): %w", name, i+1, firstLine(s), err)
		}
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// lockName returns the user-lock name for the connection's database, so that
// migrations of different databases on one server do not wait for each other.
// MySQL limits lock names to 64 characters; a longer name is hashed.
func lockName(ctx context.Context, conn *sql.Conn) (string, error) {
	var db sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&db); err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	if !db.Valid || db.String == "" {
		return "", errors.New("schema: the connection has no database selected (name one in the DSN)")
	}
	name := "mpim_schema." + db.String
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(db.String))
		name = "mpim_schema." + hex.EncodeToString(sum[:])[:40]
	}
	return name, nil
}

// acquireLock takes the user lock on conn, waiting until ctx's deadline (or
// defaultLockWait). If ctx is canceled while waiting, the driver aborts the
// connection, which also drops the wait.
func acquireLock(ctx context.Context, conn *sql.Conn, name string) error {
	wait := defaultLockWait
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	secs := int64(math.Ceil(max(wait, time.Second).Seconds()))
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", name, secs).Scan(&got); err != nil {
		return fmt.Errorf("schema: waiting for lock %s: %w", name, err)
	}
	switch {
	case !got.Valid:
		return fmt.Errorf("schema: GET_LOCK(%s) failed", name)
	case got.Int64 != 1:
		return fmt.Errorf("schema: lock %s still held by another migrator after %ds", name, secs)
	}
	return nil
}

// releaseLock releases the user lock. conn returns to the pool afterwards, so
// if the lock cannot be released the connection is discarded instead, which
// ends its session and with it the lock.
func releaseLock(ctx context.Context, conn *sql.Conn, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var released sql.NullInt64
	err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&released)
	if err == nil && released.Valid && released.Int64 == 1 {
		return nil
	}
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	if err != nil {
		return fmt.Errorf("schema: releasing lock %s: %w", name, err)
	}
	return fmt.Errorf("schema: lock %s was not held at release", name)
}
