package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/keyscan"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

// stats is what `mpimctl stats` reports.
type stats struct {
	Partitions  []partitionStats  `json:"partitions"`
	Checkpoints []checkpointStats `json:"checkpoints,omitempty"`
	TapGroups   []tapGroupStats   `json:"tap_groups"`
	Inboxes     inboxSummary      `json:"inboxes"`
	// Pause is the live mysql projector's pause by a replay (with --mysql).
	Pause *mysql.Pause `json:"mysql_pause,omitempty"`
}

// inboxSummary describes the user inboxes (at most inboxScanLimit scanned).
type inboxSummary struct {
	Count, Entries, Largest int64
	Truncated               bool
}

const inboxScanLimit = 100_000

// inboxStats scans the inbox streams (on every master of a cluster): how
// many, total and largest length.
func inboxStats(ctx context.Context, rdb redis.UniversalClient, prefix string) (inboxSummary, error) {
	var sum inboxSummary
	pattern := escapeGlob(strings.TrimSuffix(inbox.NewKeys(prefix).Inbox(""), "}")) + "*"
	errEnough := errors.New("inbox scan limit reached")
	err := keyscan.Each(ctx, rdb, pattern, func(c redis.Cmdable, keys []string) error {
		keys = slices.DeleteFunc(keys, func(k string) bool { return strings.Contains(k, ":cursor:") })
		if room := inboxScanLimit - sum.Count; int64(len(keys)) >= room {
			keys, sum.Truncated = keys[:room], true
		}
		pipe := c.Pipeline()
		lens := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			lens[i] = pipe.XLen(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, l := range lens {
			sum.Count++
			sum.Entries += l.Val()
			sum.Largest = max(sum.Largest, l.Val())
		}
		if sum.Truncated {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return sum, err
	}
	return sum, nil
}

// escapeGlob escapes the glob characters of a literal key part.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

type partitionStats struct {
	Partition int    `json:"partition"`
	Length    int64  `json:"length"`
	First     string `json:"first"`
	Last      string `json:"last"`
}

type checkpointStats struct {
	Projector string `json:"projector"`
	Partition int    `json:"partition"`
	Position  string `json:"position"`
	LagMs     uint64 `json:"lag_ms"`
}

func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("stats", stderr)
	asJSON := fs.Bool("json", false, "JSON instead of tables")
	if err := parse(fs, args); err != nil {
		return err
	}
	store, rdb, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore(store, rdb)
	var st stats
	last := map[int]eventstore.Position{}
	for p := range store.Partitions() {
		info, err := store.Info(ctx, p)
		if err != nil {
			return err
		}
		last[p] = info.Last
		st.Partitions = append(st.Partitions, partitionStats{p, info.Length, info.First.String(), info.Last.String()})
	}
	if c.mysql != "" {
		db, err := c.openMySQL(ctx)
		if err != nil {
			return err
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT projector, partition_no, position FROM projector_checkpoints
			UNION ALL SELECT 'mysql', partition_no, CONCAT(pos_ms, '-', pos_seq) FROM read_model_checkpoints
			ORDER BY 1, 2`)
		if err != nil {
			return fmt.Errorf("reading checkpoints: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var cs checkpointStats
			if err := rows.Scan(&cs.Projector, &cs.Partition, &cs.Position); err != nil {
				return err
			}
			pos, _ := eventstore.ParsePosition(cs.Position)
			if l := last[cs.Partition]; l.Compare(pos) > 0 {
				cs.LagMs = l.Ms - min(pos.Ms, l.Ms)
			}
			st.Checkpoints = append(st.Checkpoints, cs)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		pause, err := mysql.ReadPause(ctx, db)
		if err != nil {
			return err
		}
		st.Pause = &pause
	}
	for _, name := range []string{"cache", "inbox", push.Name} {
		cps := redisckpt.New(rdb, c.prefix, name)
		for p := range store.Partitions() {
			if name == push.Name {
				started, err := cps.Started(ctx, p)
				if err != nil {
					return err
				}
				if !started {
					continue // no push projector ran here: most deployments have no webhook
				}
			}
			pos, err := cps.Checkpoint(ctx, p)
			if err != nil {
				return err
			}
			cs := checkpointStats{Projector: name, Partition: p, Position: pos.String()}
			if l := last[p]; l.Compare(pos) > 0 {
				cs.LagMs = l.Ms - min(pos.Ms, l.Ms)
			}
			st.Checkpoints = append(st.Checkpoints, cs)
		}
	}
	if st.TapGroups, err = tapGroupsStats(ctx, store); err != nil {
		return err
	}
	if st.Inboxes, err = inboxStats(ctx, rdb, c.prefix); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLENGTH\tFIRST\tLAST")
	var total int64
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\n", p.Partition, p.Length, p.First, p.Last)
		total += p.Length
	}
	fmt.Fprintf(tw, "all\t%d\t\t\n", total)
	if len(st.Checkpoints) > 0 {
		fmt.Fprintln(tw, "\nPROJECTOR\tPARTITION\tCHECKPOINT\tLAG MS")
		for _, cp := range st.Checkpoints {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", cp.Projector, cp.Partition, cp.Position, cp.LagMs)
		}
	}
	printTapGroups(tw, st.TapGroups)
	if st.Pause != nil {
		fmt.Fprintf(tw, "\n%s\n", pauseLine(*st.Pause))
	}
	fmt.Fprintf(tw, "\nINBOXES\t%d\tentries %d\tlargest %d\n", st.Inboxes.Count, st.Inboxes.Entries, st.Inboxes.Largest)
	return tw.Flush()
}

// tapGroupStats is one tap group (consumer group) on one partition.
type tapGroupStats struct {
	Group     string `json:"group"`
	Partition int    `json:"partition"`
	// Floor is the lowest position the group still needs (its lowest
	// pending entry, else its last-delivered id): the trim keeps it.
	Floor         string `json:"floor"`
	LastDelivered string `json:"last_delivered"`
	Pending       int64  `json:"pending"`
	Lag           *int64 `json:"lag"` // null: Redis cannot tell
	Consumers     int64  `json:"consumers"`
	// CutFrom and CutTo: the group was cut loose and lost these entries.
	CutFrom string `json:"cut_from,omitempty"`
	CutTo   string `json:"cut_to,omitempty"`
}

func tapGroupsStats(ctx context.Context, store *eventstore.Store) ([]tapGroupStats, error) {
	out := []tapGroupStats{}
	for p := range store.Partitions() {
		groups, err := store.TapGroups(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, g := range groups {
			ts := tapGroupStats{Group: g.Name, Partition: p, Floor: g.Floor.String(), LastDelivered: g.LastDelivered.String(),
				Pending: g.Pending, Consumers: g.Consumers}
			if g.Lag >= 0 {
				ts.Lag = &g.Lag
			}
			if g.Cut != nil {
				ts.CutFrom, ts.CutTo = g.Cut.From.String(), g.Cut.To.String()
			}
			out = append(out, ts)
		}
	}
	return out, nil
}

func printTapGroups(w io.Writer, groups []tapGroupStats) {
	if len(groups) == 0 {
		fmt.Fprintln(w, "\nTAP GROUPS\tnone")
		return
	}
	fmt.Fprintln(w, "\nTAP GROUP\tPARTITION\tFLOOR\tLAG\tPENDING\tCONSUMERS\tLOST (CUT LOOSE)")
	for _, g := range groups {
		lag, lost := "unknown", ""
		if g.Lag != nil {
			lag = fmt.Sprint(*g.Lag)
		}
		if g.CutFrom != "" {
			lost = g.CutFrom + " to " + g.CutTo
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%d\t%s\n", g.Group, g.Partition, g.Floor, lag, g.Pending, g.Consumers, lost)
	}
}

// pauseLine describes the live mysql projector's pause for stats.
func pauseLine(p mysql.Pause) string {
	until := p.Until.UTC().Format(time.RFC3339)
	switch {
	case p.Holds():
		return fmt.Sprintf("MYSQL PROJECTOR PAUSED by %s, until %s (its replay is running)", p.By, until)
	case p.Active:
		return fmt.Sprintf("MYSQL PROJECTOR PAUSE IGNORED: set by %s until %s, but its replay is gone (lift it: mpimctl replay unpause)", p.By, until)
	case p.By != "":
		return fmt.Sprintf("MYSQL PROJECTOR PAUSE LAPSED: set by %s, its lease ended %s (lift it: mpimctl replay unpause)", p.By, until)
	}
	return "MYSQL PROJECTOR not paused"
}
