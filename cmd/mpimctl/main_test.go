package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/redis/go-redis/v9"
)

// newLog returns the command service of a new 4-partition log, which
// closes with t, and the flags that address it.
func newLog(t *testing.T) (*command.Service, []string) {
	t.Helper()
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	svc, err := command.New(store, command.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return svc, []string{"--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--partitions", "4"}
}

// seed writes a small chat through the real write path and returns the
// flags that address it.
func seed(t *testing.T) []string {
	t.Helper()
	svc, base := newLog(t)
	ctx := context.Background()
	a, err := svc.Register(ctx, "ann", "$h", "Ann", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := svc.Register(ctx, "ben", "$h", "Ben", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := svc.Send(ctx, command.Actor{User: a}, domain.SendMessage{Conversation: domain.DirectConversation(a, b), Kind: domain.KindText, Text: strings.Repeat("x", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

// TestPushTokensAreRedacted: tail, export and tap print a registered push
// token as [redacted], and in the clear with --with-secrets.
func TestPushTokensAreRedacted(t *testing.T) {
	svc, base := newLog(t)
	ctx := context.Background()
	u, err := svc.Register(ctx, "ann", "$h", "Ann", "")
	if err != nil {
		t.Fatal(err)
	}
	phone := command.Actor{User: u, Device: "phone"}
	if _, err := svc.UpdateUser(ctx, phone, domain.LogIn{Device: "phone", Platform: "ios"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RegisterPushToken(ctx, phone, domain.PushToken{Platform: domain.PushAPNs, Token: "tok-0123456789"}); err != nil {
		t.Fatal(err)
	}
	checkRedaction(t, base, 4, "token", "tok-0123456789")
}

// checkRedaction runs tail, export and tap (at most limit entries) on the
// deployment base names and fails t unless field reads [redacted] in every
// output, and value with --with-secrets. Every line must parse.
func checkRedaction(t *testing.T, base []string, limit int, field, value string) {
	t.Helper()
	n := strconv.Itoa(limit)
	clear, hidden := `"`+field+`":"`+value+`"`, `"`+field+`":"`+redacted+`"`
	for _, cmd := range [][]string{{"tail", "--from-start", "--json", "--limit", n}, {"export"}, {"tap", "--group", "redact", "--limit", n}} {
		plain, _, err := ctl(t, append(cmd, base...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(plain), "\n") {
			checkLine(t, cmd[0], l)
		}
		if strings.Contains(plain, clear) || !strings.Contains(plain, hidden) {
			t.Errorf("%s printed a secret %s:\n%s", cmd[0], field, plain)
		}
		if cmd[0] == "tap" {
			cmd[2] = "redact-with-secrets" // a new group reads the log again
		}
		secret, _, err := ctl(t, append(append(cmd, "--with-secrets"), base...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(secret, clear) || strings.Contains(secret, redacted) {
			t.Errorf("%s --with-secrets did not print the %s:\n%s", cmd[0], field, secret)
		}
	}
}

func ctl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestTailExportTapStats(t *testing.T) {
	base := seed(t)
	// 2 registrations (claim + user each) + 5 messages.
	const events = 9
	out, _, err := ctl(t, append([]string{"tail", "--from-start", "--json", "--limit", "9"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != events {
		t.Fatalf("tail printed %d lines:\n%s", len(lines), out)
	}
	out, _, err = ctl(t, append([]string{"export", "--since", "1h"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != events {
		t.Fatalf("export printed %d lines", len(lines))
	}
	for _, l := range lines {
		checkLine(t, "export", l) // format_test.go: the schema in docs, and the parser
	}
	// Password hashes are redacted unless asked for, in tail, export and tap.
	checkRedaction(t, base, events, "password_hash", "$h")
	out, _, err = ctl(t, append([]string{"export", "--since", "2099-01-01T00:00:00Z"}, base...)...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("export from the future: %q %v", out, err)
	}
	out, _, err = ctl(t, append([]string{"tap", "--group", "g1", "--limit", "9"}, base...)...)
	if err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) != events {
		t.Fatalf("tap: %v\n%s", err, out)
	}
	out, _, err = ctl(t, append([]string{"stats", "--json"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	var st stats
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Partitions) != 4 {
		t.Fatalf("stats %q: %v", out, err)
	}
	var total int64
	for _, p := range st.Partitions {
		total += p.Length
	}
	if total != events {
		t.Fatalf("stats count %d events, want %d", total, events)
	}
	if out, _, err := ctl(t, append([]string{"stats"}, base...)...); err != nil || !strings.Contains(out, "PARTITION") {
		t.Fatalf("stats table: %v\n%s", err, out)
	}
}

func TestBadInvocations(t *testing.T) {
	base := seed(t)
	cases := [][]string{
		{},
		{"frobnicate"},
		append([]string{"tail", "--partition", "99"}, base...),
		append([]string{"tail", "--partition", "x"}, base...),
		append([]string{"export", "--since", "yesterday"}, base...),
		append([]string{"export", "--after", "1-0"}, base...),
		append([]string{"export", "--partition", "1", "--after", "garbage"}, base...),
		append([]string{"tap"}, base...),
		append(append([]string{"stats"}, base...), "--partitions", "8"),
		{"stats", "--redis-addr", "127.0.0.1:1", "--connect-timeout", "300ms"},
		{"tail", "--no-such-flag"},
	}
	for _, args := range cases {
		if _, _, err := ctl(t, args...); err == nil {
			t.Errorf("mpimctl %v succeeded", args)
		}
	}
}

func TestReplayBuildsTheReadModel(t *testing.T) {
	base := seed(t)
	dsn := testsvc.MySQL(t)
	args := append(append([]string{"replay"}, base...), "--mysql", dsn, "mysql")
	out, _, err := ctl(t, args...)
	if err != nil || !strings.Contains(out, "swapped") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	db, err := connect.MySQL(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM messages").Scan(&n); err != nil || n != 5 {
		t.Fatalf("messages after replay: %d, %v", n, err)
	}
	out, _, err = ctl(t, append(append([]string{"stats", "--json"}, base...), "--mysql", dsn)...)
	if err != nil || !strings.Contains(out, `"projector": "mysql"`) {
		t.Fatalf("stats with checkpoints: %v\n%s", err, out)
	}
	if _, _, err := ctl(t, append(append([]string{"replay"}, base...), "--mysql", dsn, "cache")...); err == nil {
		t.Fatal("replay of an unsupported projector accepted")
	}
	if _, _, err := ctl(t, append([]string{"replay"}, base...)...); err == nil {
		t.Fatal("replay without a projector name accepted")
	}
}

// TestStatsListsPushCheckpoints: stats lists the push projector's
// checkpoints beside cache's and inbox's, on the partitions where it ran
// only, in the table and in JSON.
func TestStatsListsPushCheckpoints(t *testing.T) {
	base := seed(t)
	pushRows := func(st stats) map[int]checkpointStats {
		rows := map[int]checkpointStats{}
		for _, cp := range st.Checkpoints {
			if cp.Projector == push.Name {
				rows[cp.Partition] = cp
			}
		}
		return rows
	}
	if rows := pushRows(readStats(t, base)); len(rows) != 0 {
		t.Fatalf("push checkpoints before a push projector ran: %+v", rows)
	}
	addr, prefix := base[1], base[3] // seed's --redis-addr and --prefix
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: prefix, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The seeded messages share one partition: the push projector stands
	// at its first message there (lagging) and at the empty head of
	// another.
	ctx := context.Background()
	full, empty := -1, -1
	var first, last eventstore.Position
	for p := range 4 {
		recs, err := store.ReadPartition(ctx, p, eventstore.Position{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(recs) >= 2 && full < 0:
			full, first, last = p, recs[0].Position, recs[len(recs)-1].Position
		case len(recs) == 0 && empty < 0:
			empty = p
		}
	}
	if full < 0 || empty < 0 {
		t.Fatalf("seed left no partition with 2 entries (%d) or none empty (%d)", full, empty)
	}
	ckpt := redisckpt.New(rdb, prefix, push.Name)
	for p, to := range map[int]eventstore.Position{full: first, empty: {}} {
		if _, err := ckpt.Claim(ctx, p, 1); err != nil {
			t.Fatal(err)
		}
		if err := ckpt.Advance(ctx, p, 1, eventstore.Position{}, to, false); err != nil {
			t.Fatal(err)
		}
	}
	rows := pushRows(readStats(t, base))
	if len(rows) != 2 || rows[full].Position != first.String() || rows[full].LagMs != last.Ms-first.Ms ||
		rows[empty].Position != "0-0" || rows[empty].LagMs != 0 {
		t.Fatalf("push checkpoints %+v; want partition %d at %s (lag %d ms) and %d at 0-0", rows, full, first, last.Ms-first.Ms, empty)
	}
	out, _, err := ctl(t, append([]string{"stats"}, base...)...)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(push.Name, " ", full, " ", first, " ", last.Ms-first.Ms)
	if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.Join(strings.Fields(l), " ") == want }) {
		t.Fatalf("stats table without the push checkpoint of partition %d at %s:\n%s", full, first, out)
	}
}
