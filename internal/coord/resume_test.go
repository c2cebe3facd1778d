package coord

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// A member whose connection stays down past a third of the session timeout
// (its session presumed lost) and then comes back within the timeout resumes
// its session: the client re-registers the old epoch's watches while the
// coordinator cleans up that epoch and joins again. Run with -race: the
// client's re-registration reads a field its receive goroutine writes, so
// requests sent before it (the cleanups, the new epoch's) made the race
// detector fail this test most of the time before the coordinator waited
// settleDelay after a reconnection. Every partition ends up owned once again.
func TestResumedSessionAfterPresumedLossRejoinsWithoutRace(t *testing.T) {
	env := newEnv(t)
	cut := &cutter{}
	z := env.coordinator(t, "blinking", cut)
	other := env.coordinator(t, "steady", nil)
	want := map[string]int{"blinking": 4, "steady": 4}
	var trs []*tracker
	for i := range 4 {
		tr := newTracker()
		trs = append(trs, tr)
		name := fmt.Sprintf("resume%d", i)
		r1, r2 := start(z, name, 8, tr.work("blinking")), start(other, name, 8, tr.work("steady"))
		t.Cleanup(func() {
			for _, r := range []*running{r1, r2} {
				if err := r.stop(t); err != nil {
					t.Error(err)
				}
			}
		})
	}
	settled := func(what string) {
		t.Helper()
		for _, tr := range trs {
			eventually(t, 30*time.Second, what, tr.split(want), tr.String)
		}
	}
	settled("split between both members")
	for i := range 3 {
		cut.set(true)
		// The connection comes back as soon as the session is presumed
		// lost (a third of 4s), well within the session timeout, however
		// long the machine took to get there.
		eventually(t, 30*time.Second, "the session presumed lost", func() bool { return presumedLosses(env) > i }, env.logs.String)
		cut.set(false)
		settled("split again after the session resumed")
	}
	for _, tr := range trs {
		tr.check(t)
	}
}

// presumedLosses counts the sessions presumed lost in env's logs.
func presumedLosses(env *zkEnv) int {
	return strings.Count(env.logs.String(), "zookeeper session presumed lost")
}
