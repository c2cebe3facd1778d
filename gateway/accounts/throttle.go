package accounts

import (
	"context"
	_ "embed"
	"strconv"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/clientaddr"
	"github.com/redis/go-redis/v9"
)

var (
	//go:embed login_attempt.lua
	loginAttemptLua    string
	loginAttemptScript = redis.NewScript(loginAttemptLua)
	//go:embed attempts.lua
	attemptsLua    string
	attemptsScript = redis.NewScript(attemptsLua)
)

// loginDelayBase is the first delay of a username at an address once its
// failures reach the limit; each further failure doubles it, up to the
// failure window.
const loginDelayBase = time.Second

// loginThrottle limits password guessing and password hashing in Redis, so
// that every gateway of a deployment sees the same counts:
//
//   - failed logins per username and client address: after perUser
//     failures each further attempt waits a delay that starts at one second
//     and doubles with every failure, up to the failure window. A login of
//     the same username from an address without failures is not delayed.
//   - failed logins per client address over every username: perAddr per
//     window (-1: not limited).
//   - password attempts (logins and registrations) per client address:
//     hashesPerAddr per minute (-1: not limited), checked before a request
//     waits for a hashing slot.
//
// A login attempt is counted as a failure before its password is checked
// (one Lua script checks and counts), and a success gives it back, so
// parallel attempts cannot exceed the limits. Addresses are keyed by
// clientaddr.Key (IPv6 by /64). It is safe for concurrent use.
type loginThrottle struct {
	rdb                             redis.UniversalClient
	prefix                          string
	window                          time.Duration
	perUser, perAddr, hashesPerAddr int
	// now, if not nil, is the clock of the login delays in place of
	// Redis's (see Config.DelayClock).
	now func() time.Time
}

// keys returns the Redis keys of an attempt by username (possibly "") from
// the client address addr (host:port). They share the address's hash tag.
func (t *loginThrottle) keys(username, addr string) (pair, host, hashes string) {
	base := t.prefix + "login:{" + clientaddr.Key(addr) + "}:"
	return base + "user:" + username, base + "failures", base + "hashes"
}

// rateLimited is the refusal of a throttled request: ERateLimited with the
// wait (at least a millisecond).
func rateLimited(wait time.Duration, msg string) error {
	err := domain.Errorf(domain.ERateLimited, "gateway: %s; try again later", msg)
	err.RetryAfter = max(wait, time.Millisecond)
	return err
}

// tooManyFailures is the refusal of a throttled login.
func tooManyFailures(wait time.Duration) error {
	if wait <= 0 {
		wait = time.Second
	}
	return rateLimited(wait, "too many failed logins")
}

// unavailable wraps a Redis failure.
func unavailable(what string, err error) error {
	return domain.Errorf(domain.EUnavailable, "gateway: %s: %w", what, err)
}

// attempt checks a login by username from addr against the failure limits
// and, if it may proceed, counts it as a failure (succeeded gives it back).
// Over a limit it is refused with rate_limited and the wait, and nothing is
// counted.
func (t *loginThrottle) attempt(ctx context.Context, username, addr string) error {
	pair, host, _ := t.keys(username, addr)
	usePair := "0"
	if username != "" {
		usePair = "1"
	}
	wait, err := loginAttemptScript.Run(ctx, t.rdb, []string{pair, host}, usePair, t.perUser, max(t.perAddr, 0),
		t.window.Milliseconds(), loginDelayBase.Milliseconds(), t.window.Milliseconds(), t.clockMs()).Int64()
	if err != nil {
		return unavailable("counting a login attempt", err)
	}
	if wait > 0 {
		return tooManyFailures(time.Duration(wait) * time.Millisecond)
	}
	return nil
}

// clockMs is the script's clock argument: "" for Redis's own clock, else
// the injected clock in Unix milliseconds.
func (t *loginThrottle) clockMs() string {
	if t.now == nil {
		return ""
	}
	return strconv.FormatInt(t.now().UnixMilli(), 10)
}

// succeeded gives back a successful login's attempt: it clears the
// username's failures at the address and uncounts the attempt from the
// address's.
func (t *loginThrottle) succeeded(ctx context.Context, username, addr string) error {
	pair, host, _ := t.keys(username, addr)
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if username != "" {
			p.Del(ctx, pair)
		}
		if t.perAddr > 0 {
			p.Decr(ctx, host)
		}
		return nil
	})
	if err != nil {
		return unavailable("clearing login failures", err)
	}
	return nil
}

// hashAttempt counts a request that will hash or verify a password (a
// login or a registration) from addr, and refuses it with rate_limited
// when the address has used its attempts of the minute.
func (t *loginThrottle) hashAttempt(ctx context.Context, addr string) error {
	if t.hashesPerAddr < 0 {
		return nil
	}
	_, _, key := t.keys("", addr)
	wait, err := attemptsScript.Run(ctx, t.rdb, []string{key}, t.hashesPerAddr, time.Minute.Milliseconds()).Int64()
	if err != nil {
		return unavailable("counting password attempts", err)
	}
	if wait > 0 {
		return rateLimited(time.Duration(wait)*time.Millisecond, "too many logins and registrations from this address")
	}
	return nil
}

// throttleName is the username a login attempt counts against: the
// normalized name, or "" when the name cannot be a username (such
// attempts count against the address only).
func throttleName(p domain.Policy, username string) string {
	name, err := p.NormalizeUsername(username)
	if err != nil {
		return ""
	}
	return strings.ToLower(name)
}
