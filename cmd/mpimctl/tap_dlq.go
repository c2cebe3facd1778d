package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/mpim/mpim/eventstore"
)

// runTapDLQ is `mpimctl tap dlq list|requeue|purge`: the dead letters of a
// tap group.
func runTapDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "requeue" && args[0] != "purge") {
		return errors.New("usage: mpimctl tap dlq list|requeue|purge --group G [--partition P] [flags]")
	}
	sub := args[0]
	fs, c := newFlags("tap dlq "+sub, stderr)
	group := fs.String("group", "", "consumer group name (required)")
	part := fs.String("partition", "all", "partition, or all")
	var run func(*eventstore.Store, []int) error
	switch sub {
	case "list":
		run = dlqList(ctx, fs, stdout)
	case "requeue":
		run = dlqRequeue(ctx, fs, stdout)
	case "purge":
		run = dlqPurge(ctx, fs, stdout)
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *group == "" {
		return errors.New("--group is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c.withPartitions(ctx, *part, func(store *eventstore.Store, parts []int) error {
		return run(store, parts)
	})
}

// groupFlag reads the --group flag of fs after parsing.
func groupFlag(fs *flag.FlagSet) string { return fs.Lookup("group").Value.String() }

func dlqList(ctx context.Context, fs *flag.FlagSet, stdout io.Writer) func(*eventstore.Store, []int) error {
	limit := fs.Int("limit", 0, "print at most this many dead letters (0: all)")
	asJSON := fs.Bool("json", false, "JSON lines instead of human lines")
	secrets := fs.Bool("with-secrets", false, "print password hashes and push tokens instead of "+redacted)
	return func(store *eventstore.Store, parts []int) error {
		if *limit < 0 {
			return fmt.Errorf("--limit must not be negative, got %d", *limit)
		}
		var line bytes.Buffer
		out := &printer{w: &line, json: *asJSON, secrets: *secrets}
		n := 0
		for _, p := range parts {
			var after eventstore.Position
			for *limit == 0 || n < *limit {
				count := int64(500)
				if *limit > 0 {
					count = int64(min(500, *limit-n))
				}
				dls, err := store.DeadLetters(ctx, groupFlag(fs), p, after, count)
				if err != nil {
					return err
				}
				if len(dls) == 0 {
					break
				}
				for _, d := range dls {
					line.Reset()
					if err := printTapEntry(out, eventstore.TapEntry{Recorded: d.Recorded, Err: d.Err}); err != nil {
						return err
					}
					if err := printDeadLetter(stdout, d, bytes.TrimSpace(line.Bytes()), *asJSON); err != nil {
						return err
					}
					after = d.ID
				}
				n += len(dls)
			}
		}
		return nil
	}
}

// printDeadLetter writes one dead letter: its id, time and deliveries, and
// entry, the entry as the shared printer wrote it.
func printDeadLetter(w io.Writer, d eventstore.DeadLetter, entry []byte, asJSON bool) error {
	at := d.DeadLetteredAt().Format(time.RFC3339Nano)
	if !asJSON {
		_, err := fmt.Fprintf(w, "dlq %s %s deliveries=%d  %s\n", d.ID, at, d.Deliveries, entry)
		return err
	}
	b, err := json.Marshal(struct {
		DeadLetter     string          `json:"dead_letter"`
		DeadLetteredAt string          `json:"dead_lettered_at"`
		Deliveries     int64           `json:"deliveries"`
		Entry          json.RawMessage `json:"entry"`
	}{d.ID.String(), at, d.Deliveries, entry})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func dlqRequeue(ctx context.Context, fs *flag.FlagSet, stdout io.Writer) func(*eventstore.Store, []int) error {
	upTo := fs.String("upto", "", "requeue dead letters up to this dead-letter id, inclusive (with --partition N; default: all)")
	return func(store *eventstore.Store, parts []int) error {
		last, err := dlqUpTo(*upTo, parts)
		if err != nil {
			return err
		}
		return eachPartition(stdout, "requeued", groupFlag(fs), parts, func(p int) (int64, error) {
			return store.RequeueDeadLetters(ctx, groupFlag(fs), p, last)
		})
	}
}

func dlqPurge(ctx context.Context, fs *flag.FlagSet, stdout io.Writer) func(*eventstore.Store, []int) error {
	all := fs.Bool("all", false, "purge every dead letter")
	upTo := fs.String("upto", "", "purge dead letters up to this dead-letter id, inclusive (with --partition N)")
	olderThan := fs.Duration("older-than", 0, "purge dead letters dead-lettered longer ago than this (e.g. 72h)")
	return func(store *eventstore.Store, parts []int) error {
		given := 0
		for _, set := range []bool{*all, *upTo != "", *olderThan != 0} {
			if set {
				given++
			}
		}
		if given != 1 {
			return errors.New("purge needs exactly one of --all, --upto ID, --older-than DURATION")
		}
		var before eventstore.Position
		switch {
		case *upTo != "":
			last, err := dlqUpTo(*upTo, parts)
			if err != nil {
				return err
			}
			before = eventstore.Position{Ms: last.Ms, Seq: last.Seq + 1}
			if before.Seq == 0 { // last.Seq was the largest: the next id is the next millisecond's first
				before.Ms++
			}
		case *olderThan < 0:
			return fmt.Errorf("--older-than must be positive, got %s", *olderThan)
		case *olderThan > 0:
			before = eventstore.Position{Ms: uint64(time.Now().Add(-*olderThan).UnixMilli())}
		}
		return eachPartition(stdout, "purged", groupFlag(fs), parts, func(p int) (int64, error) {
			return store.PurgeDeadLetters(ctx, groupFlag(fs), p, before)
		})
	}
}

// dlqUpTo parses --upto: empty (everything) or a dead-letter id of the one
// partition given (ids of different partitions do not compare).
func dlqUpTo(spec string, parts []int) (eventstore.Position, error) {
	if spec == "" {
		return eventstore.Position{}, nil
	}
	if len(parts) != 1 {
		return eventstore.Position{}, errors.New("--upto needs --partition N: dead-letter ids of different partitions do not compare")
	}
	pos, err := eventstore.ParsePosition(spec)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("--upto: %w", err)
	}
	if pos.IsZero() {
		return eventstore.Position{}, errors.New("--upto must be a dead-letter id after 0-0")
	}
	return pos, nil
}

// eachPartition runs fn on every partition and prints how many dead letters
// it moved (verb) per partition and in all.
func eachPartition(w io.Writer, verb, group string, parts []int, fn func(p int) (int64, error)) error {
	var total int64
	for _, p := range parts {
		n, err := fn(p)
		total += n
		if n > 0 {
			fmt.Fprintf(w, "partition %d: %s %d dead letters\n", p, verb, n)
		}
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "%s %d dead letters of group %s\n", verb, total, group)
	return nil
}
