package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/schema"
)

// runReplay rebuilds a read model from zero (archive, then the Redis tail)
// into fresh tables while the system keeps running, then swaps them in
// atomically. Only the MySQL read model is rebuilt this way; the Redis
// models (cache, inbox) are rebuilt by their projectors from a reset.
func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("replay", stderr)
	batch := fs.Int("batch-size", 20000, "events per rebuild transaction")
	parallel := fs.Int("parallelism", 4, "partitions rebuilt at once")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) != "mysql" {
		return fmt.Errorf("usage: mpimctl replay [flags] mysql (the projector to rebuild; got %q)", fs.Args())
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
		last := time.Time{}
		err = mysql.Rebuild(ctx, db, store, mysql.RebuildOptions{BatchSize: *batch, Parallelism: *parallel,
			Progress: func(p mysql.RebuildProgress) {
				halt.check(ctx, p)
				if time.Since(last) > 2*time.Second || p.Partition < 0 {
					fmt.Fprintf(stderr, "replay mysql: %-5v partition %2d at %s, %d events, %s\n", p.Phase, p.Partition, p.Position, p.Events, p.Elapsed.Round(time.Millisecond))
					last = time.Now()
				}
			}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replay mysql: rebuilt and swapped in %s\n", time.Since(start).Round(time.Millisecond))
		return nil
	})
}
