package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// seed writes a small chat through the real write path and returns the
// flags that address it.
func seed(t *testing.T) []string {
	t.Helper()
	rt := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	t.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc, err := command.New(store, command.Config{})
	if err != nil {
		t.Fatal(err)
	}
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
	return []string{"--redis-addr", rt.Addr, "--prefix", rt.Prefix, "--partitions", "4"}
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
	for _, cmd := range [][]string{{"tail", "--from-start", "--json", "--limit", "9"}, {"export"}, {"tap", "--group", "redact", "--limit", "9"}} {
		plain, _, err := ctl(t, append(cmd, base...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(plain), "\n") {
			checkLine(t, cmd[0], l)
		}
		if strings.Contains(plain, `"password_hash":"$h"`) || !strings.Contains(plain, `"password_hash":"[redacted]"`) {
			t.Errorf("%s printed a password hash:\n%s", cmd[0], plain)
		}
		if cmd[0] == "tap" {
			cmd[2] = "redact-with-secrets" // a new group reads the log again
		}
		secret, _, err := ctl(t, append(append(cmd, "--with-secrets"), base...)...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(secret, `"password_hash":"$h"`) || strings.Contains(secret, "[redacted]") {
			t.Errorf("%s --with-secrets did not print the password hash:\n%s", cmd[0], secret)
		}
	}
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
