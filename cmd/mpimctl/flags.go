package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/config"
	"github.com/mpim/mpim/internal/connect"
	"github.com/redis/go-redis/v9"
)

// common are the settings every command shares.
type common struct {
	redisAddr, redisPassword string
	redisCluster             bool
	redisDB                  int
	prefix                   string
	partitions               int
	mysql                    string
	configFile               string
	connectTimeout           time.Duration
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet("mpimctl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &common{}
	fs.StringVar(&c.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis address of the event log, or comma-separated seed nodes of a Redis Cluster")
	fs.BoolVar(&c.redisCluster, "redis-cluster", false, "--redis-addr names Redis Cluster nodes (implied by more than one address)")
	fs.StringVar(&c.redisPassword, "redis-password", "", "Redis password (set MPIM_REDIS_PASSWORD or the config file instead: command lines are visible to every local user)")
	fs.IntVar(&c.redisDB, "redis-db", 0, "Redis database number")
	fs.StringVar(&c.prefix, "prefix", "", "key prefix of the deployment")
	fs.IntVar(&c.partitions, "partitions", 16, "partition count of the deployment")
	fs.StringVar(&c.mysql, "mysql", "", "MySQL DSN of the read models, e.g. root@tcp(127.0.0.1:3306)/mpim (one with a password: set MPIM_MYSQL or the config file instead)")
	fs.StringVar(&c.configFile, "config", "", "JSON config file (keys are flag names)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 5*time.Second, "how long to retry connecting to Redis and MySQL")
	return fs, c
}

func parse(fs *flag.FlagSet, args []string) error {
	return config.Load(fs, args, "MPIM", "config", os.LookupEnv)
}

// openStore connects to Redis and opens the event store read-only: mpimctl
// appends nothing, and a prefix, address or database without a deployment
// is an error (eventstore.ErrNoDeployment) that creates no key there.
func (c *common) openStore(ctx context.Context) (*eventstore.Store, redis.UniversalClient, error) {
	addrs, err := connect.ParseRedisAddrs(c.redisAddr)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	rdb, err := connect.Redis(cctx, connect.RedisConfig{Addrs: addrs, Cluster: c.redisCluster, Password: c.redisPassword, DB: c.redisDB})
	if err != nil {
		return nil, nil, err
	}
	store, err := eventstore.Open(cctx, rdb, eventstore.Config{Prefix: c.prefix, Partitions: c.partitions, ReadOnly: true})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return store, rdb, nil
}

// closeStore closes what openStore opened.
func closeStore(store *eventstore.Store, rdb redis.UniversalClient) {
	store.Close()
	rdb.Close()
}

// withStore opens the event store, runs fn with it and closes it again.
func (c *common) withStore(ctx context.Context, fn func(*eventstore.Store) error) error {
	store, rdb, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer closeStore(store, rdb)
	return fn(store)
}

// withPartitions is withStore that also parses spec (--partition) against
// the store's partition count and hands fn the partitions it names.
func (c *common) withPartitions(ctx context.Context, spec string, fn func(*eventstore.Store, []int) error) error {
	return c.withStore(ctx, func(store *eventstore.Store) error {
		parts, err := partitionList(spec, store.Partitions())
		if err != nil {
			return err
		}
		return fn(store, parts)
	})
}

// openMySQL connects to the read-model database.
func (c *common) openMySQL(ctx context.Context) (*sql.DB, error) {
	if c.mysql == "" {
		return nil, fmt.Errorf("--mysql (or MPIM_MYSQL) is required")
	}
	cctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	return connect.MySQL(cctx, c.mysql)
}
