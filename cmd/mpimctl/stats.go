package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mpim/mpim/eventstore"
)

// stats is what `mpimctl stats` reports.
type stats struct {
	Partitions  []partitionStats  `json:"partitions"`
	Checkpoints []checkpointStats `json:"checkpoints,omitempty"`
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
	defer rdb.Close()
	defer store.Close()
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
		rows, err := db.QueryContext(ctx, "SELECT projector, partition_no, position FROM projector_checkpoints ORDER BY projector, partition_no")
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
	return tw.Flush()
}
