package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

func TestQuarantineListReapplyDrop(t *testing.T) {
	base, dsn, db := seedWithMySQL(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: base[1]})
	defer rdb.Close()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: base[3], Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The last message, as the archiver quarantines an event (its whole
	// envelope), and an entry of the cache's quarantine stream.
	var rec eventstore.Recorded
	for p := range 4 {
		recs, err := store.ReadPartition(ctx, p, eventstore.Position{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Event.GetMessageSent() != nil {
				rec = r
			}
		}
	}
	raw, err := proto.Marshal(rec.Event)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO quarantine (projector, partition_no, pos_ms, pos_seq, reason, raw, quarantined_at) VALUES ('archive', ?, ?, ?, 'apply failed: disk full', ?, ?)",
		rec.Partition, rec.Position.Ms, rec.Position.Seq, raw, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: base[3] + "quarantine:cache", Values: []any{
		"partition", "1", "position", "5-1", "reason", "undecodable", "raw", "junk"}}).Err(); err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{}, base...), "--mysql", dsn)
	part, pos := string(rune('0'+rec.Partition)), rec.Position.String()

	out, _, err := ctl(t, append(append([]string{"quarantine", "list"}, all...), "--json")...)
	if err != nil || !strings.Contains(out, `"projector":"archive"`) || !strings.Contains(out, `"type":"MessageSent"`) ||
		!strings.Contains(out, `"position":"`+pos+`"`) || !strings.Contains(out, "disk full") || !strings.Contains(out, `"projector":"cache"`) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, _, err = ctl(t, append(append([]string{"quarantine", "list"}, all...), "--projector", "cache")...)
	if err != nil || strings.Contains(out, "archive") || !strings.Contains(out, "cache") {
		t.Fatalf("list --projector cache: %v\n%s", err, out)
	}

	if _, _, err := ctl(t, append(append([]string{"quarantine", "reapply"}, all...), "archive", part, pos)...); err != nil {
		t.Fatalf("reapply: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM event_archive WHERE pos_ms = ? AND pos_seq = ?", rec.Position.Ms, rec.Position.Seq).Scan(&n); err != nil || n != 1 {
		t.Fatalf("archived after reapply: %d, %v", n, err)
	}
	if _, _, err := ctl(t, append(append([]string{"quarantine", "reapply"}, all...), "archive", part, pos)...); err == nil {
		t.Fatal("a second reapply of the same entry succeeded")
	}
	if _, _, err := ctl(t, append(append([]string{"quarantine", "reapply"}, all...), "cache", "1", "5-1")...); err == nil {
		t.Fatal("reapply of a cache entry accepted")
	}
	if _, _, err := ctl(t, append(append([]string{"quarantine", "drop"}, all...), "cache", "1", "5-1")...); err != nil {
		t.Fatalf("drop: %v", err)
	}
	out, _, err = ctl(t, append([]string{"quarantine", "list"}, all...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("list after reapply and drop: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"quarantine"},
		{"quarantine", "frobnicate"},
		{"quarantine", "reapply", "mysql", "x", "1-1"},
		{"quarantine", "reapply", "mysql", "99", "1-1"},
		{"quarantine", "drop", "mysql", "0", "later"},
		{"quarantine", "drop", "nosuch", "0", "1-1"},
		{"quarantine", "list", "--projector", "nosuch"},
	} {
		args := append([]string{}, bad[0])
		if len(bad) > 1 {
			args = append(append(append(args, bad[1]), all...), bad[2:]...)
		}
		if _, _, err := ctl(t, args...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
