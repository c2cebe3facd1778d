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
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// RedisConfig addresses one Redis server or a Redis Cluster.
type RedisConfig struct {
	// Addrs is the server's host:port, or with Cluster the seed nodes of a
	// cluster (any of its nodes; the client learns the others from them).
	// More than one address implies Cluster.
	Addrs []string
	// Cluster makes the client a cluster client (go-redis ClusterClient),
	// which routes each command to the master of its key's hash slot.
	Cluster  bool
	Password string
	// DB is the database number; a cluster has database 0 only.
	DB int
	// PoolSize bounds connections, per node on a cluster (default 10 per
	// CPU, go-redis' default).
	PoolSize int
	// Registerer, when set, receives the client's round-trip and command
	// counters (mpim_redis_roundtrips_total, mpim_redis_commands_sent_total)
	// labelled client=Name; nil counts nothing. On a cluster they count
	// what each node connection sends, redirects included.
	Registerer prometheus.Registerer
	// Name labels the counters; required with a Registerer.
	Name string
}

// cluster reports whether the settings ask for a cluster client.
func (cfg RedisConfig) cluster() bool { return cfg.Cluster || len(cfg.Addrs) > 1 }

// Validate reports every problem of the settings at once: no address, an
// address that is not host:port with a port in 1..65535, a database number
// outside 0..15, a database other than 0 on a cluster, a negative pool, a
// registry without a name.
func (cfg RedisConfig) Validate() error {
	var errs []error
	if len(cfg.Addrs) == 0 {
		errs = append(errs, errors.New("connect: redis address is empty"))
	}
	for _, a := range cfg.Addrs {
		if err := checkAddr(a); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.DB < 0 || cfg.DB > 15 {
		errs = append(errs, fmt.Errorf("connect: redis database must be 0..15, got %d", cfg.DB))
	} else if cfg.DB != 0 && cfg.cluster() {
		errs = append(errs, fmt.Errorf("connect: a redis cluster has database 0 only, got %d", cfg.DB))
	}
	if cfg.PoolSize < 0 {
		errs = append(errs, fmt.Errorf("connect: redis pool size must not be negative, got %d", cfg.PoolSize))
	}
	if cfg.Registerer != nil && cfg.Name == "" {
		errs = append(errs, errors.New("connect: redis client with a metrics registry needs a name"))
	}
	return errors.Join(errs...)
}

// MaxRedisAddrs bounds the addresses of ParseRedisAddrs.
const MaxRedisAddrs = 1000

// ParseRedisAddrs splits a comma-separated address list (the form of
// --redis-addr) and checks each element: host:port, port 1..65535, no empty
// element, at most MaxRedisAddrs.
func ParseRedisAddrs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("connect: redis address is empty")
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxRedisAddrs {
		return nil, fmt.Errorf("connect: %d redis addresses, at most %d", len(parts), MaxRedisAddrs)
	}
	var errs []error
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
		if parts[i] == "" {
			errs = append(errs, fmt.Errorf("connect: redis address list %q: element %d is empty", s, i+1))
		} else if err := checkAddr(parts[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return parts, errors.Join(errs...)
}

// checkAddr checks that a is host:port with a non-empty host and a port in
// 1..65535.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("connect: redis address %q: %w", a, err)
	}
	if host == "" {
		return fmt.Errorf("connect: redis address %q has no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("connect: redis address %q: port must be 1..65535", a)
	}
	return nil
}

// Redis returns a client once the server (every node the cluster client
// reaches first) answers PING, retrying until ctx ends: a *redis.Client for
// one server, a *redis.ClusterClient for a cluster, which reloads its slot
// map as soon as a node fails (see slotMapRefresh), so that it follows a
// failover within a moment of the cluster's. With a Registerer, the
// start-up PING is the first round trip counted; registering the same Name
// twice on one registry is an error.
func Redis(ctx context.Context, cfg RedisConfig) (redis.UniversalClient, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var hook redis.Hook
	if cfg.Registerer != nil {
		h, err := newRoundTrips(cfg.Registerer, cfg.Name)
		if err != nil {
			return nil, err
		}
		hook = h
	}
	var rdb redis.UniversalClient
	if cfg.cluster() {
		refresh := &slotMapRefresh{}
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.Addrs, Password: cfg.Password, PoolSize: cfg.PoolSize,
			// Each node's client counts what goes over its connections and
			// has a failed node's slots looked up again.
			NewClient: func(opt *redis.Options) *redis.Client {
				c := redis.NewClient(opt)
				c.AddHook(refresh)
				if hook != nil {
					c.AddHook(hook)
				}
				return c
			}})
		refresh.cc.Store(cc)
		rdb = cc
	} else {
		c := redis.NewClient(&redis.Options{Addr: cfg.Addrs[0], Password: cfg.Password, DB: cfg.DB, PoolSize: cfg.PoolSize})
		if hook != nil {
			c.AddHook(hook)
		}
		rdb = c
	}
	err := retry(ctx, func() error { return rdb.Ping(ctx).Err() })
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect: redis %s: %w", strings.Join(cfg.Addrs, ","), err)
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
