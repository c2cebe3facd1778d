package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/schema"
	"github.com/redis/go-redis/v9"
)

// mysqlProjectors keep their quarantine in the MySQL quarantine table,
// redisProjectors in the capped stream <prefix>quarantine:<name>.
var (
	mysqlProjectors = []string{mysql.ArchiveName, mysql.ReadModelName}
	redisProjectors = []string{"cache", "inbox"}
)

// runQuarantine lists, re-applies and drops the entries projectors set
// aside (see docs/operations.md, Quarantine).
func runQuarantine(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "usage: mpimctl quarantine list [--projector P] [--json] | reapply PROJECTOR PARTITION POSITION | drop PROJECTOR PARTITION POSITION"
	if len(args) == 0 {
		return errors.New(use)
	}
	fs, c := newFlags("quarantine "+args[0], stderr)
	projector := fs.String("projector", "", "list: only this projector's entries ("+fmt.Sprint(append(slices.Clone(mysqlProjectors), redisProjectors...))+")")
	asJSON := fs.Bool("json", false, "list: one JSON object per line")
	limit := fs.Int("limit", 1000, "list: at most this many entries per projector, 1..100000")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "list":
		if fs.NArg() != 0 || *limit < 1 || *limit > 100_000 {
			return fmt.Errorf("%s (limit 1..100000)", use)
		}
		if *projector != "" && !known(*projector) {
			return fmt.Errorf("unknown projector %q", *projector)
		}
		return listQuarantine(ctx, c, *projector, *limit, *asJSON, stdout)
	case "reapply", "drop":
		name, p, pos, err := entryArgs(fs, c)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, use)
		}
		if args[0] == "drop" {
			err = dropQuarantine(ctx, c, name, p, pos)
		} else {
			err = reapplyQuarantine(ctx, c, name, p, pos)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s partition %d position %s: done\n", args[0], name, p, pos)
		return nil
	}
	return fmt.Errorf("unknown quarantine command %q\n%s", args[0], use)
}

func known(name string) bool {
	return slices.Contains(mysqlProjectors, name) || slices.Contains(redisProjectors, name)
}

// entryArgs reads PROJECTOR PARTITION POSITION.
func entryArgs(fs *flag.FlagSet, c *common) (string, int, eventstore.Position, error) {
	if fs.NArg() != 3 {
		return "", 0, eventstore.Position{}, fmt.Errorf("want PROJECTOR PARTITION POSITION, got %q", fs.Args())
	}
	name := fs.Arg(0)
	if !known(name) {
		return "", 0, eventstore.Position{}, fmt.Errorf("unknown projector %q", name)
	}
	p, err := strconv.Atoi(fs.Arg(1))
	if err != nil || p < 0 || p >= c.partitions {
		return "", 0, eventstore.Position{}, fmt.Errorf("partition %q: want 0..%d", fs.Arg(1), c.partitions-1)
	}
	pos, err := eventstore.ParsePosition(fs.Arg(2))
	if err != nil || pos == (eventstore.Position{}) {
		return "", 0, eventstore.Position{}, fmt.Errorf("position %q: want a stream entry id <ms>-<seq>", fs.Arg(2))
	}
	return name, p, pos, nil
}

// quarantineLine is one listed entry.
type quarantineLine struct {
	Projector string    `json:"projector"`
	Partition int       `json:"partition"`
	Position  string    `json:"position"`
	EventID   string    `json:"eventId,omitempty"`
	Type      string    `json:"type,omitempty"`
	Aggregate string    `json:"aggregate,omitempty"`
	Error     string    `json:"error"`
	At        time.Time `json:"at"`
}

func listQuarantine(ctx context.Context, c *common, projector string, limit int, asJSON bool, stdout io.Writer) error {
	var recs []projectors.QuarantineRecord
	if projector == "" || slices.Contains(mysqlProjectors, projector) {
		if c.mysql != "" || projector != "" {
			db, err := c.openMySQL(ctx)
			if err != nil {
				return err
			}
			defer db.Close()
			r, err := mysql.ListQuarantine(ctx, db, projector, limit)
			if err != nil {
				return err
			}
			recs = append(recs, r...)
		}
	}
	if projector == "" || slices.Contains(redisProjectors, projector) {
		store, rdb, err := c.openStore(ctx)
		if err != nil {
			return err
		}
		defer closeStore(store, rdb)
		for _, name := range redisProjectors {
			if projector == "" || projector == name {
				r, err := redisQuarantine(ctx, rdb, c.prefix, name, limit)
				if err != nil {
					return err
				}
				recs = append(recs, r...)
			}
		}
	}
	enc := json.NewEncoder(stdout)
	for _, r := range recs {
		info := projectors.DescribeRaw(r.Raw)
		l := quarantineLine{Projector: r.Projector, Partition: r.Partition, Position: r.Position.String(), EventID: info.EventID,
			Type: info.Type, Aggregate: info.Aggregate, Error: r.Reason, At: r.At.UTC()}
		if asJSON {
			if err := enc.Encode(l); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(stdout, "%-8s p%-3d %-22s %-26s %-20s %s  %s\n", l.Projector, l.Partition, l.Position, l.EventID, l.Type,
			l.At.Format(time.RFC3339), l.Error)
	}
	return nil
}

// redisQuarantine reads the quarantine stream of a Redis projector.
func redisQuarantine(ctx context.Context, rdb redis.UniversalClient, prefix, name string, limit int) ([]projectors.QuarantineRecord, error) {
	msgs, err := rdb.XRangeN(ctx, prefix+"quarantine:"+name, "-", "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the %s quarantine: %w", name, err)
	}
	out := make([]projectors.QuarantineRecord, 0, len(msgs))
	for _, m := range msgs {
		r := projectors.QuarantineRecord{Projector: name}
		r.Partition, _ = strconv.Atoi(fmt.Sprint(m.Values["partition"]))
		r.Position, _ = eventstore.ParsePosition(fmt.Sprint(m.Values["position"]))
		r.Reason = fmt.Sprint(m.Values["reason"])
		if raw, ok := m.Values["raw"].(string); ok {
			r.Raw = []byte(raw)
		}
		if id, err := eventstore.ParsePosition(m.ID); err == nil {
			r.At = time.UnixMilli(int64(id.Ms))
		}
		out = append(out, r)
	}
	return out, nil
}

func openMigrated(ctx context.Context, c *common) (*sql.DB, error) {
	db, err := c.openMySQL(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := schema.Migrate(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// reapplyQuarantine applies a quarantined event again through its projector.
// Only the MySQL projectors re-apply: the cache and the inboxes are
// rebuilt from the log, and a delivery long after its conversation moved on
// would mislead clients.
func reapplyQuarantine(ctx context.Context, c *common, name string, p int, pos eventstore.Position) error {
	if !slices.Contains(mysqlProjectors, name) {
		return fmt.Errorf("%s entries cannot be re-applied (the cache and inboxes are rebuilt from the log); drop it instead", name)
	}
	db, err := openMigrated(ctx, c)
	if err != nil {
		return err
	}
	defer db.Close()
	if name == mysql.ArchiveName {
		a, err := mysql.NewArchiver(db, mysql.ArchiverConfig{})
		if err != nil {
			return err
		}
		defer a.Close()
		return a.Reapply(ctx, p, pos)
	}
	rm, err := mysql.NewReadModel(db, mysql.Config{})
	if err != nil {
		return err
	}
	defer rm.Close()
	return rm.Reapply(ctx, p, pos)
}

// dropQuarantine deletes a quarantine record.
func dropQuarantine(ctx context.Context, c *common, name string, p int, pos eventstore.Position) error {
	if slices.Contains(mysqlProjectors, name) {
		db, err := c.openMySQL(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		return mysql.DropQuarantine(ctx, db, name, p, pos)
	}
	store, rdb, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore(store, rdb)
	key := c.prefix + "quarantine:" + name
	msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		return fmt.Errorf("reading the %s quarantine: %w", name, err)
	}
	var ids []string
	for _, m := range msgs {
		if fmt.Sprint(m.Values["partition"]) == strconv.Itoa(p) && fmt.Sprint(m.Values["position"]) == pos.String() {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("no %s quarantine entry at partition %d position %s", name, p, pos)
	}
	return rdb.XDel(ctx, key, ids...).Err()
}
