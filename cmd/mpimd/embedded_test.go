package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// The embedded stand-ins refuse clients without the process's random
// credentials, and the start-up banner does not show them.
func TestEmbeddedStandInsRequireCredentials(t *testing.T) {
	m := &Main{Stdout: io.Discard, Stderr: io.Discard}
	if err := m.ParseFlags("all", nil); err != nil {
		t.Fatal(err)
	}
	c := &m.Config
	var banner strings.Builder
	stop, err := c.startEmbedded(&banner, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := mysql.ParseDSN(c.MySQL)
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisPassword == "" || dsn.Passwd == "" || strings.Contains(banner.String(), c.RedisPassword) || strings.Contains(banner.String(), dsn.Passwd) {
		t.Fatalf("credentials missing or printed:\n%s", banner.String())
	}

	for name, pw := range map[string]string{"no password": "", "wrong password": "wrong"} {
		rdb := redis.NewClient(&redis.Options{Addr: c.RedisAddr, Password: pw, MaxRetries: -1})
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err == nil {
			t.Errorf("redis with %s: accepted", name)
		}
		rdb.Close()
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.RedisAddr, Password: c.RedisPassword})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("redis with the credentials: %v", err)
	}

	for name, cred := range map[string][2]string{"root without a password": {"root", ""}, "the user with a wrong password": {dsn.User, "wrong"},
		"another user with the password": {"root", dsn.Passwd}} {
		bad := *dsn
		bad.User, bad.Passwd = cred[0], cred[1]
		db, err := sql.Open("mysql", bad.FormatDSN())
		if err != nil {
			t.Fatal(err)
		}
		if err := db.PingContext(ctx); err == nil {
			t.Errorf("mysql as %s: accepted", name)
		}
		db.Close()
	}
	db, err := sql.Open("mysql", c.MySQL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("mysql with the credentials: %v", err)
	}
}
