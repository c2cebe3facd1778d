package testsvc

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and fails tb with "timed out waiting
// for what" if it does not within timeout. Tests of servers use it to wait
// for effects that arrive asynchronously (a projection, a process's start).
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
