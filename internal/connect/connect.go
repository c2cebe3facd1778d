// Package connect opens mpim's connections to its backing services (Redis,
// MySQL) the same way in every binary: validated settings, bounded pools, and
// a start-up ping retried for a bounded time so processes started together
// with their servers come up cleanly.
package connect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// RedisConfig addresses one Redis server.
type RedisConfig struct {
	Addr     string
	Password string
	DB       int
	// PoolSize bounds connections (default 10 per CPU, go-redis' default).
	PoolSize int
}

// Redis returns a client once the server answers PING, retrying until ctx
// ends.
func Redis(ctx context.Context, cfg RedisConfig) (*redis.Client, error) {
	if cfg.Addr == "" {
		return nil, errors.New("connect: redis address is empty")
	}
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr, Password: cfg.Password, DB: cfg.DB, PoolSize: cfg.PoolSize})
	err := retry(ctx, func() error { return rdb.Ping(ctx).Err() })
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect: redis %s: %w", cfg.Addr, err)
	}
	return rdb, nil
}

// mysqlDialTimeout bounds one connection attempt when the DSN sets no
// timeout, so that an unreachable server is retried instead of hanging.
const mysqlDialTimeout = 5 * time.Second

// MySQL opens a pool on dsn (go-sql-driver form, e.g.
// "root@tcp(127.0.0.1:3306)/mpim") and returns once the server answers,
// retrying until ctx ends. It is the one opener of mpim's binaries and
// tests: parseTime with UTC, no multiStatements, a dial timeout unless the
// DSN sets one, client-side interpolation unless the DSN says otherwise,
// and a bounded pool that keeps one idle connection per worker.
func MySQL(ctx context.Context, dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("connect: mysql dsn: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("connect: mysql dsn names no database")
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.MultiStatements = false
	if cfg.Timeout == 0 {
		cfg.Timeout = mysqlDialTimeout
	}
	// Queries with arguments outside prepared statements (token checks,
	// read-model queries) take one round trip instead of three (prepare,
	// execute, close); safe with the utf8mb4 connections mpim uses. An
	// explicit interpolateParams in the DSN wins.
	if !strings.Contains(dsn, "interpolateParams=") {
		cfg.InterpolateParams = true
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: mysql: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	db.SetConnMaxLifetime(30 * time.Minute)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := retry(ctx, func() error { return db.PingContext(ctx) }); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect: mysql %s: %w", cfg.Addr, err)
	}
	return db, nil
}

// retry calls f until it succeeds or ctx ends, returning f's last error.
func retry(ctx context.Context, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
