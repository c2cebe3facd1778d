package domain

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is the "now" of most tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// uid returns a well-formed user id; uid(1) < uid(2) < ...
func uid(n int) UserID { return UserID(fmt.Sprintf("u/01J00000000000000000%06d", n)) }

// gid returns a well-formed group id.
func gid(n int) GroupID { return GroupID(fmt.Sprintf("g/01J00000000000000000%06d", n)) }

// wantCode fails tb unless err has code want ("" for no error) and, if it is
// an error, carries the package prefix.
func wantCode(tb testing.TB, err error, want Code) {
	tb.Helper()
	if got := ErrorCode(err); got != want {
		tb.Fatalf("error = %v (code %q), want code %q", err, got, want)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "domain: ") {
		tb.Fatalf("error %q lacks the \"domain: \" prefix", err)
	}
}

// mustApply applies events to a, failing tb on the first error.
func mustApply(tb testing.TB, a interface{ Apply(Event) error }, events ...Event) {
	tb.Helper()
	for _, e := range events {
		if err := a.Apply(e); err != nil {
			tb.Fatalf("Apply(%#v): %v", e, err)
		}
	}
}

// wantEvents fails tb unless got equals want.
func wantEvents(tb testing.TB, got, want []Event) {
	tb.Helper()
	if !reflect.DeepEqual(got, want) {
		tb.Fatalf("events = %#v\nwant     %#v", got, want)
	}
}

// wantUnchanged fails tb unless the aggregate Decide ran on equals a fresh
// rebuild of the same history.
func wantUnchanged(tb testing.TB, got, fresh any) {
	tb.Helper()
	if !reflect.DeepEqual(got, fresh) {
		tb.Fatalf("Decide mutated the aggregate:\n got %#v\nwant %#v", got, fresh)
	}
}

// decideCase is one row of a Decide table: it rebuilds the aggregate twice
// from history (which must rebuild), decides cmd on one under p at t0, and
// checks the error code, that Decide left the aggregate as the other one,
// the events, and that they apply.
func decideCase[C any, A decider[C]](tb testing.TB, rebuild func([]Event) (A, error), history []Event, cmd C, p Policy, code Code, want []Event) {
	tb.Helper()
	a, err := rebuild(history)
	wantCode(tb, err, "")
	fresh, _ := rebuild(history)
	got, err := a.Decide(cmd, t0, p)
	wantCode(tb, err, code)
	wantUnchanged(tb, a, fresh)
	wantEvents(tb, got, want)
	mustApply(tb, a, got...)
}

// wantRejected checks that e after history is invalid both to Apply (which
// must leave the aggregate unchanged) and to the rebuild.
func wantRejected[A interface{ Apply(Event) error }](tb testing.TB, rebuild func([]Event) (A, error), history []Event, e Event) {
	tb.Helper()
	a, _ := rebuild(history)
	fresh, _ := rebuild(history)
	wantCode(tb, a.Apply(e), EInvalid)
	wantUnchanged(tb, a, fresh)
	_, err := rebuild(append(history, e))
	wantCode(tb, err, EInvalid)
}

// decider is what the step-by-step helper drives.
type decider[C any] interface {
	Decide(cmd C, now time.Time, p Policy) ([]Event, error)
	Apply(e Event) error
	Version() uint64
}

// run decides and applies each command in turn, failing tb on any error, and
// returns all the events. It checks that Version counts them.
func run[C any](tb testing.TB, a decider[C], now time.Time, cmds ...C) []Event {
	tb.Helper()
	v0 := a.Version()
	var all []Event
	for _, c := range cmds {
		events, err := a.Decide(c, now, DefaultPolicy())
		if err != nil {
			tb.Fatalf("Decide(%#v): %v", c, err)
		}
		mustApply(tb, a, events...)
		all = append(all, events...)
	}
	if a.Version() != v0+uint64(len(all)) {
		tb.Fatalf("Version() = %d after %d events from version %d", a.Version(), len(all), v0)
	}
	return all
}
