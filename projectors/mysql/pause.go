package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Pause is the state of the live projector's pause (read_model_control),
// which a replay sets while it swaps its rebuilt tables in.
type Pause struct {
	// By names the replay that set it, the host and process it runs in and
	// since when; empty if no pause was ever left set.
	By string `json:"by"`
	// Until is when the lease of the pause ends (zero if none is set).
	Until time.Time `json:"until"`
	// Active: Until is in the future.
	Active bool `json:"active"`
	// OwnerRunning: a replay holds the rebuild lock of the database. An
	// active pause without it is ignored by the live projector.
	OwnerRunning bool `json:"owner_running"`
}

// Holds reports whether the pause holds the live projector back.
func (p Pause) Holds() bool { return p.Active && p.OwnerRunning }

// ReadPause returns the live projector's pause as the database has it.
func ReadPause(ctx context.Context, db *sql.DB) (Pause, error) {
	var p Pause
	var until sql.NullTime
	err := db.QueryRowContext(ctx, "SELECT paused_until, COALESCE(paused_until > UTC_TIMESTAMP(3), FALSE), paused_by FROM "+tControl+" WHERE id = 1").
		Scan(&until, &p.Active, &p.By)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("mysql: reading the pause: %w", err)
	}
	if until.Valid {
		p.Until = until.Time
	}
	name, err := rebuildLockName(ctx, db)
	if err != nil {
		return p, err
	}
	var holder sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&holder); err != nil {
		return p, fmt.Errorf("mysql: reading the rebuild lock: %w", err)
	}
	p.OwnerRunning = holder.Valid
	return p, nil
}

// LiftPause ends the live projector's pause and returns what it was. It
// refuses while the replay that set it is still running (holds the rebuild
// lock) unless force is set: lifting it then lets the live model move
// ahead of the rebuilt one the replay is about to swap in, so readers may
// see the model step back.
func LiftPause(ctx context.Context, db *sql.DB, force bool) (Pause, error) {
	p, err := ReadPause(ctx, db)
	if err != nil {
		return p, err
	}
	if p.Active && p.OwnerRunning && !force {
		return p, fmt.Errorf("mysql: the pause by %s is held by a replay that is still running (it holds the rebuild lock): "+
			"let it finish or stop it; lifting it anyway needs force", p.By)
	}
	if _, err := db.ExecContext(ctx, "UPDATE "+tControl+" SET paused_until = NULL, paused_by = '' WHERE id = 1"); err != nil {
		return p, fmt.Errorf("mysql: lifting the pause: %w", err)
	}
	return p, nil
}

// pauseLog makes the live projector log a pause once when it first sees
// it, once when it is over, and a warning once for a pause that outlived
// its replay (ignored) or whose lease ran out without its replay lifting it.
type pauseLog struct {
	mu     sync.Mutex
	seen   string // the pause being waited for
	warned string // the pause last warned about
}

// observe records what one read of the control row found: whether a pause
// is in force (active), whether its replay holds the rebuild lock (held;
// only known when active), by whom and until when.
func (l *pauseLog) observe(lg *slog.Logger, active, held bool, by string, until sql.NullTime) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case active && held:
		if l.seen != by {
			l.seen = by
			lg.Info("paused by replay: waiting for its swap", "projector", ReadModelName, "paused_by", by, "until", until.Time)
		}
		return
	case active && l.warned != by:
		l.warned = by
		lg.Warn("ignoring the pause of a replay that is gone (it no longer holds the rebuild lock); lift it with mpimctl replay unpause",
			"projector", ReadModelName, "paused_by", by, "until", until.Time)
	case !active && by != "" && until.Valid && l.warned != by:
		l.warned = by
		lg.Warn("the pause of a replay lapsed at the end of its lease without the replay lifting it",
			"projector", ReadModelName, "paused_by", by, "until", until.Time)
	}
	if l.seen != "" {
		lg.Info("pause by replay lifted", "projector", ReadModelName, "paused_by", l.seen)
		l.seen = ""
	}
}
