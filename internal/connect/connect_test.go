package connect_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func TestConnectsToRealServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb, err := connect.Redis(ctx, connect.RedisConfig{Addrs: []string{testsvc.Redis(t).Addr}})
	if err != nil {
		t.Fatal(err)
	}
	rdb.Close()
	db, err := connect.MySQL(ctx, testsvc.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// Arguments are interpolated into the query text (one round trip); every
// awkward value must come back exactly as it went in.
func TestMySQLArgumentsRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := connect.MySQL(ctx, testsvc.MySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx) // a temporary table lives on one connection
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE TEMPORARY TABLE rt (b VARBINARY(64), s VARCHAR(64) CHARACTER SET utf8mb4, t DATETIME(3), n BIGINT UNSIGNED)"); err != nil {
		t.Fatal(err)
	}
	bin := []byte{0, '\'', '\\', '"', 0x1a, '\n', 0xff, 0x80}
	str := "it's \\ \"quoted\" -- ; DROP TABLE rt; 😀 \x00"
	at := time.Date(2026, 11, 27, 4, 5, 6, 789_000_000, time.UTC)
	const n = uint64(1) << 63
	if _, err := conn.ExecContext(ctx, "INSERT INTO rt VALUES (?, ?, ?, ?)", bin, str, at, n); err != nil {
		t.Fatal(err)
	}
	var gb []byte
	var gs string
	var gt time.Time
	var gn uint64
	if err := conn.QueryRowContext(ctx, "SELECT b, s, t, n FROM rt WHERE s = ? AND b = ?", str, bin).Scan(&gb, &gs, &gt, &gn); err != nil {
		t.Fatal(err)
	}
	if string(gb) != string(bin) || gs != str || !gt.Equal(at) || gn != n {
		t.Fatalf("round trip: %q %q %v %d, want %q %q %v %d", gb, gs, gt, gn, bin, str, at, n)
	}
}

func TestBadSettingsFailClearly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := connect.Redis(ctx, connect.RedisConfig{Addrs: []string{"127.0.0.1:1"}}); err == nil {
		t.Fatal("unreachable redis accepted")
	}
	if _, err := connect.Redis(ctx, connect.RedisConfig{}); err == nil {
		t.Fatal("empty redis address accepted")
	}
	for _, dsn := range []string{"not a dsn", "root@tcp(127.0.0.1:3306)/"} {
		if _, err := connect.MySQL(ctx, dsn); err == nil {
			t.Errorf("dsn %q accepted", dsn)
		}
	}
}

// The round-trip hook counts what goes over the wire: a pipeline of N
// commands is one round trip and N commands, a transaction adds MULTI and
// EXEC, a command alone is one of each, an empty pipeline nothing.
func TestRedisRoundTripsAreCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	reg := prometheus.NewRegistry()
	// One connection. Its handshake (HELLO, CLIENT SETINFO) is counted too,
	// and go-redis initialises the connection again on its first pipeline:
	// the steps are measured after a warm-up of each kind.
	rdb, err := connect.Redis(ctx, connect.RedisConfig{Addrs: []string{testsvc.Redis(t).Addr}, PoolSize: 1, Registerer: reg, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	counts := func() (trips, cmds float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetName() != "client" || m.GetLabel()[0].GetValue() != "test" {
					t.Fatalf("%s labels %v, want client=test", mf.GetName(), m.GetLabel())
				}
				switch mf.GetName() {
				case "mpim_redis_roundtrips_total":
					trips = m.GetCounter().GetValue()
				case "mpim_redis_commands_sent_total":
					cmds = m.GetCounter().GetValue()
				}
			}
		}
		return trips, cmds
	}
	step := func(what string, wantTrips, wantCmds float64, f func() error) {
		t.Helper()
		t0, c0 := counts()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		t1, c1 := counts()
		if t1-t0 != wantTrips || c1-c0 != wantCmds {
			t.Errorf("%s: %v round trips and %v commands, want %v and %v", what, t1-t0, c1-c0, wantTrips, wantCmds)
		}
	}
	key := "connect-test:" + t.Name()
	pipeline := func(p redis.Pipeliner) error { p.Incr(ctx, key+":n"); return nil }
	if _, err := rdb.Pipelined(ctx, pipeline); err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.TxPipelined(ctx, pipeline); err != nil {
		t.Fatal(err)
	}
	step("one command", 1, 1, func() error { return rdb.Set(ctx, key, "v", time.Minute).Err() })
	step("a pipeline of 5", 1, 5, func() error {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for range 5 {
				p.Incr(ctx, key+":n")
			}
			return nil
		})
		return err
	})
	step("a transaction of 3", 1, 5, func() error {
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, key+":n")
			p.Expire(ctx, key+":n", time.Minute)
			p.Del(ctx, key)
			return nil
		})
		return err
	})
	step("an empty pipeline", 0, 0, func() error { _, err := rdb.Pipelined(ctx, func(redis.Pipeliner) error { return nil }); return err })
	rdb.Del(ctx, key+":n")

	if _, err := connect.Redis(ctx, connect.RedisConfig{Addrs: []string{testsvc.Redis(t).Addr}, Registerer: reg, Name: "test"}); err == nil ||
		!strings.Contains(err.Error(), "already registered") {
		t.Errorf("the same name twice on one registry: %v", err)
	}
	if _, err := connect.Redis(ctx, connect.RedisConfig{Addrs: []string{testsvc.Redis(t).Addr}, Registerer: reg}); err == nil {
		t.Error("a registry without a client name accepted")
	}
}
