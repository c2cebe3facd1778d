package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/mpim/mpim/gateway/accounts"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/sealed"
	"golang.org/x/time/rate"
)

// Config configures a Server. The zero value of each field takes the default
// documented next to it, except GatewayID and PublicAddr, which are required.
type Config struct {
	// GatewayID names this gateway (ZooKeeper registration, presence routes):
	// 1 to 64 ASCII letters, digits, '.', '_' and '-'.
	GatewayID string
	// PublicAddr is where clients reach this gateway (host:port or a URL);
	// the dispatcher hands it out.
	PublicAddr string
	// Prefix is the deployment's Redis key prefix (the event store's), under
	// which the cache read models live.
	Prefix string

	// MaxFrameBytes bounds one client frame (default 64 KiB); a larger one
	// closes the connection with status 1009.
	MaxFrameBytes int
	// SendQueue bounds the frames queued for one connection (default 1024).
	// A client that does not read fast enough to keep it from filling is
	// disconnected.
	SendQueue int
	// ConnRate and ConnBurst are the token bucket of one connection's
	// requests (default 50/s, burst 100).
	ConnRate  rate.Limit
	ConnBurst int
	// UserRate and UserBurst are the token bucket of one user's requests
	// over all of the user's connections to this gateway (default 100/s,
	// burst 200).
	UserRate  rate.Limit
	UserBurst int
	// HeavyQueryCost is what a history or conversations request of the
	// largest page (200) takes from both token buckets (default 10, or
	// the smaller burst if that is less); a
	// smaller page costs proportionally less, at least 1, and any other
	// request costs 1. It must not exceed either burst.
	HeavyQueryCost int
	// HeavyInFlightPerUser bounds the history and conversations requests
	// one user has in flight over all of the user's connections to this
	// gateway (default 4); one more is answered rate_limited.
	HeavyInFlightPerUser int

	// OutboxBytes is the byte budget of what is queued for one connection
	// and not written yet (default 4 MiB): while the queue holds more, the
	// connection's requests are not read.
	OutboxBytes int
	// OutboxHardBytes is the most one connection may have queued (default
	// 4 × OutboxBytes): a frame that would take the queue over it closes
	// the connection with 1008. It must exceed OutboxBytes.
	OutboxHardBytes int
	// OutboxDrainTimeout closes (1008) a connection whose queue stays over
	// OutboxBytes this long while its requests wait (default 30s).
	OutboxDrainTimeout time.Duration
	// HistoryPageBytes caps the messages of one history page (default 256
	// KiB): a page that would exceed it ends early with hasMore. A page
	// holds at least one message.
	HistoryPageBytes int

	// HeartbeatInterval is how often clients are told to send something
	// when idle (default 30s).
	HeartbeatInterval time.Duration
	// IdleTimeout closes a connection that sent no frame for this long
	// (default 3 × HeartbeatInterval). It must exceed HeartbeatInterval.
	IdleTimeout time.Duration
	// AuthTimeout closes a connection that is not authenticated this long
	// after it was opened or logged out (default 15s).
	AuthTimeout time.Duration
	// RequestTimeout bounds the handling of one request (default 10s);
	// acknowledgements, which wait only for the hub's batched cursor
	// write, are bounded by the hub's own Redis timeout instead.
	RequestTimeout time.Duration
	// WriteTimeout bounds the writing of one frame (default 10s); a client
	// that does not take it in time is disconnected.
	WriteTimeout time.Duration
	// DrainGrace is how long Shutdown lets clients leave by themselves after
	// telling them to go, before it closes their connections (default 5s).
	DrainGrace time.Duration
	// ReconnectJitter spreads the reconnects Shutdown asks for: each client
	// is told to wait a random time below it (default 2s).
	ReconnectJitter time.Duration
	// LoadInterval is how often the load is reported to Deps.Load (default 5s).
	LoadInterval time.Duration

	// TokenTTL is the lifetime of a login token (default 30 days).
	TokenTTL time.Duration
	// TokenPruneInterval is how often this gateway deletes expired tokens
	// from auth_tokens (default 10m; negative: never). Every gateway prunes;
	// rounds of several gateways overlap harmlessly.
	TokenPruneInterval time.Duration
	// TokenPruneMax bounds the rows one pruning round deletes (default
	// 10000), in statements of at most 1000 rows, so a round never holds
	// locks or the database for long; what is left goes in the next round.
	TokenPruneMax int
	// LoginFailuresPerUser is how many failed logins one username may have
	// from one client address (clientaddr.Key) within LoginFailureWindow before
	// each further attempt from there waits a delay that starts at one
	// second and doubles with every failure, up to LoginFailureWindow
	// (default 10); meanwhile it is refused with rate_limited. Logins of
	// the username from other addresses are not delayed. A successful
	// login clears the count. Counted in Redis, so every gateway of the
	// deployment shares it.
	LoginFailuresPerUser int
	// LoginFailuresPerAddr is how many failed logins one client address
	// (the connection's remote host, IPv6 by /64: behind a reverse proxy,
	// the proxy's) may have over every username within LoginFailureWindow
	// (default 100; -1: not limited).
	LoginFailuresPerAddr int
	// PasswordAttemptsPerAddr is how many logins and registrations (each
	// hashes a password) one client address may start per minute before
	// they are refused with rate_limited, checked before they wait for a
	// hashing slot (default 120; -1: not limited).
	PasswordAttemptsPerAddr int
	// LoginFailureWindow is how long a failed login counts (default 15m).
	LoginFailureWindow time.Duration
	// MaxUnauthPerAddr bounds the connections from one client address
	// (clientaddr.Key) that have not logged in or resumed yet (default 64; -1:
	// not limited); the handshake of one more is answered 429.
	MaxUnauthPerAddr int
	// MaxUnauth bounds the connections that have not logged in or resumed
	// yet, over every address (default 10000); the handshake of one more
	// is answered 503.
	MaxUnauth int
	// Argon2 are the password hashing parameters of new hashes (default
	// argon2id with 19 MiB, 2 passes, 1 lane: the OWASP recommendation).
	// Existing hashes are verified with the parameters they record.
	Argon2 Argon2Params
	// MaxConcurrentHashes bounds the password hashes computed at once
	// (default: the number of CPUs), so logins cannot starve the gateway.
	MaxConcurrentHashes int
	// PasswordKeys are the deployment's password keys (required): every
	// password hash is sealed with the first before it enters the log, bound
	// to its user, and opened with whichever key sealed it at login; hashes
	// in the clear from before sealing still verify. Every gateway of a
	// deployment needs the same keys.
	PasswordKeys *sealed.Keys
	// MaxDevicesListed bounds the devices one listDevices answers with,
	// the most recent logins first (default 100, at most 5000).
	MaxDevicesListed int

	// OriginPatterns lists the host patterns (path.Match syntax) of the
	// browser origins allowed besides the gateway's own host. Clients that
	// send no Origin header (non-browsers) are always allowed.
	OriginPatterns []string

	// MemoryLimitFraction is the share of Redis's maxmemory above which new
	// content (sends, registrations, groups, friend requests) is refused
	// with "overloaded" while reads and acks go on (default 0.9; 0.1..1).
	// Redis must run with maxmemory-policy noeviction; with no maxmemory
	// nothing is refused. See memoryGuard.
	MemoryLimitFraction float64
	// MemoryCheckInterval is how often Redis's INFO memory is read
	// (default 1s).
	MemoryCheckInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// LoginDelayClock is the clock of the delays after failed logins. nil
	// (the default) uses Redis's clock, which every gateway of a deployment
	// shares whatever their own clocks say; tests set a fake clock (then
	// every gateway of the deployment must use the same one).
	LoginDelayClock func() time.Time
}

// Argon2Params are the parameters of argon2id password hashes.
type Argon2Params = accounts.Argon2Params

// accounts returns the settings of the accounts service.
func (c *Config) accounts() accounts.Config {
	return accounts.Config{Prefix: c.Prefix, TokenTTL: c.TokenTTL, Argon2: c.Argon2, MaxConcurrentHashes: c.MaxConcurrentHashes,
		LoginFailureWindow: c.LoginFailureWindow, LoginFailuresPerUser: c.LoginFailuresPerUser,
		LoginFailuresPerAddr: c.LoginFailuresPerAddr, PasswordAttemptsPerAddr: c.PasswordAttemptsPerAddr, Now: c.Now,
		DelayClock: c.LoginDelayClock, PasswordKeys: c.PasswordKeys}
}

func (c *Config) setDefaults() {
	c.MaxFrameBytes = cmp.Or(c.MaxFrameBytes, 64<<10)
	c.SendQueue = cmp.Or(c.SendQueue, 1024)
	c.ConnRate = cmp.Or(c.ConnRate, 50)
	c.ConnBurst = cmp.Or(c.ConnBurst, 100)
	c.UserRate = cmp.Or(c.UserRate, 100)
	c.UserBurst = cmp.Or(c.UserBurst, 200)
	c.HeavyQueryCost = cmp.Or(c.HeavyQueryCost, min(10, c.ConnBurst, c.UserBurst))
	c.HeavyInFlightPerUser = cmp.Or(c.HeavyInFlightPerUser, 4)
	c.OutboxBytes = cmp.Or(c.OutboxBytes, 4<<20)
	c.OutboxHardBytes = cmp.Or(c.OutboxHardBytes, 4*c.OutboxBytes)
	c.OutboxDrainTimeout = cmp.Or(c.OutboxDrainTimeout, 30*time.Second)
	c.HistoryPageBytes = cmp.Or(c.HistoryPageBytes, 256<<10)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, 30*time.Second)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 3*c.HeartbeatInterval)
	c.AuthTimeout = cmp.Or(c.AuthTimeout, 15*time.Second)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, 10*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	c.DrainGrace = cmp.Or(c.DrainGrace, 5*time.Second)
	c.ReconnectJitter = cmp.Or(c.ReconnectJitter, 2*time.Second)
	c.LoadInterval = cmp.Or(c.LoadInterval, 5*time.Second)
	c.TokenTTL = cmp.Or(c.TokenTTL, 30*24*time.Hour)
	c.TokenPruneInterval = cmp.Or(c.TokenPruneInterval, 10*time.Minute)
	c.TokenPruneMax = cmp.Or(c.TokenPruneMax, 10000)
	c.LoginFailureWindow = cmp.Or(c.LoginFailureWindow, 15*time.Minute)
	c.LoginFailuresPerUser = cmp.Or(c.LoginFailuresPerUser, 10)
	c.LoginFailuresPerAddr = cmp.Or(c.LoginFailuresPerAddr, 100)
	c.MaxUnauthPerAddr = cmp.Or(c.MaxUnauthPerAddr, 64)
	c.MaxUnauth = cmp.Or(c.MaxUnauth, 10000)
	c.PasswordAttemptsPerAddr = cmp.Or(c.PasswordAttemptsPerAddr, 120)
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = Argon2Params{Time: 2, MemoryKiB: 19 << 10, Threads: 1}
	}
	c.Argon2.SaltBytes = cmp.Or(c.Argon2.SaltBytes, 16)
	c.Argon2.KeyBytes = cmp.Or(c.Argon2.KeyBytes, 32)
	c.MaxConcurrentHashes = cmp.Or(c.MaxConcurrentHashes, runtime.NumCPU())
	c.MemoryLimitFraction = cmp.Or(c.MemoryLimitFraction, 0.9)
	c.MemoryCheckInterval = cmp.Or(c.MemoryCheckInterval, time.Second)
	c.MaxDevicesListed = cmp.Or(c.MaxDevicesListed, 100)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports every problem of the configuration, with the defaults
// filled in, at once.
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("gateway: "+format, args...))
		}
	}
	check(inbox.ValidGateway(c.GatewayID), "gateway id %q must be 1 to 64 ASCII letters, digits, '.', '_' or '-'", c.GatewayID)
	check(c.PublicAddr != "", "public address is required")
	check(c.MaxFrameBytes >= 1<<10 && c.MaxFrameBytes <= 16<<20, "max frame bytes must be 1KiB..16MiB, got %d", c.MaxFrameBytes)
	check(c.SendQueue >= 1 && c.SendQueue <= 1<<20, "send queue must be 1..1048576, got %d", c.SendQueue)
	check(c.ConnRate > 0, "connection rate must be positive, got %v", c.ConnRate)
	check(c.ConnBurst >= 1, "connection burst must be positive, got %d", c.ConnBurst)
	check(c.UserRate > 0, "user rate must be positive, got %v", c.UserRate)
	check(c.UserBurst >= 1, "user burst must be positive, got %d", c.UserBurst)
	check(c.HeavyQueryCost >= 1 && c.HeavyQueryCost <= min(c.ConnBurst, c.UserBurst),
		"heavy query cost must be 1..the smaller burst (%d), got %d", min(c.ConnBurst, c.UserBurst), c.HeavyQueryCost)
	check(c.HeavyInFlightPerUser >= 1 && c.HeavyInFlightPerUser <= 1024, "heavy queries in flight per user must be 1..1024, got %d", c.HeavyInFlightPerUser)
	check(c.OutboxBytes >= 64<<10 && c.OutboxBytes <= 1<<30, "outbox bytes must be 64KiB..1GiB, got %d", c.OutboxBytes)
	check(c.OutboxHardBytes > c.OutboxBytes && c.OutboxHardBytes <= 4<<30,
		"outbox hard bytes must exceed outbox bytes (%d) and be at most 4GiB, got %d", c.OutboxBytes, c.OutboxHardBytes)
	check(c.HistoryPageBytes >= 4<<10 && c.HistoryPageBytes <= 16<<20, "history page bytes must be 4KiB..16MiB, got %d", c.HistoryPageBytes)
	check(c.HeartbeatInterval > 0, "heartbeat interval must be positive, got %s", c.HeartbeatInterval)
	check(c.IdleTimeout > c.HeartbeatInterval, "idle timeout %s must exceed the heartbeat interval %s", c.IdleTimeout, c.HeartbeatInterval)
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"auth timeout", c.AuthTimeout}, {"request timeout", c.RequestTimeout}, {"write timeout", c.WriteTimeout},
		{"drain grace", c.DrainGrace}, {"outbox drain timeout", c.OutboxDrainTimeout}, {"reconnect jitter", c.ReconnectJitter}, {"load interval", c.LoadInterval},
		{"token TTL", c.TokenTTL}, {"login failure window", c.LoginFailureWindow},
	} {
		check(d.d > 0, "%s must be positive, got %s", d.name, d.d)
	}
	check(c.LoginFailuresPerUser >= 1, "login failures per user must be positive, got %d", c.LoginFailuresPerUser)
	check(c.LoginFailuresPerAddr >= 1 || c.LoginFailuresPerAddr == -1, "login failures per address must be positive or -1 (not limited), got %d", c.LoginFailuresPerAddr)
	check(c.PasswordAttemptsPerAddr >= 1 || c.PasswordAttemptsPerAddr == -1, "password attempts per address must be positive or -1 (not limited), got %d", c.PasswordAttemptsPerAddr)
	check(c.MaxUnauthPerAddr >= 1 || c.MaxUnauthPerAddr == -1, "max unauthenticated connections per address must be positive or -1 (not limited), got %d", c.MaxUnauthPerAddr)
	check(c.MaxUnauth >= 1, "max unauthenticated connections must be positive, got %d", c.MaxUnauth)
	a := c.Argon2
	check(a.Time >= 1, "argon2 time must be at least 1, got %d", a.Time)
	check(a.MemoryKiB >= 8*uint32(a.Threads) && a.MemoryKiB <= 4<<20, "argon2 memory must be 8×threads KiB..4GiB, got %d KiB", a.MemoryKiB)
	check(a.Threads >= 1, "argon2 threads must be at least 1, got %d", a.Threads)
	check(a.SaltBytes >= 8 && a.SaltBytes <= 64, "argon2 salt must be 8..64 bytes, got %d", a.SaltBytes)
	check(a.KeyBytes >= 16 && a.KeyBytes <= 64, "argon2 key must be 16..64 bytes, got %d", a.KeyBytes)
	check(c.MaxConcurrentHashes >= 1, "max concurrent hashes must be positive, got %d", c.MaxConcurrentHashes)
	check(c.TokenPruneInterval < 0 || c.TokenPruneInterval >= time.Second, "token prune interval must be at least 1s (negative: never), got %s", c.TokenPruneInterval)
	check(c.TokenPruneMax >= 1 && c.TokenPruneMax <= 1_000_000, "token prune max must be 1..1000000, got %d", c.TokenPruneMax)
	check(c.MemoryLimitFraction >= 0.1 && c.MemoryLimitFraction <= 1, "memory limit fraction must be 0.1..1, got %g", c.MemoryLimitFraction)
	check(c.MemoryCheckInterval >= 10*time.Millisecond && c.MemoryCheckInterval <= time.Minute, "memory check interval must be 10ms..1m, got %s", c.MemoryCheckInterval)
	check(c.MaxDevicesListed >= 1 && c.MaxDevicesListed <= 5000, "max devices listed must be 1..5000, got %d", c.MaxDevicesListed)
	return errors.Join(errs...)
}
