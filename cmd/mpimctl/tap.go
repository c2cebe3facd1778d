package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mpim/mpim/eventstore"
)

func runTap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("tap", stderr)
	group := fs.String("group", "", "consumer group name (required)")
	host, _ := os.Hostname()
	consumer := fs.String("consumer", fmt.Sprintf("%s-%d", host, os.Getpid()), "this consumer's name in the group")
	minIdle := fs.Duration("min-idle", 30*time.Second, "claim entries another consumer left pending this long")
	maxDeliveries := fs.Int64("max-deliveries", 5, "dead-letter an entry after this many deliveries")
	limit := fs.Int("limit", 0, "stop after acknowledging this many entries (0: run until interrupted)")
	noAck := fs.Bool("no-ack", false, "read without acknowledging (shows claiming by other consumers)")
	secrets := fs.Bool("with-secrets", false, "print password hashes instead of "+redacted)
	acceptLoss := fs.Bool("accept-loss", false, "accept the events the group lost to the trim (printed to stderr; the archive holds them) and read on")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *group == "" {
		return fmt.Errorf("--group is required")
	}
	return c.withStore(ctx, func(store *eventstore.Store) error {
		tap, err := store.NewTap(ctx, eventstore.TapConfig{Group: *group, Consumer: *consumer, MinIdle: *minIdle, MaxDeliveries: *maxDeliveries})
		if err != nil {
			return err
		}
		if *acceptLoss {
			if err := acceptTapLoss(ctx, tap, stderr); err != nil {
				return err
			}
		}
		out := &printer{w: stdout, json: true, secrets: *secrets}
		n, lastReport := 0, time.Now()
		for ctx.Err() == nil {
			idle := true
			for p := range store.Partitions() {
				entries, err := tap.Read(ctx, p, 100, time.Millisecond)
				if err != nil {
					if ctx.Err() != nil {
						return nil //nolint:nilerr // the operator ending the tap is no failure
					}
					return err
				}
				var done []eventstore.Position
				for _, e := range entries {
					idle = false
					if e.Err != nil {
						out.printBad(&eventstore.DecodeError{Partition: p, Position: e.Position, Raw: e.Raw, Err: e.Err})
					} else if err := out.print(e.Recorded); err != nil {
						return err
					}
					done = append(done, e.Position)
				}
				if !*noAck {
					if err := tap.Ack(ctx, p, done...); err != nil {
						return err
					}
				}
				n += len(done)
				if *limit > 0 && n >= *limit {
					return nil
				}
			}
			if time.Since(lastReport) > 5*time.Second {
				fmt.Fprintf(stderr, "tap %s/%s: %d entries\n", *group, *consumer, n)
				lastReport = time.Now()
			}
			if idle {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
		return nil
	})
}
