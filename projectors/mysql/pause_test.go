package mysql

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/projectors"
	"github.com/prometheus/client_golang/prometheus"
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// waitFor waits until cond holds (a hang detector of minutes).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// lagGauge reads mpim_projector_lag_milliseconds of partition 0.
func lagGauge(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "mpim_projector_lag_milliseconds" {
			for _, m := range mf.GetMetric() {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// TestPausedProjectorLogsAndReportsItsLag: while a running replay pauses
// the live projector, it logs the pause once, its lag gauge follows the log
// as it grows (last entry minus checkpoint, as stats computes it), the
// pause cannot be lifted without force while its replay runs, and lifting
// it is logged once. A pause whose replay is gone is ignored with one
// warning.
func TestPausedProjectorLogsAndReportsItsLag(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	sc := newScenario(ctx, t, env.svc, 4, 1)
	sc.run(ctx, t, 1, 20, 31)
	db := openTestDB(t)
	logs := &logBuffer{}
	lg := slog.New(slog.NewTextHandler(logs, nil))
	rm := testReadModel(t, db, Config{Logger: lg, PausePoll: 5 * time.Millisecond})
	reg := prometheus.NewRegistry()
	r, err := projectors.NewRunner(env.store, &projectors.Static{}, rm, projectors.RunnerConfig{
		BatchSize: 50, Block: 20 * time.Millisecond, Linger: -1, Registerer: reg, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	}()
	waitCaughtUp(t, env.store, rm.Checkpoints)

	unlock := holdRebuildLock(t, db)
	pauseLive(t, db)
	paused, err := rm.Checkpoint(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Two rounds of writes while paused: the gauge follows each.
	for round := range 2 {
		sc.run(ctx, t, 1, 10, uint64(32+round))
		info, err := env.store.Info(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := float64(info.Last.Ms - paused.Ms)
		waitFor(t, "the lag gauge to report the lag behind the log while paused", func() bool { return lagGauge(t, reg) == want })
	}
	if pos, _ := rm.Checkpoint(ctx, 0); pos != paused {
		t.Fatalf("checkpoint moved while paused: %v, was %v", pos, paused)
	}
	if n := logs.count("paused by replay"); n != 1 {
		t.Errorf("%d 'paused by replay' log lines, want 1", n)
	}
	if p, err := ReadPause(ctx, db); err != nil || !p.Holds() || p.By != "rebuild-test" {
		t.Errorf("ReadPause while paused: %+v, %v", p, err)
	}
	if _, err := LiftPause(ctx, db, false); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("LiftPause without force while its replay runs: %v", err)
	}
	if p, err := LiftPause(ctx, db, true); err != nil || p.By != "rebuild-test" {
		t.Fatalf("LiftPause with force: %+v, %v", p, err)
	}
	waitCaughtUp(t, env.store, rm.Checkpoints)
	waitFor(t, "the lift logged", func() bool { return logs.count("pause by replay lifted") == 1 })

	// The replay is gone (its lock released) but its pause is set: ignored,
	// with one warning.
	unlock()
	pauseLive(t, db)
	sc.run(ctx, t, 1, 10, 35)
	waitCaughtUp(t, env.store, rm.Checkpoints)
	sc.run(ctx, t, 1, 5, 36)
	waitCaughtUp(t, env.store, rm.Checkpoints)
	if n := logs.count("ignoring the pause of a replay that is gone"); n != 1 {
		t.Errorf("%d warnings about the dead replay's pause, want 1", n)
	}
	if p, err := LiftPause(ctx, db, false); err != nil || !p.Active || p.OwnerRunning {
		t.Errorf("LiftPause of a dead replay's pause: %+v, %v", p, err)
	}
}
