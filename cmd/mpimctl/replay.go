package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/schema"
)

const replayUsage = "usage: mpimctl replay [flags] mysql|unpause [flags]"

// runReplay rebuilds a read model from zero (archive, then the Redis tail)
// into fresh tables while the system keeps running, then swaps them in
// atomically; `replay unpause` lifts a pause a replay left. Only the MySQL
// read model is rebuilt this way; the Redis models (cache, inbox) are
// rebuilt by their projectors from a reset.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("replay", stderr)
	batch := fs.Int("batch-size", 20000, "events per rebuild transaction (1..100000)")
	parallel := fs.Int("parallelism", 4, "partitions rebuilt at once (at least 1)")
	lockWait := fs.Duration("swap-lock-wait", 2*time.Second, "longest wait of one swap attempt for other sessions' table locks (whole seconds, 1s..1m); readers queue behind a waiting swap for at most this long")
	attempts := fs.Int("swap-retries", 4, "swap attempts after the first one times out waiting for locks (0..100)")
	fresh := fs.Bool("fresh", false, "rebuild from zero even if an earlier replay left rebuilt tables (they are caught up and swapped in otherwise)")
	force := fs.Bool("force", false, "unpause: lift the pause even though the replay that set it is still running")
	sub, err := parseSub(fs, args)
	if err != nil {
		return err
	}
	switch sub {
	case "mysql":
	case "unpause":
		return c.unpause(ctx, *force, stdout)
	case "":
		return errors.New(replayUsage + " (no subcommand given)")
	default:
		return fmt.Errorf("%s (unknown subcommand %q)", replayUsage, sub)
	}
	var errs []error
	if *batch < 1 || *batch > 100_000 {
		errs = append(errs, fmt.Errorf("--batch-size must be 1..100000, got %d", *batch))
	}
	if *parallel < 1 {
		errs = append(errs, fmt.Errorf("--parallelism must be at least 1, got %d", *parallel))
	}
	if *lockWait < time.Second || *lockWait > time.Minute || *lockWait%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--swap-lock-wait must be whole seconds from 1s to 1m, got %s", *lockWait))
	}
	if *attempts < 0 || *attempts > 100 {
		errs = append(errs, fmt.Errorf("--swap-retries must be 0..100, got %d", *attempts))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	halt, err := parseHalt(os.Getenv(haltEnv))
	if err != nil {
		return err
	}
	return c.withStore(ctx, func(store *eventstore.Store) error {
		db, err := c.openMySQL(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := schema.Migrate(ctx, db); err != nil {
			return err
		}
		start := time.Now()
		pr := &progressPrinter{w: stderr}
		err = mysql.Rebuild(ctx, db, store, mysql.RebuildOptions{BatchSize: *batch, Parallelism: *parallel,
			SwapLockWait: *lockWait, SwapAttempts: *attempts + 1, Fresh: *fresh,
			Progress: func(p mysql.RebuildProgress) {
				halt.check(ctx, p)
				pr.print(p)
			}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replay mysql: rebuilt and swapped in %s\n", time.Since(start).Round(time.Millisecond))
		return nil
	})
}

// parseSub parses args whose flags may come before the subcommand, after
// it, or both, and returns the subcommand ("" if none); anything else after
// the subcommand is an error.
func parseSub(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return "", parse(fs, args)
	}
	reordered := append(append(slices.Clone(args[:len(args)-len(rest)]), rest[1:]...), rest[0])
	if err := parse(fs, reordered); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%s (unexpected arguments %q)", replayUsage, fs.Args()[:fs.NArg()-1])
	}
	return fs.Arg(0), nil
}

// progressPrinter prints a rebuild's progress: every phase change, the
// first batch of a phase, and then a batch at most every two seconds.
type progressPrinter struct {
	w    io.Writer
	last time.Time // of the last batch line; zero at a phase change
}

func (pr *progressPrinter) print(p mysql.RebuildProgress) {
	phase := p.Partition < 0
	switch {
	case phase:
		pr.last = time.Time{}
	case !pr.last.IsZero() && time.Since(pr.last) < 2*time.Second:
		return
	default:
		pr.last = time.Now()
	}
	if phase && p.Phase == mysql.PhaseBuild && p.Resumed {
		fmt.Fprintln(pr.w, "replay mysql: resuming from the rebuilt tables an earlier replay left (--fresh rebuilds from zero)")
	}
	pct := int64(100)
	if p.Total > 0 {
		pct = p.Events * 100 / p.Total
	}
	line := fmt.Sprintf("replay mysql: %-7s %d of about %d events (%d%%)", p.Phase, p.Events, p.Total, pct)
	if phase {
		line = fmt.Sprintf("replay mysql: phase %s: %d of about %d events (%d%%)", p.Phase, p.Events, p.Total, pct)
	} else {
		line += fmt.Sprintf(", partition %d at %s", p.Partition, p.Position)
	}
	fmt.Fprintf(pr.w, "%s, %s\n", line, p.Elapsed.Round(time.Millisecond))
}

// unpause lifts the live projector's pause (`replay unpause`).
func (c *common) unpause(ctx context.Context, force bool, stdout io.Writer) error {
	db, err := c.openMySQL(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := mysql.LiftPause(ctx, db, force)
	if err != nil {
		return fmt.Errorf("%w (--force)", err)
	}
	if p.By == "" && p.Until.IsZero() {
		fmt.Fprintln(stdout, "replay unpause: the live mysql projector was not paused")
		return nil
	}
	fmt.Fprintf(stdout, "replay unpause: lifted the pause by %s (lease until %s, in force: %v, its replay running: %v)\n",
		p.By, p.Until.UTC().Format(time.RFC3339), p.Active, p.OwnerRunning)
	return nil
}
