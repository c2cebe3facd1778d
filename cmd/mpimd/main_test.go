package main

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"net/http"
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

// deployment is a test deployment: its own key prefix and database.
type deployment struct {
	redisAddr, prefix, dsn string
}

func newDeployment(t *testing.T) deployment {
	rt := testsvc.Redis(t)
	return deployment{redisAddr: rt.Addr, prefix: rt.Prefix, dsn: testsvc.MySQL(t)}
}

func (d deployment) args(extra ...string) []string {
	return append([]string{"--redis-addr", d.redisAddr, "--prefix", d.prefix, "--mysql", d.dsn, "--partitions", "4",
		"--http-addr", "127.0.0.1:0", "--batch-size", "100", "--log-level", "warn"}, extra...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsvc.Eventually(t, 60*time.Second, what, cond)
}

func TestProjectorProcessProjectsAndShutsDown(t *testing.T) {
	d := newDeployment(t)
	var logs bytes.Buffer
	m := &Main{Stdout: io.Discard, Stderr: &logs, ready: make(chan struct{})}
	if err := m.ParseFlags("projector", d.args("--trim-interval", "200ms")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-m.ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs.String())
	}

	rdb := redis.NewClient(&redis.Options{Addr: d.redisAddr})
	defer rdb.Close()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: d.prefix, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	svc, _ := command.New(store, command.Config{})
	a, err := svc.Register(ctx, "pat", "$h", "Pat", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := svc.Register(ctx, "sam", "$h", "Sam", "")
	for range 20 {
		if _, err := svc.Send(ctx, command.Actor{User: a}, domain.SendMessage{Conversation: domain.DirectConversation(a, b), Kind: domain.KindText, Text: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	db, err := connect.MySQL(ctx, d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil && err != sql.ErrNoRows {
			return -1
		}
		return n
	}
	waitUntil(t, "read model and archive", func() bool {
		return count("SELECT COUNT(*) FROM messages") == 20 && count("SELECT COUNT(*) FROM users") == 2 && count("SELECT (SELECT COUNT(*) FROM event_archive) + (SELECT COALESCE(SUM(events), 0) FROM event_archive_segments)") == 24
	})
	// The trim loop removes what every projector processed.
	waitUntil(t, "trim", func() bool {
		var total int64
		for p := range 4 {
			info, _ := store.Info(ctx, p)
			total += info.Length
		}
		return total < 24
	})
	// The dead-letter trim, beside it, deletes dead letters older than
	// --dlq-max-age (168h): one from 1970 goes.
	if _, err := store.NewTap(ctx, eventstore.TapConfig{Group: "old", Consumer: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: d.prefix + "{p0}:dlq:old", ID: "1000-0", Values: map[string]any{"from": "1-0"}}).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "dead-letter trim", func() bool { return rdb.XLen(ctx, d.prefix+"{p0}:dlq:old").Val() == 0 })
	for path, wants := range map[string][]string{"/healthz": {"ok"}, "/readyz": {"ready"},
		"/metrics": {"mpim_projector_events_total", `mpim_redis_roundtrips_total{client="projector"}`, `mpim_redis_commands_sent_total{client="projector"}`}} {
		resp, err := http.Get("http://" + m.opsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range wants {
			if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
				t.Errorf("%s: %d, no %q in %.200q", path, resp.StatusCode, want, body)
			}
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no graceful shutdown")
	}
}

func TestBadConfigurationIsReportedAtOnce(t *testing.T) {
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	err := m.ParseFlags("projector", []string{"--partitions", "0", "--projectors", "mysql,bogus", "--http-addr", "nope",
		"--batch-size", "0", "--log-level", "loud", "--log-format", "xml", "--inbox-window", "1", "--inbox-quota-bytes", "100", "--mysql", "", "--projector-max-attempts", "0", "--dlq-max-age", "30s",
		"--tap-max-age", "30s", "--tap-max-bytes", "1000"})
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{"partitions", "bogus", "http-addr", "batch-size", "log-level", "log-format", "inbox-window", "inbox-quota-bytes", "mysql DSN", "trim-interval", "projector-max-attempts", "dlq-max-age",
		"tap-max-age must be 1m..720h, got 30s", "tap-max-bytes must be 1048576..68719476736 (1 MiB..64 GiB), got 1000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	if err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).ParseFlags("projector", []string{"--dlq-max-age", "9000h"}); err == nil || !strings.Contains(err.Error(), "dlq-max-age must be 1m..8760h") {
		t.Fatalf("dlq-max-age beyond a year: %v", err)
	}
	// Each of the projector's memory bounds alone is refused, naming itself.
	for _, bad := range [][]string{{"--inbox-notify-bytes", "0"}, {"--inbox-notify-bytes", "1048577"},
		{"--inbox-route-cache-entries", "0"}, {"--inbox-route-cache-entries", "10000001"},
		{"--inbox-route-cache-bytes", "4095"}, {"--inbox-route-cache-bytes", "4294967297"},
		{"--shared-log-entries", "0"}, {"--shared-log-entries", "1000001"},
		{"--shared-log-bytes", "1023"}, {"--shared-log-bytes", "1073741825"}} {
		err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).ParseFlags("projector", bad)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "--")+" must be") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	// Values within the bounds are taken.
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("all", []string{"--ack-interval", "20ms", "--inbox-notify-bytes", "1024", "--inbox-route-cache-entries", "5",
		"--inbox-route-cache-bytes", "4096", "--shared-log-entries", "7", "--shared-log-bytes", "2048"}); err != nil {
		t.Fatal(err)
	}
	if c := m.Config; c.AckInterval != 20*time.Millisecond || c.InboxNotifyBytes != 1024 || c.RouteCacheEntries != 5 ||
		c.RouteCacheBytes != 4096 || c.SharedLogEntries != 7 || c.SharedLogBytes != 2048 {
		t.Fatalf("parsed %+v", c)
	}
	// ... and reach the parts they configure.
	if dc, ic, sc := m.Config.deliveryConfig(), m.Config.inboxConfig(), m.Config.sharedLogConfig(); dc.AckInterval != 20*time.Millisecond ||
		ic.NotifyBytes != 1024 || ic.RouteCacheEntries != 5 || ic.RouteCacheBytes != 4096 || sc.MaxEntries != 7 || sc.MaxBytes != 2048 {
		t.Fatalf("delivery %+v, inbox %+v, shared log %+v", dc, ic, sc)
	}
	if err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("missing subcommand accepted")
	}
	t.Setenv("MPIM_PARTITIONS", "many")
	if err := (&Main{Stdout: io.Discard, Stderr: io.Discard}).ParseFlags("projector", nil); err == nil || !strings.Contains(err.Error(), "MPIM_PARTITIONS") {
		t.Fatalf("bad environment value: %v", err)
	}
}

func TestPartitionMismatchIsAStartupError(t *testing.T) {
	d := newDeployment(t)
	rdb := redis.NewClient(&redis.Options{Addr: d.redisAddr})
	defer rdb.Close()
	s, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: d.prefix, Partitions: 8})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("projector", d.args()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "partition count mismatch") {
		t.Fatalf("run with 4 partitions on an 8-partition deployment: %v", err)
	}
}

func TestGatewaySettingsAreValidated(t *testing.T) {
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	err := m.ParseFlags("gateway", []string{"--listen", "nowhere", "--gateway-id", "bad id/with:stuff", "--mysql", "", "--client-rate", "0", "--password-memory-kib", "10", "--max-group-members", "1", "--login-failures-per-address", "0", "--max-mute", "0s"})
	if err == nil {
		t.Fatal("bad gateway settings accepted")
	}
	for _, want := range []string{"listen", "gateway-id", "mysql DSN", "client-rate", "password-memory-kib", "max-group-members", "login-failures-per-address", "max-mute"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	// Each of the settings below alone is refused, naming itself.
	for _, bad := range [][]string{{"--password-passes", "0"}, {"--password-memory-kib", "5000000"},
		{"--login-failures-per-user", "0"}, {"--login-failures-per-address", "-2"}, {"--max-group-members", "100001"}, {"--max-mute", "87601h"},
		{"--password-attempts-per-address", "0"}, {"--max-unauthenticated-per-address", "0"}, {"--max-unauthenticated", "0"},
		{"--http-idle-timeout", "0s"}, {"--http-read-header-timeout", "11m"}, {"--http-max-header-bytes", "100"}, {"--max-conns-per-address", "0"},
		{"--token-prune-interval", "10ms"}, {"--token-prune-interval", "48h"}, {"--token-prune-max", "0"},
		{"--redis-memory-limit", "0.05"}, {"--redis-memory-limit", "1.5"}, {"--redis-memory-check-interval", "1ms"},
		{"--max-devices-listed", "0"}, {"--max-devices-listed", "5001"},
		{"--outbox-bytes", "1000"}, {"--outbox-hard-bytes", "1048576"}, {"--outbox-drain-timeout", "0s"},
		{"--history-page-bytes", "100"}, {"--heavy-query-cost", "101"}, {"--heavy-queries-in-flight", "0"},
		{"--ack-interval", "0s"}, {"--ack-interval", "500us"}, {"--ack-interval", "6s"}} {
		m = &Main{Stdout: io.Discard, Stderr: io.Discard}
		err := m.ParseFlags("gateway", bad)
		if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(bad[0], "--")) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	// A gateway does not trim: the projector-only trim rule does not apply.
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("gateway", []string{"--projectors", "cache"}); err != nil {
		t.Fatalf("gateway with a projector subset: %v", err)
	}
}

// `mpimd all` defaults to the embedded stand-ins; separate gateways and
// projectors cannot share an in-process server, so they refuse it.
func TestEmbeddedIsTheDefaultOfAllOnly(t *testing.T) {
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("all", nil); err != nil {
		t.Fatal(err)
	}
	if r, s := m.Config.embedded(); !r || !s {
		t.Fatalf("mpimd all with no settings: redis %q, mysql %q; want both %q", m.Config.RedisAddr, m.Config.MySQL, Embedded)
	}
	m = &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("gateway", nil); err != nil || m.Config.RedisAddr == Embedded || m.Config.MySQL == Embedded {
		t.Fatalf("mpimd gateway defaults: %q %q %v", m.Config.RedisAddr, m.Config.MySQL, err)
	}
	for _, role := range []string{"gateway", "projector"} {
		for _, flag := range []string{"--redis-addr", "--mysql"} {
			m := &Main{Stdout: io.Discard, Stderr: io.Discard}
			err := m.ParseFlags(role, []string{flag, Embedded})
			if err == nil || !strings.Contains(err.Error(), "serve only mpimd all") {
				t.Errorf("mpimd %s %s embedded: %v", role, flag, err)
			}
		}
	}
}
