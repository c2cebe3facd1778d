package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/config"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors"
)

// projectorNames are the projectors mpimd knows, in start order.
var projectorNames = []string{"archive", "mysql", "cache", "inbox"}

// Config is mpimd's configuration.
type Config struct {
	// Role is what the process runs: "projector", "gateway" or "all".
	Role                     string
	RedisAddr, RedisPassword string
	RedisCluster             bool
	RedisDB                  int
	Prefix                   string
	Partitions               int
	MySQL                    string
	ZooKeeper                config.List
	ZKRoot                   string
	ZKSessionTimeout         time.Duration
	MemberID                 string
	HTTPAddr                 string
	Pprof                    bool
	Projectors               config.List
	BatchSize                int
	MaxAttempts              int
	TrimInterval             time.Duration
	TapMaxAge                time.Duration
	TapMaxBytes              int64
	DLQMaxAge                time.Duration
	InboxWindow              int
	InboxQuotaBytes          int64
	InboxNotifyBytes         int
	RouteCacheEntries        int
	RouteCacheBytes          int64
	SharedLogEntries         int
	SharedLogBytes           int64
	AckInterval              time.Duration
	FsyncAlways              bool
	WaitReplicas             int
	LogLevel, LogFormat      string
	ConfigFile               string
	Listen                   string
	PublicAddr               string
	GatewayID                string
	ClientRate               float64
	ClientBurst              int
	PasswordMemoryKiB        uint
	PasswordPasses           uint
	MaxGroupMembers          int
	MaxMute                  time.Duration
	LoginFailuresPerUser     int
	LoginFailuresPerAddr     int
	PasswordAttemptsPerAddr  int
	MaxUnauthPerAddr         int
	MaxUnauth                int
	HTTPReadHeaderTimeout    time.Duration
	HTTPIdleTimeout          time.Duration
	HTTPMaxHeaderBytes       int
	MaxConnsPerAddr          int
	TokenPruneInterval       time.Duration
	TokenPruneMax            int
	RedisMemoryLimit         float64
	RedisMemoryCheck         time.Duration
	MaxDevicesListed         int
	OutboxBytes              int
	OutboxHardBytes          int
	OutboxDrainTimeout       time.Duration
	HistoryPageBytes         int
	HeavyQueryCost           int
	HeavyQueriesInFlight     int
	PasswordKeyFile          string
	PasswordKey              string
	Push                     pushConfig
}

// runs reports whether the process runs part ("projector" or "gateway").
func (c *Config) runs(part string) bool { return c.Role == part || c.Role == "all" }

// needsMySQL reports whether the process uses MySQL: gateways read the read
// models and keep login tokens there; two projectors write it; the push
// projector reads profiles the cache does not hold.
func (c *Config) needsMySQL() bool {
	return c.runs("gateway") || slices.Contains(c.Projectors, "mysql") || slices.Contains(c.Projectors, "archive") ||
		slices.Contains(c.Projectors, "push")
}

func (c *Config) flags(fs *flag.FlagSet) {
	redisAddr, dsn := "127.0.0.1:6379", "root@tcp(127.0.0.1:3306)/mpim"
	if c.Role == "all" {
		redisAddr, dsn = Embedded, Embedded // try-it-out default: nothing to install
	}
	fs.StringVar(&c.RedisAddr, "redis-addr", redisAddr, "Redis address of the event log, inboxes and caches, or comma-separated seed nodes of a Redis Cluster (\"embedded\": an in-memory stand-in in this process, mpimd all only)")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, "--redis-addr names Redis Cluster nodes (implied by more than one address)")
	fs.StringVar(&c.RedisPassword, "redis-password", "", "Redis password (set MPIM_REDIS_PASSWORD or the config file instead: command lines are visible to every local user)")
	fs.IntVar(&c.RedisDB, "redis-db", 0, "Redis database number")
	fs.StringVar(&c.Prefix, "prefix", "", "key prefix of the deployment")
	fs.IntVar(&c.Partitions, "partitions", 16, "partition count (fixed when the deployment is created)")
	fs.StringVar(&c.MySQL, "mysql", dsn, "MySQL DSN of the read models and the archive (\"embedded\": an in-memory stand-in in this process, mpimd all only; one with a password: set MPIM_MYSQL or the config file instead)")
	fs.Var(&c.ZooKeeper, "zookeeper", "ZooKeeper servers, comma-separated (empty: this process owns every partition)")
	fs.StringVar(&c.ZKRoot, "zk-root", "/mpim", "ZooKeeper root path")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", 10*time.Second, "ZooKeeper session timeout")
	host, _ := os.Hostname()
	fs.StringVar(&c.MemberID, "member-id", fmt.Sprintf("%s-%d", host, os.Getpid()), "this process's name among the projector members")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz")
	fs.DurationVar(&c.HTTPReadHeaderTimeout, "http-read-header-timeout", 10*time.Second, "time a client has to send an HTTP request's headers (gateway and ops listeners)")
	fs.DurationVar(&c.HTTPIdleTimeout, "http-idle-timeout", 2*time.Minute, "an idle keep-alive HTTP connection is closed after this (gateway and ops listeners; WebSocket connections have their own heartbeat)")
	fs.IntVar(&c.HTTPMaxHeaderBytes, "http-max-header-bytes", 16<<10, "largest HTTP request header block; larger ones are answered 431 (gateway and ops listeners)")
	fs.IntVar(&c.MaxConnsPerAddr, "max-conns-per-address", 1000, "open TCP connections one client address (IPv6: one /64) may have to each listener; more are closed at once (-1: not limited; behind a reverse proxy every client has the proxy's address)")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve /debug/pprof/ on the http-addr (profiles cost CPU and show internals: keep the address private)")
	c.Projectors = append(config.List(nil), projectorNames...)
	fs.Var(&c.Projectors, "projectors", "projectors to run, comma-separated: "+strings.Join(projectorNames, ","))
	fs.IntVar(&c.BatchSize, "batch-size", 500, "events per projector batch")
	fs.IntVar(&c.MaxAttempts, "projector-max-attempts", projectors.DefaultMaxAttempts, "projector: times a batch is applied while it fails with errors that are not transient (data, constraint, decoding) before the event that fails is quarantined and its partition moves on")
	fs.DurationVar(&c.TrimInterval, "trim-interval", time.Minute, "how often to trim the log below every checkpoint (0: never)")
	fs.DurationVar(&c.TapMaxAge, "tap-max-age", 24*time.Hour, "trim: a tap group (consumer group on the log) holds back trimming until its oldest needed entry is this old (1m..720h); then it is cut loose and its next read fails with the range it lost")
	fs.Int64Var(&c.TapMaxBytes, "tap-max-bytes", 1<<30, "trim: tap groups hold back trimming of a partition stream until it uses this many bytes (1048576..68719476736); then the groups holding it back are cut loose")
	fs.DurationVar(&c.DLQMaxAge, "dlq-max-age", 168*time.Hour, "tap dead letters older than this are deleted at each trim (1m..8760h)")
	fs.IntVar(&c.InboxWindow, "inbox-window", 10000, "entries kept per user inbox")
	fs.Int64Var(&c.InboxQuotaBytes, "inbox-quota-bytes", 16<<20, "bytes kept per user inbox (65536..1073741824): beyond them the oldest entries are trimmed, as beyond --inbox-window")
	fs.IntVar(&c.InboxNotifyBytes, "inbox-notify-bytes", 64<<10, fmt.Sprintf("inbox projector: payload of one gateway's notification of a batch (1..%d): recipients' entries are carried while they fit, the others get their head only and the gateway reads their inbox back", inbox.MaxNotificationBytes))
	fs.IntVar(&c.RouteCacheEntries, "inbox-route-cache-entries", 100_000, "inbox projector: users whose presence routes are kept in memory (1..10000000); beyond it random entries are evicted and looked up again")
	fs.Int64Var(&c.RouteCacheBytes, "inbox-route-cache-bytes", 16<<20, "inbox projector: estimated memory of the route cache (4096..4294967296), evicting as --inbox-route-cache-entries does")
	fs.IntVar(&c.SharedLogEntries, "shared-log-entries", 4096, "projector: log entries the projectors of this process share in memory, per partition (1..1000000)")
	fs.Int64Var(&c.SharedLogBytes, "shared-log-bytes", 4<<20, "projector: stored bytes of the shared log entries, per partition (1024..1073741824; the decoded form takes a few times that)")
	fs.BoolVar(&c.FsyncAlways, "fsync-always", false, "refuse to start unless Redis runs with appendfsync always")
	fs.IntVar(&c.WaitReplicas, "wait-replicas", 0, "replicas each append must reach (WAIT) before it is acknowledged")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.ConfigFile, "config", "", "JSON config file (keys are flag names)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "gateway: address of the client endpoints /ws and /dispatch")
	fs.StringVar(&c.PublicAddr, "public-addr", "", "gateway: address clients are given by the dispatcher (default: the listen address)")
	fs.Float64Var(&c.ClientRate, "client-rate", 50, "gateway: requests per second one connection may make (token bucket; a user gets twice this over all connections)")
	fs.IntVar(&c.ClientBurst, "client-burst", 100, "gateway: burst of the per-connection token bucket (a user gets twice this)")
	fs.UintVar(&c.PasswordMemoryKiB, "password-memory-kib", 19<<10, "gateway: argon2id memory of new password hashes, in KiB (existing hashes keep theirs)")
	fs.UintVar(&c.PasswordPasses, "password-passes", 2, "gateway: argon2id passes of new password hashes")
	fs.IntVar(&c.LoginFailuresPerUser, "login-failures-per-user", 10, "gateway: failed logins one username may have from one client address in 15 minutes before each further attempt from there waits a delay (rate_limited) that starts at 1s and doubles per failure, up to 15 minutes")
	fs.IntVar(&c.LoginFailuresPerAddr, "login-failures-per-address", 100, "gateway: failed logins one client address may have over every username in 15 minutes (-1: not limited; behind a reverse proxy every client has the proxy's address)")
	fs.IntVar(&c.PasswordAttemptsPerAddr, "password-attempts-per-address", 120, "gateway: logins and registrations one client address may start per minute, refused (rate_limited) before they wait to hash a password (-1: not limited)")
	fs.IntVar(&c.MaxUnauthPerAddr, "max-unauthenticated-per-address", 64, "gateway: WebSocket connections from one client address (IPv6: one /64) that have not logged in yet; one more is refused with 429 (-1: not limited)")
	fs.IntVar(&c.MaxUnauth, "max-unauthenticated", 10000, "gateway: WebSocket connections that have not logged in yet, over every address; one more is refused with 503")
	fs.DurationVar(&c.TokenPruneInterval, "token-prune-interval", 10*time.Minute, "gateway: how often expired login tokens are deleted from MySQL (0: never)")
	fs.IntVar(&c.TokenPruneMax, "token-prune-max", 10000, "gateway: expired tokens deleted at most per round (the rest waits for the next round)")
	fs.IntVar(&c.MaxDevicesListed, "max-devices-listed", 100, "gateway: devices one listDevices answers with, the most recent logins first (1..5000)")
	fs.IntVar(&c.MaxGroupMembers, "max-group-members", domain.DefaultPolicy().MaxGroupMembers, "gateway: members one group may have, owner included (existing larger groups keep theirs but cannot grow)")
	fs.DurationVar(&c.MaxMute, "max-mute", domain.DefaultPolicy().MaxMute, "gateway: how far ahead a timed mute in a group may end (a mute until unmuted is always possible)")
	fs.Float64Var(&c.RedisMemoryLimit, "redis-memory-limit", 0.9, "gateway: share of Redis maxmemory (0.1..1) above which sends, registrations, new groups and friend requests are refused (overloaded) while reads and acks go on; Redis must run with maxmemory-policy noeviction")
	fs.DurationVar(&c.RedisMemoryCheck, "redis-memory-check-interval", time.Second, "gateway: how often Redis INFO memory is read for --redis-memory-limit (100ms..1m)")
	fs.IntVar(&c.OutboxBytes, "outbox-bytes", 4<<20, "gateway: byte budget of what is queued for one connection; over it the connection's requests are not read until it drains")
	fs.IntVar(&c.OutboxHardBytes, "outbox-hard-bytes", 16<<20, "gateway: the most one connection may have queued; a frame over it closes the connection (1008)")
	fs.DurationVar(&c.OutboxDrainTimeout, "outbox-drain-timeout", 30*time.Second, "gateway: a connection whose queue stays over outbox-bytes this long is closed (1008)")
	fs.DurationVar(&c.AckInterval, "ack-interval", 500*time.Millisecond, "gateway: how often acknowledged inbox cursors are stored (1ms..5s); a gateway crash may push again what was acknowledged within the last interval (de-duplicated by event id)")
	fs.IntVar(&c.HistoryPageBytes, "history-page-bytes", 256<<10, "gateway: bytes of messages in one history page; a page over it ends early with hasMore")
	fs.IntVar(&c.HeavyQueryCost, "heavy-query-cost", 10, "gateway: tokens a history or conversations request of the largest page (200) takes from the rate limits; smaller pages take proportionally fewer, other requests 1")
	fs.IntVar(&c.HeavyQueriesInFlight, "heavy-queries-in-flight", 4, "gateway: history and conversations requests one user may have being answered at once on a gateway; more are answered rate_limited")
	fs.StringVar(&c.PasswordKeyFile, "password-key-file", "", "gateway: file of the password keys (mode 600; one key a line, 32 random bytes as hex or base64: openssl rand -hex 32); the first seals password hashes before they enter the log, all open them. Required on real servers; every gateway needs the same file. See docs/deployment.md")
	fs.StringVar(&c.PasswordKey, "password-key", "", "gateway: the password keys as text, as in --password-key-file (set MPIM_PASSWORD_KEY or the config file instead: command lines are visible to every local user)")
	c.Push.flags(fs)
	fs.StringVar(&c.GatewayID, "gateway-id", fmt.Sprintf("gw-%s-%d", host, os.Getpid()), "gateway: this gateway's id (routes, registration)")
}

// maxGroupMembers bounds --max-group-members: every message to a group is
// written to each member's inbox, so a group's size is its fan-out.
const maxGroupMembers = 100_000

// Bounds of --max-mute: a mute's end stays far inside the times the read
// models store.
const minMaxMute, maxMaxMute = time.Minute, 10 * 365 * 24 * time.Hour

// minPasswordMemoryKiB is the least argon2id memory mpimd accepts. Below the
// OWASP minimum (7 MiB with 5 passes, or the same product of memory and
// passes) it starts with a warning: such settings are for test and
// benchmark set-ups that register many users.
const minPasswordMemoryKiB = 1 << 10

// redisConfig is the connection of --redis-addr, --redis-cluster,
// --redis-db and --redis-password, checked (connect.RedisConfig.Validate).
// The pool and metrics fields are left for the caller.
func (c *Config) redisConfig() (connect.RedisConfig, error) {
	addrs, err := connect.ParseRedisAddrs(c.RedisAddr)
	if err != nil {
		return connect.RedisConfig{}, err
	}
	rc := connect.RedisConfig{Addrs: addrs, Cluster: c.RedisCluster, Password: c.RedisPassword, DB: c.RedisDB}
	return rc, rc.Validate()
}

// weakPasswordHashing reports whether the argon2id settings are below the
// OWASP recommendations.
func (c *Config) weakPasswordHashing() bool {
	return c.PasswordMemoryKiB < 7<<10 || c.PasswordMemoryKiB*c.PasswordPasses < 5*(7<<10)
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.RedisAddr == "" {
		errs = append(errs, errors.New("redis-addr is empty"))
	} else if c.RedisAddr == Embedded {
		if c.RedisCluster {
			errs = append(errs, fmt.Errorf("redis-cluster: the %q stand-in is one server, not a cluster", Embedded))
		}
	} else if _, err := c.redisConfig(); err != nil {
		errs = append(errs, err)
	}
	if err := eventstore.CheckPrefix(c.Prefix); err != nil {
		errs = append(errs, err)
	}
	if c.Role != "all" && (c.RedisAddr == Embedded || c.MySQL == Embedded) {
		errs = append(errs, fmt.Errorf("redis-addr and mysql %q run in-process and serve only mpimd all: separate gateways and projectors must share real servers", Embedded))
	}
	if c.Partitions < 1 || c.Partitions > 4096 {
		errs = append(errs, fmt.Errorf("partitions must be 1..4096, got %d", c.Partitions))
	}
	for _, p := range c.Projectors {
		if !c.knownProjector(p) {
			errs = append(errs, fmt.Errorf("unknown projector %q (known: %s, and push with --push-webhook-url)", p, strings.Join(projectorNames, ",")))
		}
	}
	if len(c.Projectors) == 0 {
		errs = append(errs, errors.New("projectors: none selected"))
	}
	if c.MySQL == "" && c.needsMySQL() {
		errs = append(errs, errors.New("mysql DSN is required by gateways and by the mysql and archive projectors"))
	}
	if c.runs("gateway") {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
		}
		if c.ClientRate <= 0 || c.ClientBurst < 1 {
			errs = append(errs, fmt.Errorf("client-rate and client-burst must be positive, got %g and %d", c.ClientRate, c.ClientBurst))
		}
		if c.PasswordMemoryKiB < minPasswordMemoryKiB || c.PasswordMemoryKiB > 4<<20 || c.PasswordPasses < 1 || c.PasswordPasses > 64 {
			errs = append(errs, fmt.Errorf("password-memory-kib must be %d..%d and password-passes 1..64, got %d and %d",
				minPasswordMemoryKiB, 4<<20, c.PasswordMemoryKiB, c.PasswordPasses))
		}
		if c.LoginFailuresPerUser < 1 || (c.LoginFailuresPerAddr < 1 && c.LoginFailuresPerAddr != -1) {
			errs = append(errs, fmt.Errorf("login-failures-per-user must be positive and login-failures-per-address positive or -1, got %d and %d",
				c.LoginFailuresPerUser, c.LoginFailuresPerAddr))
		}
		if c.PasswordAttemptsPerAddr < 1 && c.PasswordAttemptsPerAddr != -1 {
			errs = append(errs, fmt.Errorf("password-attempts-per-address must be positive or -1 (not limited), got %d", c.PasswordAttemptsPerAddr))
		}
		if c.MaxUnauthPerAddr < 1 && c.MaxUnauthPerAddr != -1 {
			errs = append(errs, fmt.Errorf("max-unauthenticated-per-address must be positive or -1 (not limited), got %d", c.MaxUnauthPerAddr))
		}
		if c.MaxUnauth < 1 || c.MaxUnauth > 10_000_000 {
			errs = append(errs, fmt.Errorf("max-unauthenticated must be 1..10000000, got %d", c.MaxUnauth))
		}
		if c.TokenPruneInterval != 0 && (c.TokenPruneInterval < time.Second || c.TokenPruneInterval > 24*time.Hour) {
			errs = append(errs, fmt.Errorf("token-prune-interval must be 0 (never) or 1s..24h, got %s", c.TokenPruneInterval))
		}
		if c.TokenPruneMax < 1 || c.TokenPruneMax > 1_000_000 {
			errs = append(errs, fmt.Errorf("token-prune-max must be 1..1000000, got %d", c.TokenPruneMax))
		}
		if c.RedisMemoryLimit < 0.1 || c.RedisMemoryLimit > 1 {
			errs = append(errs, fmt.Errorf("redis-memory-limit must be 0.1..1, got %g", c.RedisMemoryLimit))
		}
		if c.RedisMemoryCheck < 100*time.Millisecond || c.RedisMemoryCheck > time.Minute {
			errs = append(errs, fmt.Errorf("redis-memory-check-interval must be 100ms..1m, got %s", c.RedisMemoryCheck))
		}
		if c.MaxDevicesListed < 1 || c.MaxDevicesListed > 5000 {
			errs = append(errs, fmt.Errorf("max-devices-listed must be 1..5000, got %d", c.MaxDevicesListed))
		}
		if c.OutboxBytes < 64<<10 || c.OutboxBytes > 1<<30 {
			errs = append(errs, fmt.Errorf("outbox-bytes must be 64KiB..1GiB (%d..%d), got %d", 64<<10, 1<<30, c.OutboxBytes))
		}
		if c.OutboxHardBytes <= c.OutboxBytes || c.OutboxHardBytes > 4<<30 {
			errs = append(errs, fmt.Errorf("outbox-hard-bytes must exceed outbox-bytes (%d) and be at most 4GiB, got %d", c.OutboxBytes, c.OutboxHardBytes))
		}
		if c.OutboxDrainTimeout < time.Second || c.OutboxDrainTimeout > 10*time.Minute {
			errs = append(errs, fmt.Errorf("outbox-drain-timeout must be 1s..10m, got %s", c.OutboxDrainTimeout))
		}
		if c.AckInterval < time.Millisecond || c.AckInterval > 5*time.Second {
			errs = append(errs, fmt.Errorf("ack-interval must be 1ms..5s, got %s", c.AckInterval))
		}
		if c.HistoryPageBytes < 4<<10 || c.HistoryPageBytes > 16<<20 {
			errs = append(errs, fmt.Errorf("history-page-bytes must be 4KiB..16MiB (%d..%d), got %d", 4<<10, 16<<20, c.HistoryPageBytes))
		}
		if c.HeavyQueryCost < 1 || c.HeavyQueryCost > c.ClientBurst {
			errs = append(errs, fmt.Errorf("heavy-query-cost must be 1..client-burst (%d), got %d", c.ClientBurst, c.HeavyQueryCost))
		}
		if c.HeavyQueriesInFlight < 1 || c.HeavyQueriesInFlight > 1024 {
			errs = append(errs, fmt.Errorf("heavy-queries-in-flight must be 1..1024, got %d", c.HeavyQueriesInFlight))
		}
		if c.MaxGroupMembers < 2 || c.MaxGroupMembers > maxGroupMembers {
			errs = append(errs, fmt.Errorf("max-group-members must be 2..%d, got %d", maxGroupMembers, c.MaxGroupMembers))
		}
		if c.MaxMute < minMaxMute || c.MaxMute > maxMaxMute {
			errs = append(errs, fmt.Errorf("max-mute must be %s..%s, got %s", minMaxMute, maxMaxMute, c.MaxMute))
		}
		if _, err := c.loadPasswordKeys(); err != nil {
			errs = append(errs, err)
		}
		if c.GatewayID == "" || len(c.GatewayID) > 64 || strings.ContainsAny(c.GatewayID, " {}/:") {
			errs = append(errs, fmt.Errorf("gateway-id %q: 1-64 characters without spaces, braces, slashes or colons", c.GatewayID))
		}
	}
	if c.HTTPReadHeaderTimeout < 100*time.Millisecond || c.HTTPReadHeaderTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("http-read-header-timeout must be 100ms..10m, got %s", c.HTTPReadHeaderTimeout))
	}
	if c.HTTPIdleTimeout < 100*time.Millisecond || c.HTTPIdleTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("http-idle-timeout must be 100ms..1h, got %s", c.HTTPIdleTimeout))
	}
	if c.HTTPMaxHeaderBytes < 4<<10 || c.HTTPMaxHeaderBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("http-max-header-bytes must be 4096..1048576, got %d", c.HTTPMaxHeaderBytes))
	}
	if (c.MaxConnsPerAddr < 1 && c.MaxConnsPerAddr != -1) || c.MaxConnsPerAddr > 10_000_000 {
		errs = append(errs, fmt.Errorf("max-conns-per-address must be 1..10000000 or -1 (not limited), got %d", c.MaxConnsPerAddr))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http-addr %q: %w", c.HTTPAddr, err))
	}
	if c.BatchSize < 1 || c.BatchSize > 100_000 {
		errs = append(errs, fmt.Errorf("batch-size must be 1..100000, got %d", c.BatchSize))
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 1000 {
		errs = append(errs, fmt.Errorf("projector-max-attempts must be 1..1000, got %d", c.MaxAttempts))
	}
	if c.TrimInterval < 0 {
		errs = append(errs, fmt.Errorf("trim-interval must not be negative, got %s", c.TrimInterval))
	}
	if c.DLQMaxAge < time.Minute || c.DLQMaxAge > 8760*time.Hour {
		errs = append(errs, fmt.Errorf("dlq-max-age must be 1m..8760h, got %s", c.DLQMaxAge))
	}
	if c.runs("projector") && c.TrimInterval > 0 && !c.runsEveryProjector() {
		errs = append(errs, errors.New("trim-interval needs every projector in this process, so no checkpoint is missed (set 0 here and trim from a process that runs them all)"))
	}
	errs = append(errs, c.Push.validate()...)
	if c.TapMaxAge < time.Minute || c.TapMaxAge > 720*time.Hour {
		errs = append(errs, fmt.Errorf("tap-max-age must be 1m..720h, got %s", c.TapMaxAge))
	}
	if c.TapMaxBytes < 1<<20 || c.TapMaxBytes > 64<<30 {
		errs = append(errs, fmt.Errorf("tap-max-bytes must be 1048576..68719476736 (1 MiB..64 GiB), got %d", c.TapMaxBytes))
	}
	if c.InboxWindow < 10 {
		errs = append(errs, fmt.Errorf("inbox-window must be at least 10, got %d", c.InboxWindow))
	}
	if c.InboxQuotaBytes < 64<<10 || c.InboxQuotaBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("inbox-quota-bytes must be 65536..1073741824, got %d", c.InboxQuotaBytes))
	}
	if c.InboxNotifyBytes < 1 || c.InboxNotifyBytes > inbox.MaxNotificationBytes {
		errs = append(errs, fmt.Errorf("inbox-notify-bytes must be 1..%d, got %d", inbox.MaxNotificationBytes, c.InboxNotifyBytes))
	}
	if c.RouteCacheEntries < 1 || c.RouteCacheEntries > 10_000_000 {
		errs = append(errs, fmt.Errorf("inbox-route-cache-entries must be 1..10000000, got %d", c.RouteCacheEntries))
	}
	if c.RouteCacheBytes < 4<<10 || c.RouteCacheBytes > 4<<30 {
		errs = append(errs, fmt.Errorf("inbox-route-cache-bytes must be 4096..4294967296 (4 KiB..4 GiB), got %d", c.RouteCacheBytes))
	}
	if c.SharedLogEntries < 1 || c.SharedLogEntries > 1_000_000 {
		errs = append(errs, fmt.Errorf("shared-log-entries must be 1..1000000, got %d", c.SharedLogEntries))
	}
	if c.SharedLogBytes < 1<<10 || c.SharedLogBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("shared-log-bytes must be 1024..1073741824 (1 KiB..1 GiB), got %d", c.SharedLogBytes))
	}
	if c.WaitReplicas < 0 {
		errs = append(errs, fmt.Errorf("wait-replicas must not be negative, got %d", c.WaitReplicas))
	}
	if len(c.ZooKeeper) > 0 && (c.ZKSessionTimeout < time.Second || !strings.HasPrefix(c.ZKRoot, "/")) {
		errs = append(errs, fmt.Errorf("zookeeper: session timeout must be >= 1s and root absolute, got %s and %q", c.ZKSessionTimeout, c.ZKRoot))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log-format must be text or json, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func (c *Config) logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
