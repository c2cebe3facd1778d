package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/redis/go-redis/v9"
)

// tapWorld is the seeded log of 9 events on 4 partitions, with a client
// and store on it.
type tapWorld struct {
	base   []string
	rdb    *redis.Client
	store  *eventstore.Store
	prefix string
}

func newTapWorld(t *testing.T) *tapWorld {
	t.Helper()
	base := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: base[1]})
	t.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: base[3], Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &tapWorld{base: base, rdb: rdb, store: store, prefix: base[3]}
}

func (w *tapWorld) ctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return ctl(t, append(args, w.base...)...)
}

// positions parses JSON lines of tap (or, with entry, of tap dlq list) and
// returns the "partition/position" of each.
func positions(t *testing.T, out string, entry bool) []string {
	t.Helper()
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var l struct {
			Partition int    `json:"partition"`
			Position  string `json:"position"`
			Entry     *struct {
				Partition int    `json:"partition"`
				Position  string `json:"position"`
			} `json:"entry"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if entry {
			if l.Entry == nil {
				t.Fatalf("dead letter line without entry: %q", line)
			}
			l.Partition, l.Position = l.Entry.Partition, l.Entry.Position
		}
		got = append(got, fmt.Sprintf("%d/%s", l.Partition, l.Position))
	}
	slices.Sort(got)
	return got
}

// distinct counts the different entries of lists.
func distinct(lists ...[]string) int {
	return len(slices.Compact(slices.Sorted(slices.Values(slices.Concat(lists...)))))
}

// groupState is what a tap group holds in Redis: XINFO GROUPS of every
// partition, its pending entries (id, consumer, deliveries: not their idle
// time, which grows by itself), its dead letters and its retry streams.
func (w *tapWorld) groupState(t *testing.T, group string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for p := range 4 {
		tag := fmt.Sprintf("%s{p%d}:", w.prefix, p)
		info, err := w.rdb.Do(ctx, "XINFO", "GROUPS", tag+"log").Result()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "p%d groups %v\n", p, info)
		pending, err := w.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: tag + "log", Group: group, Start: "-", End: "+", Count: 1000}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, pe := range pending {
			fmt.Fprintf(&b, "p%d pending-entry %s %s %d\n", p, pe.ID, pe.Consumer, pe.RetryCount)
		}
		for _, key := range []string{"dlq:", "retry:"} {
			msgs, err := w.rdb.XRange(ctx, tag+key+group, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "p%d %s %v\n", p, key, msgs)
		}
	}
	return b.String()
}

func TestTapLimitIsExactAndReturnsWhenIdle(t *testing.T) {
	w := newTapWorld(t)
	out, _, err := w.ctl(t, "tap", "--group", "g", "--limit", "5")
	if err != nil {
		t.Fatal(err)
	}
	first := positions(t, out, false)
	if len(first) != 5 {
		t.Fatalf("tap --limit 5 printed %d entries:\n%s", len(first), out)
	}
	// Nothing beyond the 5 printed was delivered to the group.
	for p := range 4 {
		pending, err := w.rdb.XPending(context.Background(), fmt.Sprintf("%s{p%d}:log", w.prefix, p), "g").Result()
		if err != nil || pending.Count != 0 {
			t.Fatalf("partition %d: pending %+v, %v", p, pending, err)
		}
	}
	// On a log with 4 entries left, --limit 500 returns them and stops once
	// there is nothing more to read for --wait.
	out, errOut, err := w.ctl(t, "tap", "--group", "g", "--limit", "500", "--wait", "300ms")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "nothing more to read for 300ms, 4 entries") {
		t.Fatalf("tap did not stop for having nothing to read: %q", errOut)
	}
	rest := positions(t, out, false)
	if len(rest) != 4 || distinct(first, rest) != 9 {
		t.Fatalf("second tap printed %v after %v; want the 4 others", rest, first)
	}
}

func TestTapNoAckChangesNothing(t *testing.T) {
	w := newTapWorld(t)
	ctx := context.Background()
	// A consumer took the first entry of every partition and died: with
	// --min-idle 1ms and --max-deliveries 1, a reading tap would claim and
	// dead-letter them at once.
	dead, err := w.store.NewTap(ctx, eventstore.TapConfig{Group: "g", Consumer: "dead", MaxDeliveries: 1})
	if err != nil {
		t.Fatal(err)
	}
	var taken int
	for p := range 4 {
		got, err := dead.Read(ctx, p, 1, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		taken += len(got)
	}
	if taken == 0 {
		t.Fatal("the seeded log gave the consumer nothing")
	}
	before := w.groupState(t, "g")
	out, _, err := w.ctl(t, "tap", "--group", "g", "--no-ack", "--pending", "--min-idle", "1ms", "--max-deliveries", "1", "--limit", "100", "--wait", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(t, out, false); len(got) != 9 || distinct(got) != 9 {
		t.Fatalf("peek printed %v; want the %d pending and every later entry once", got, taken)
	}
	if after := w.groupState(t, "g"); after != before {
		t.Fatalf("tap --no-ack changed the group:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, _, err := w.ctl(t, "tap", "--group", "nope", "--no-ack", "--limit", "1"); err == nil || !strings.Contains(err.Error(), `no tap group "nope"`) {
		t.Fatalf("peek of an unknown group: %v", err)
	}
	// A real consumer then receives every entry, the pending ones claimed.
	out, _, err = w.ctl(t, "tap", "--group", "g", "--consumer", "live", "--min-idle", "1ms", "--limit", "9")
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(t, out, false); len(got) != 9 || distinct(got) != 9 {
		t.Fatalf("the consumer after the peek received %v", got)
	}
}

func TestTapDeadLettersListRequeuePurge(t *testing.T) {
	w := newTapWorld(t)
	ctx := context.Background()
	cfg := eventstore.TapConfig{Group: "g", Consumer: "a", MinIdle: 20 * time.Millisecond, MaxDeliveries: 1}
	a, err := w.store.NewTap(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Consumer = "b"
	b, err := w.store.NewTap(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := a.Read(ctx, p, 100, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// a fails: once idle longer than MinIdle (a sleep of twice MinIdle; a
	// slower run leaves them idler), b's claims dead-letter every entry.
	time.Sleep(40 * time.Millisecond)
	for p := range 4 {
		if got, err := b.Read(ctx, p, 100, time.Millisecond); err != nil || len(got) != 0 {
			t.Fatalf("partition %d: b read %d, %v", p, len(got), err)
		}
	}
	out, _, err := w.ctl(t, "tap", "dlq", "list", "--group", "g", "--json")
	if err != nil {
		t.Fatal(err)
	}
	listed := positions(t, out, true)
	if len(listed) != 9 || !strings.Contains(out, `"deliveries":1`) || !strings.Contains(out, `"password_hash":"[redacted]"`) || strings.Contains(out, `"$h"`) {
		t.Fatalf("dlq list printed %d dead letters:\n%s", len(listed), out)
	}
	if out, _, err := w.ctl(t, "tap", "dlq", "list", "--group", "g", "--with-secrets", "--limit", "4"); err != nil ||
		strings.Count(out, "\n") != 4 || !strings.HasPrefix(out, "dlq ") {
		t.Fatalf("dlq list --limit 4 (human): %v\n%s", err, out)
	}
	if out, _, _ := w.ctl(t, "tap", "dlq", "list", "--group", "g", "--json", "--with-secrets"); !strings.Contains(out, `"password_hash":"$h"`) {
		t.Fatalf("dlq list --with-secrets hid the hash:\n%s", out)
	}
	// Purge the first dead letter of one partition by its id.
	var firstDL struct {
		DeadLetter string `json:"dead_letter"`
		Entry      struct {
			Partition int `json:"partition"`
		} `json:"entry"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &firstDL); err != nil {
		t.Fatal(err)
	}
	part := fmt.Sprint(firstDL.Entry.Partition)
	if out, _, err := w.ctl(t, "tap", "dlq", "purge", "--group", "g", "--partition", part, "--upto", firstDL.DeadLetter); err != nil || !strings.Contains(out, "purged 1 dead letters") {
		t.Fatalf("purge --upto: %v\n%s", err, out)
	}
	if out, _, err := w.ctl(t, "tap", "dlq", "purge", "--group", "g", "--older-than", "1h"); err != nil || !strings.Contains(out, "purged 0 dead letters") {
		t.Fatalf("purge --older-than 1h: %v\n%s", err, out)
	}
	// Requeue: the tap delivers the 8 left again, under their positions.
	if out, _, err := w.ctl(t, "tap", "dlq", "requeue", "--group", "g"); err != nil || !strings.Contains(out, "requeued 8 dead letters") {
		t.Fatalf("requeue: %v\n%s", err, out)
	}
	out, _, err = w.ctl(t, "tap", "--group", "g", "--limit", "100", "--wait", "300ms")
	if err != nil {
		t.Fatal(err)
	}
	if got := positions(t, out, false); len(got) != 8 || distinct(got, listed) != 9 {
		t.Fatalf("tap after requeue received %v; dead-lettered were %v", got, listed)
	}
	if out, _, err := w.ctl(t, "tap", "dlq", "list", "--group", "g"); err != nil || out != "" {
		t.Fatalf("dead letters after requeue and tap: %v\n%s", err, out)
	}
	if after := w.groupState(t, "g"); strings.Contains(after, "pending-entry") || strings.Count(after, ": []\n") != 8 {
		t.Fatalf("group keeps entries after the requeued ones were acknowledged:\n%s", after)
	}
	if out, _, err := w.ctl(t, "tap", "dlq", "purge", "--group", "g", "--all"); err != nil || !strings.Contains(out, "purged 0 dead letters") {
		t.Fatalf("purge --all: %v\n%s", err, out)
	}
}

func TestTapBadInvocations(t *testing.T) {
	w := newTapWorld(t)
	if _, _, err := w.ctl(t, "tap", "--group", "g", "--limit", "1"); err != nil {
		t.Fatal(err) // creates the group
	}
	cases := map[string][]string{
		"must not be negative":          {"tap", "--group", "g", "--limit", "-1"},
		"--wait must be":                {"tap", "--group", "g", "--limit", "1", "--wait", "0s"},
		"--pending needs --no-ack":      {"tap", "--group", "g", "--pending"},
		"--min-idle must be positive":   {"tap", "--group", "g", "--min-idle", "0s"},
		"usage: mpimctl tap dlq":        {"tap", "dlq", "show", "--group", "g"},
		"--group is required":           {"tap", "dlq", "list"},
		`no tap group "x"`:              {"tap", "dlq", "requeue", "--group", "x"},
		"--partition must be":           {"tap", "dlq", "list", "--group", "g", "--partition", "4"},
		"exactly one of":                {"tap", "dlq", "purge", "--group", "g"},
		"--upto needs --partition N":    {"tap", "dlq", "purge", "--group", "g", "--upto", "5-0"},
		"--upto: ":                      {"tap", "dlq", "requeue", "--group", "g", "--partition", "1", "--upto", "soon"},
		"--older-than must be positive": {"tap", "dlq", "purge", "--group", "g", "--older-than", "-1h"},
		"unexpected arguments":          {"tap", "dlq", "list", "--group", "g", "extra"},
	}
	for want, args := range cases {
		if _, _, err := w.ctl(t, args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mpimctl %v: %v; want an error saying %q", args, err, want)
		}
	}
}
