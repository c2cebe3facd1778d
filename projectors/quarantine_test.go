package projectors_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/prometheus/client_golang/prometheus"
)

// poisonMem is a memProjector that fails every batch holding an event fail
// picks, and quarantines as the contract says.
type poisonMem struct {
	*memProjector
	fail func(eventstore.Recorded) error

	qmu         sync.Mutex
	quarantined []eventstore.Position
	causes      []error
}

func (m *poisonMem) Apply(ctx context.Context, b *projectors.Batch) error {
	for _, r := range b.Events {
		if err := m.fail(r); err != nil {
			return err
		}
	}
	return m.memProjector.Apply(ctx, b)
}

func (m *poisonMem) Quarantine(_ context.Context, b *projectors.Batch, cause error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refuse(b); err != nil {
		return err
	}
	if len(b.Events)+len(b.Skipped) != 1 {
		return errors.New("quarantine of a batch of more than one entry")
	}
	m.qmu.Lock()
	m.quarantined = append(m.quarantined, b.To)
	m.causes = append(m.causes, cause)
	m.qmu.Unlock()
	m.pos[b.Partition] = b.To
	return nil
}

func (m *poisonMem) quarantine() ([]eventstore.Position, []error) {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	return append([]eventstore.Position(nil), m.quarantined...), append([]error(nil), m.causes...)
}

// runFor runs r until the test ends.
func runFor(t *testing.T, r *projectors.Runner) {
	t.Helper()
	_, cancel, done := start(r)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

func TestRunnerQuarantinesAnEventThatFailsForGood(t *testing.T) {
	store, _, _ := openStore(t, 1)
	appendMessages(t, store, "d/a.b", 40)
	recs, err := store.ReadPartition(context.Background(), 0, eventstore.Position{}, 100)
	if err != nil || len(recs) != 40 {
		t.Fatalf("read %d, %v", len(recs), err)
	}
	poison := recs[23].Position
	bad := errors.New("data too long for column")
	mem := &poisonMem{memProjector: newMem(), fail: func(r eventstore.Recorded) error {
		if r.Position == poison {
			return bad
		}
		return nil
	}}
	reg := prometheus.NewRegistry()
	r, err := projectors.NewRunner(store, &projectors.Static{}, mem, projectors.RunnerConfig{
		BatchSize: 16, Block: 20 * time.Millisecond, RetryBackoff: time.Millisecond, MaxAttempts: 3, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, r)
	appendMessages(t, store, "d/a.b", 10)
	waitFor(t, "every other event applied", func() bool { return mem.count() == 49 })

	q, causes := mem.quarantine()
	if len(q) != 1 || q[0] != poison || !errors.Is(causes[0], bad) {
		t.Fatalf("quarantined %v (%v), want [%s] (%v)", q, causes, poison, bad)
	}
	mem.mu.Lock()
	applied := mem.applied[0]
	mem.mu.Unlock()
	for i := 1; i < len(applied); i++ {
		if applied[i].Position.Compare(applied[i-1].Position) <= 0 {
			t.Fatalf("applied out of order at %d", i)
		}
	}
	for _, a := range applied {
		if a.Position == poison {
			t.Fatal("the poison event was applied")
		}
	}
	if got := metricValue(t, reg, "mpim_projector_quarantined_total"); got != 1 {
		t.Fatalf("mpim_projector_quarantined_total is %v, want 1", got)
	}
}

// A transient failure is retried however often it repeats, never
// quarantined: a lost connection, and a replica shortfall (a projector's
// WAIT counting fewer replicas than asked for, as it does all through a
// failover; CI once quarantined two inbox entries for it).
func TestRunnerRetriesTransientErrorsWithoutQuarantine(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")}},
		{"replica shortfall", fmt.Errorf("inbox: partition 0: %w",
			domain.Errorf(domain.EUnavailable, "inbox: %w", errors.New("the writes beside k are on 0 of 1 replicas within 1s")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _, _ := openStore(t, 1)
			appendMessages(t, store, "d/a.b", 5)
			var mu sync.Mutex
			failures := 0
			mem := &poisonMem{memProjector: newMem(), fail: func(eventstore.Recorded) error {
				mu.Lock()
				defer mu.Unlock()
				if failures < 8 {
					failures++
					return tc.err
				}
				return nil
			}}
			r, err := projectors.NewRunner(store, &projectors.Static{}, mem, projectors.RunnerConfig{
				Block: 20 * time.Millisecond, RetryBackoff: time.Millisecond, MaxAttempts: 2})
			if err != nil {
				t.Fatal(err)
			}
			runFor(t, r)
			waitFor(t, "every event applied", func() bool { return mem.count() == 5 })
			if q, _ := mem.quarantine(); len(q) != 0 {
				t.Fatalf("transient errors quarantined %v", q)
			}
			mu.Lock()
			defer mu.Unlock()
			if failures != 8 {
				t.Fatalf("%d failures, want 8", failures)
			}
		})
	}
}

func TestRunnerObservesLagWhileRetrying(t *testing.T) {
	store, _, _ := openStore(t, 1)
	appendMessages(t, store, "d/a.b", 1)
	mem := &poisonMem{memProjector: newMem(), fail: func(eventstore.Recorded) error {
		return context.DeadlineExceeded // transient: retried for ever
	}}
	reg := prometheus.NewRegistry()
	r, err := projectors.NewRunner(store, &projectors.Static{}, mem, projectors.RunnerConfig{
		Block: 20 * time.Millisecond, RetryBackoff: 10 * time.Millisecond, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, r)
	waitFor(t, "a lag while the batch is retried", func() bool { return metricValue(t, reg, "mpim_projector_lag_milliseconds") > 0 })
	first := metricValue(t, reg, "mpim_projector_lag_milliseconds")
	// Later entries make the lag grow although the batch still fails.
	waitFor(t, "the lag growing", func() bool {
		appendMessages(t, store, "d/a.b", 1)
		return metricValue(t, reg, "mpim_projector_lag_milliseconds") > first
	})
	if mem.count() != 0 {
		t.Fatal("a failing batch was applied")
	}
}

func TestTransientClassification(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"network error", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("refused")}, true},
		{"deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", errors.Join(errors.New("mysql: x"), context.DeadlineExceeded), true},
		{"data error", errors.New("mysql: Incorrect datetime value"), false},
		{"fenced", projectors.ErrFenced, false},
		{"deadlock", fmt.Errorf("mysql: writing: %w", &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}), true},
		{"lock wait", &mysql.MySQLError{Number: 1205}, true},
		{"bad datetime", &mysql.MySQLError{Number: 1292, Message: "Incorrect datetime value"}, false},
		{"unavailable", fmt.Errorf("cache: %w", domain.Errorf(domain.EUnavailable, "cache: on 0 of 1 replicas")), true},
		{"invalid", domain.Errorf(domain.EInvalid, "cache: bad key"), false},
	} {
		if got := projectors.Transient(tc.err); got != tc.want {
			t.Errorf("%s: Transient = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// metricValue sums the samples of the named counter or gauge.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
