package connect_test

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
)

func TestConnectsToRealServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rdb, err := connect.Redis(ctx, connect.RedisConfig{Addr: testsvc.Redis(t).Addr})
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
	if _, err := connect.Redis(ctx, connect.RedisConfig{Addr: "127.0.0.1:1"}); err == nil {
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
