package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
)

// partitionList parses --partition: "all" or a number.
func partitionList(spec string, n int) ([]int, error) {
	if spec == "" || spec == "all" {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	var p int
	if _, err := fmt.Sscanf(spec, "%d", &p); err != nil || p < 0 || p >= n || fmt.Sprint(p) != strings.TrimSpace(spec) {
		return nil, fmt.Errorf("--partition must be \"all\" or 0..%d, got %q", n-1, spec)
	}
	return []int{p}, nil
}

func runTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("tail", stderr)
	part := fs.String("partition", "all", "partition to follow, or all")
	asJSON := fs.Bool("json", false, "JSON lines instead of human lines")
	fromStart := fs.Bool("from-start", false, "start at the oldest entry instead of the end")
	limit := fs.Int("limit", 0, "stop after this many lines, events and undecodable entries (0: follow until interrupted)")
	secrets := fs.Bool("with-secrets", false, "print password hashes and push tokens instead of "+redacted)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *limit < 0 {
		return fmt.Errorf("--limit must not be negative, got %d", *limit)
	}
	return c.withPartitions(ctx, *part, func(store *eventstore.Store, parts []int) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sink := &tailSink{out: &printer{w: stdout, json: *asJSON, secrets: *secrets}, limit: *limit, cancel: cancel}
		var printed sync.WaitGroup
		errc := make(chan error, len(parts))
		for _, p := range parts {
			var pos eventstore.Position
			if !*fromStart {
				info, err := store.Info(ctx, p)
				if err != nil {
					return err
				}
				pos = info.Last
			}
			printed.Add(1)
			go func() {
				defer printed.Done()
				errc <- follow(ctx, store, p, pos, sink.event, sink.bad)
			}()
		}
		printed.Wait()
		close(errc)
		if sink.err != nil {
			return sink.err
		}
		for err := range errc {
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
		return nil
	})
}

// tailSink prints what the partition followers of tail read. The count
// decision and the print happen under one lock, so tail --limit N prints
// exactly N events however many partitions deliver at once; the first
// print error ends the tail and is its result.
type tailSink struct {
	out    *printer
	limit  int // 0: no limit
	cancel context.CancelFunc

	mu    sync.Mutex
	count int
	err   error
	done  bool
}

func (s *tailSink) event(r eventstore.Recorded) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	if err := s.out.print(r); err != nil {
		s.err, s.done = err, true
		s.cancel()
		return false
	}
	return s.counted()
}

// counted counts one printed line and ends the tail at the limit.
func (s *tailSink) counted() bool {
	s.count++
	if s.limit > 0 && s.count >= s.limit {
		s.done = true
		s.cancel()
		return false
	}
	return true
}

// bad prints an undecodable entry's line; like an event's, it counts
// toward --limit (as tap counts it).
func (s *tailSink) bad(de *eventstore.DecodeError) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.out.printBad(de)
	return s.counted()
}

// follow tails one partition from pos, calling each for every event and
// bad for every undecodable entry, in log order, until one returns false or
// ctx ends. An undecodable entry is reported and skipped.
func follow(ctx context.Context, store *eventstore.Store, p int, pos eventstore.Position, each func(eventstore.Recorded) bool, bad func(*eventstore.DecodeError) bool) error {
	for ctx.Err() == nil {
		recs, err := store.Tail(ctx, p, pos, 500, time.Second)
		var de *eventstore.DecodeError
		if err != nil && !errors.As(err, &de) {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // the caller ending the follow is no failure
			}
			return err
		}
		// The events before an undecodable entry come first: it ends the read.
		for _, r := range recs {
			if !each(r) {
				return nil
			}
			pos = r.Position
		}
		if de != nil {
			if !bad(de) {
				return nil
			}
			pos = de.Position
		}
	}
	return nil
}
