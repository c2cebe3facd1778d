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
