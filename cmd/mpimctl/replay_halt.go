package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/mpim/mpim/projectors/mysql"
)

// haltEnv names a test-only stop of `replay mysql`, for the tests that kill
// the process at a chosen step (cmd/mpimctl/replay_kill_test.go):
// "PHASE:EVENTS:FILE" stops the replay at its first progress report in
// PHASE with at least EVENTS events applied, creates FILE to say so, and
// waits there until the process ends. Unset, it costs nothing.
const haltEnv = "MPIM_TEST_REPLAY_HALT"

// halter is the stop haltEnv asks for.
type halter struct {
	phase  mysql.RebuildPhase
	events int64
	file   string
	done   bool
}

// parseHalt reads haltEnv's value; nil if it is empty.
func parseHalt(spec string) (*halter, error) {
	if spec == "" {
		return nil, nil
	}
	f := strings.SplitN(spec, ":", 3)
	if len(f) != 3 || f[0] == "" || f[2] == "" {
		return nil, fmt.Errorf("%s=%q: want PHASE:EVENTS:FILE", haltEnv, spec)
	}
	phase := mysql.RebuildPhase(f[0])
	switch phase {
	case mysql.PhaseBuild, mysql.PhaseChase, mysql.PhaseSwap, mysql.PhaseRename, mysql.PhaseSwapped, mysql.PhaseDone:
	default:
		return nil, fmt.Errorf("%s=%q: unknown phase %q", haltEnv, spec, f[0])
	}
	n, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s=%q: EVENTS must be a count (0 or more)", haltEnv, spec)
	}
	return &halter{phase: phase, events: n, file: f[2]}, nil
}

// check stops the replay here if p is the point asked for. It runs inside
// the rebuild's Progress, so the whole rebuild stops with it.
func (h *halter) check(ctx context.Context, p mysql.RebuildProgress) {
	if h == nil || h.done || p.Phase != h.phase || p.Events < h.events {
		return
	}
	h.done = true
	if err := os.WriteFile(h.file, []byte(string(p.Phase)+"\n"), 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "replay mysql: %s: %v\n", haltEnv, err)
		return
	}
	<-ctx.Done()
}
