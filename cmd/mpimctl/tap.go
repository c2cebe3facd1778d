package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mpim/mpim/eventstore"
)

// tapBatch is the most entries one read of a partition asks for.
const tapBatch = 100

func runTap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "dlq" {
		return runTapDLQ(ctx, args[1:], stdout, stderr)
	}
	fs, c := newFlags("tap", stderr)
	group := fs.String("group", "", "consumer group name (required)")
	host, _ := os.Hostname()
	consumer := fs.String("consumer", fmt.Sprintf("%s-%d", host, os.Getpid()), "this consumer's name in the group")
	minIdle := fs.Duration("min-idle", 30*time.Second, "claim entries another consumer left pending this long")
	maxDeliveries := fs.Int64("max-deliveries", 5, "dead-letter an entry after this many deliveries")
	limit := fs.Int("limit", 0, "print exactly this many entries, then stop; also stop when there is nothing more to read for --wait (0: follow until interrupted)")
	wait := fs.Duration("wait", 2*time.Second, "with --limit: stop once every partition had nothing to read for this long (10ms..1h)")
	noAck := fs.Bool("no-ack", false, "peek: print what the group gets next (after its last-delivered position) without reading as the group, claiming, acknowledging or dead-lettering anything")
	pending := fs.Bool("pending", false, "with --no-ack: first print the group's pending entries (delivered, not yet acknowledged)")
	secrets := fs.Bool("with-secrets", false, "print password hashes and push tokens instead of "+redacted)
	acceptLoss := fs.Bool("accept-loss", false, "accept the events the group lost to the trim (printed to stderr; the archive holds them) and read on")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *group == "":
		return fmt.Errorf("--group is required")
	case *limit < 0:
		return fmt.Errorf("--limit must not be negative, got %d", *limit)
	case *wait < 10*time.Millisecond || *wait > time.Hour:
		return fmt.Errorf("--wait must be 10ms..1h, got %s", *wait)
	case *acceptLoss && *noAck:
		return fmt.Errorf("--accept-loss changes the group: it does not go with --no-ack")
	case *pending && !*noAck:
		return fmt.Errorf("--pending needs --no-ack (a reading tap claims pending entries itself)")
	case *minIdle <= 0:
		return fmt.Errorf("--min-idle must be positive, got %s", *minIdle)
	}
	return c.withStore(ctx, func(store *eventstore.Store) error {
		out := &printer{w: stdout, json: true, secrets: *secrets}
		var src tapSource
		if *noAck {
			pk := &peek{store: store, group: *group, after: make([]eventstore.Position, store.Partitions())}
			for p := range pk.after {
				pos, err := store.TapGroupPosition(ctx, *group, p)
				if err != nil {
					return err
				}
				pk.after[p] = pos
			}
			src = pk
		} else {
			tap, err := store.NewTap(ctx, eventstore.TapConfig{Group: *group, Consumer: *consumer, MinIdle: *minIdle, MaxDeliveries: *maxDeliveries})
			if err != nil {
				return err
			}
			if *acceptLoss {
				if err := acceptTapLoss(ctx, tap, stderr); err != nil {
					return err
				}
			}
			src = groupTap{tap}
		}
		tl := &tapLoop{store: store, out: out, src: src, limit: *limit, wait: *wait, stderr: stderr, name: *group + "/" + *consumer}
		if *pending {
			if done, err := tl.printPending(ctx, *group); done || err != nil {
				return err
			}
		}
		return tl.run(ctx)
	})
}

// tapSource is where tap reads entries: the group (reading, claiming,
// acknowledging) or a peek (changing nothing).
type tapSource interface {
	read(ctx context.Context, p int, count int64) ([]eventstore.TapEntry, error)
	// done is called with the entries read once they are printed.
	done(ctx context.Context, p int, entries []eventstore.TapEntry) error
}

type groupTap struct{ tap *eventstore.Tap }

func (g groupTap) read(ctx context.Context, p int, count int64) ([]eventstore.TapEntry, error) {
	return g.tap.Read(ctx, p, count, time.Millisecond)
}

func (g groupTap) done(ctx context.Context, p int, entries []eventstore.TapEntry) error {
	return g.tap.AckEntries(ctx, p, entries...)
}

// peek reads the log after the group's last-delivered positions with
// XRANGE, moving its own cursor only.
type peek struct {
	store *eventstore.Store
	group string
	after []eventstore.Position
}

func (k *peek) read(ctx context.Context, p int, count int64) ([]eventstore.TapEntry, error) {
	return k.store.PeekAfter(ctx, p, k.after[p], count)
}

func (k *peek) done(_ context.Context, p int, entries []eventstore.TapEntry) error {
	if len(entries) > 0 {
		k.after[p] = entries[len(entries)-1].Position
	}
	return nil
}

// tapLoop prints entries of every partition from src until limit entries
// are printed (exactly), there was nothing to read for wait (with a limit),
// or ctx ends.
type tapLoop struct {
	store  *eventstore.Store
	out    *printer
	src    tapSource
	limit  int
	wait   time.Duration
	stderr io.Writer
	name   string
	n      int
}

// remaining is how many entries the next read may return.
func (l *tapLoop) remaining() int64 {
	if l.limit == 0 {
		return tapBatch
	}
	return int64(min(tapBatch, l.limit-l.n))
}

// print writes entries and reports whether the limit is reached.
func (l *tapLoop) print(entries []eventstore.TapEntry) (bool, error) {
	for _, e := range entries {
		if err := printTapEntry(l.out, e); err != nil {
			return false, err
		}
	}
	l.n += len(entries)
	return l.limit > 0 && l.n >= l.limit, nil
}

func printTapEntry(out *printer, e eventstore.TapEntry) error {
	if e.Err != nil {
		out.printBad(&eventstore.DecodeError{Partition: e.Partition, Position: e.Position, Raw: e.Raw, Err: e.Err})
		return nil
	}
	return out.print(e.Recorded)
}

// printPending prints the group's pending entries of every partition.
func (l *tapLoop) printPending(ctx context.Context, group string) (bool, error) {
	for p := range l.store.Partitions() {
		entries, err := l.store.PeekPending(ctx, group, p, l.remaining())
		if err != nil {
			return false, err
		}
		if full, err := l.print(entries); full || err != nil {
			return full, err
		}
	}
	return false, nil
}

func (l *tapLoop) run(ctx context.Context) error {
	lastRead, lastReport := time.Now(), time.Now()
	for ctx.Err() == nil {
		idle := true
		for p := range l.store.Partitions() {
			entries, err := l.src.read(ctx, p, l.remaining())
			if err != nil {
				if ctx.Err() != nil {
					return nil //nolint:nilerr // the operator ending the tap is no failure
				}
				return err
			}
			full, err := l.print(entries)
			if err != nil {
				return err
			}
			if err := l.src.done(ctx, p, entries); err != nil {
				return err
			}
			if len(entries) > 0 {
				idle = false
			}
			if full {
				return nil
			}
		}
		if time.Since(lastReport) > 5*time.Second {
			fmt.Fprintf(l.stderr, "tap %s: %d entries\n", l.name, l.n)
			lastReport = time.Now()
		}
		if !idle {
			lastRead = time.Now()
			continue
		}
		if l.limit > 0 && time.Since(lastRead) >= l.wait {
			fmt.Fprintf(l.stderr, "tap %s: nothing more to read for %s, %d entries\n", l.name, l.wait, l.n)
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(200*time.Millisecond, l.wait)):
		}
	}
	return nil
}
