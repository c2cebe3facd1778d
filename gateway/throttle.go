package gateway

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// loginThrottle counts failed logins per username and per client address
// in Redis, so that every gateway of a deployment sees the same counts, and
// refuses logins over the limits until the counting window ends: password
// guessing gets LoginFailuresPerUser tries per window and account, and
// LoginFailuresPerAddr per window and address. It is safe for concurrent
// use.
type loginThrottle struct {
	rdb              redis.UniversalClient
	prefix           string
	window           time.Duration
	perUser, perAddr int
}

// keys returns the counters of a login attempt: the username's (empty when
// the name cannot be a username) and the address's (empty when addresses
// are not limited).
func (t *loginThrottle) keys(username, addr string) (user, host string) {
	if username != "" {
		user = t.prefix + "login:fail:user:" + username
	}
	if t.perAddr > 0 && addr != "" {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			addr = h
		}
		host = t.prefix + "login:fail:addr:" + addr
	}
	return user, host
}

// check refuses a login whose username or address is over its limit, with
// the time until its window ends.
func (t *loginThrottle) check(ctx context.Context, username, addr string) error {
	userKey, hostKey := t.keys(username, addr)
	type counter struct {
		key   string
		limit int
		n     *redis.StringCmd
		ttl   *redis.DurationCmd
	}
	var cs []*counter
	if userKey != "" {
		cs = append(cs, &counter{key: userKey, limit: t.perUser})
	}
	if hostKey != "" {
		cs = append(cs, &counter{key: hostKey, limit: t.perAddr})
	}
	if len(cs) == 0 {
		return nil
	}
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range cs {
			c.n = p.Get(ctx, c.key)
			c.ttl = p.PTTL(ctx, c.key)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return unavailable("reading login failures", err)
	}
	for _, c := range cs {
		n, err := c.n.Int()
		if err != nil || n < c.limit {
			continue
		}
		wait := c.ttl.Val()
		if wait <= 0 {
			wait = time.Second
		}
		return &limitError{err: domain.Errorf(domain.ERateLimited, "gateway: too many failed logins; try again later"), retryAfter: wait}
	}
	return nil
}

// failed counts a failed login; the window of a counter starts at its first
// failure.
func (t *loginThrottle) failed(ctx context.Context, username, addr string) error {
	userKey, hostKey := t.keys(username, addr)
	_, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range []string{userKey, hostKey} {
			if k != "" {
				// The first failure creates the counter with the window as
				// its lifetime; INCR keeps it.
				p.SetNX(ctx, k, 0, t.window)
				p.Incr(ctx, k)
			}
		}
		return nil
	})
	if err != nil {
		return unavailable("counting a failed login", err)
	}
	return nil
}

// succeeded clears the username's failures (not the address's).
func (t *loginThrottle) succeeded(ctx context.Context, username string) error {
	if userKey, _ := t.keys(username, ""); userKey != "" {
		if err := t.rdb.Del(ctx, userKey).Err(); err != nil {
			return unavailable("clearing login failures", err)
		}
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
