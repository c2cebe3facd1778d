// Package testsvc connects tests to the real servers mpim runs on: Redis 7,
// MariaDB/MySQL and ZooKeeper 3.8.
//
// Each helper takes the calling test, checks that its server answers and
// hands out an isolated namespace on it: a key prefix on Redis, a fresh
// database on MySQL, a path prefix on ZooKeeper. A server that does not answer
// fails the test at once with a hint to run scripts/services.sh, which
// installs and starts all three on loopback; tests are never skipped, so a
// green run always means the real servers were exercised.
//
// Addresses default to the loopback ports services.sh uses and can be
// overridden, for CI or a shared machine, by environment variables:
//
//	MPIM_TEST_REDIS  host:port                  (default 127.0.0.1:6379)
//	MPIM_TEST_MYSQL  go-sql-driver/mysql DSN     (default root@tcp(127.0.0.1:3306)/)
//	MPIM_TEST_ZK     comma-separated host:port   (default 127.0.0.1:2181)
//	MPIM_TEST_REDIS_CLUSTER  every node's host:port, comma-separated (default:
//	                 a cluster of three masters and three replicas that the
//	                 test binary starts itself; scripts/redis-cluster.sh
//	                 starts one by hand)
//
// Beside the servers it holds the few pieces such tests share: FreeAddr, a
// port for a server the test starts itself; Eventually, waiting for an
// effect that arrives asynchronously; DeleteZooKeeperTree, removing a
// namespace the test filled; BuildBinary, the binary of a process test.
//
// This package is test support: it reads the environment, which production
// packages must not do. All helpers are safe to call from parallel tests.
package testsvc

import (
	"crypto/rand"
	"os"
	"strings"
	"time"
)

// dialTimeout bounds every reachability check, so an unreachable server
// fails a test within seconds instead of hanging it.
const dialTimeout = 5 * time.Second

// hint is appended to every "server unreachable" failure.
const hint = "run scripts/services.sh to install and start Redis, MariaDB and ZooKeeper on loopback"

// env returns the environment variable key, or def when it is unset or empty.
func env(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

// randomID returns n (at most 26) random lower-case base32 characters: safe
// in Redis keys, MySQL identifiers and ZooKeeper paths.
func randomID(n int) string {
	return strings.ToLower(rand.Text()[:n])
}
