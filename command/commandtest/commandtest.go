// Package commandtest runs the real write side for tests: a command service
// on an event store on the test Redis of internal/testsvc, under a key prefix
// of the test's own. It is imported by tests only.
package commandtest

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

// PasswordHash is a well-formed argon2id hash that test users register with.
const PasswordHash = "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA"

// Options shape an Env; the zero value is the store's and the service's
// defaults with a Redis pool of 32 connections.
type Options struct {
	// Partitions is the event store's partition count (default: the store's).
	Partitions int
	// PoolSize is the Redis client's pool size (default 32).
	PoolSize int
	// Now is the command service's clock (default: the service's).
	Now func() time.Time
	// Cluster runs on the test Redis Cluster (testsvc.RedisCluster) with a
	// cluster client; Addr is then its first node's.
	Cluster bool
}

// Env is the write side of one test. Its client and store are closed when
// the test ends; its keys are deleted by testsvc.
type Env struct {
	RDB    redis.UniversalClient
	Addr   string // the address of the Redis RDB is a client of
	Prefix string
	Store  *eventstore.Store
	Svc    *command.Service
}

// New opens the write side for tb. It fails tb if Redis does not answer or
// the store or the service does not open.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	if opts.PoolSize == 0 {
		opts.PoolSize = 32
	}
	var (
		rdb          redis.UniversalClient
		addr, prefix string
	)
	if opts.Cluster {
		ct := testsvc.RedisCluster(tb)
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs, PoolSize: opts.PoolSize})
		addr, prefix = ct.Addrs[0], ct.Prefix
	} else {
		rt := testsvc.Redis(tb)
		rdb = redis.NewClient(&redis.Options{Addr: rt.Addr, PoolSize: opts.PoolSize})
		addr, prefix = rt.Addr, rt.Prefix
	}
	tb.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(context.Background(), rdb, eventstore.Config{Prefix: prefix, Partitions: opts.Partitions})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	svc, err := command.New(store, command.Config{Now: opts.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return &Env{RDB: rdb, Addr: addr, Prefix: prefix, Store: store, Svc: svc}
}

// Register registers the user name (shown as display) with PasswordHash
// and returns it as an actor on device "dev1". It fails tb if svc refuses.
func Register(tb testing.TB, svc *command.Service, name, display string) command.Actor {
	tb.Helper()
	id, err := svc.Register(context.Background(), name, PasswordHash, display, "")
	if err != nil {
		tb.Fatalf("register %s: %v", name, err)
	}
	return command.Actor{User: id, Device: "dev1"}
}
