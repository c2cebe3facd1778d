package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpim/mpim/domain"
	"golang.org/x/time/rate"
)

// userLimits holds one token bucket and one count of heavy queries in
// flight per user with a session on this gateway, shared by the user's
// connections, and drops them when the user's last session ends. It is
// safe for concurrent use.
type userLimits struct {
	rate     rate.Limit
	burst    int
	inFlight int32 // heavy queries one user may have in flight

	mu    sync.Mutex // guards users
	users map[domain.UserID]*userLimit
}

// userLimit is one user's limits; lim and the methods are safe for
// concurrent use.
type userLimit struct {
	lim      *rate.Limiter
	refs     int // guarded by userLimits.mu
	max      int32
	inFlight atomic.Int32
}

// beginHeavy counts a heavy query in flight, or reports false if the user
// has as many as allowed already; every true is paired with an endHeavy.
func (l *userLimit) beginHeavy() bool {
	if l.inFlight.Add(1) > l.max {
		l.inFlight.Add(-1)
		return false
	}
	return true
}

func (l *userLimit) endHeavy() { l.inFlight.Add(-1) }

func newUserLimits(r rate.Limit, burst, inFlight int) *userLimits {
	return &userLimits{rate: r, burst: burst, inFlight: int32(inFlight), users: make(map[domain.UserID]*userLimit)}
}

// acquire returns user's limits; every acquire is paired with a release.
func (u *userLimits) acquire(user domain.UserID) *userLimit {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.users[user]
	if l == nil {
		l = &userLimit{lim: rate.NewLimiter(u.rate, u.burst), max: u.inFlight}
		u.users[user] = l
	}
	l.refs++
	return l
}

// len returns the number of users with limits held.
func (u *userLimits) len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.users)
}

func (u *userLimits) release(user domain.UserID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.users[user]; l != nil {
		if l.refs--; l.refs <= 0 {
			delete(u.users, user)
		}
	}
}

// rateLimited returns the error of a request over a bucket's rate.
func rateLimited(lim *rate.Limiter) error { return rateLimitedN(lim, 1) }

// rateLimitedN returns the error of a request of cost tokens over a
// bucket's rate, advising the wait until the bucket holds them.
func rateLimitedN(lim *rate.Limiter, cost int) error {
	missing := max(float64(cost)-lim.Tokens(), 1)
	wait := time.Duration(missing * float64(time.Second) / float64(lim.Limit()))
	return &limitError{err: domain.Errorf(domain.ERateLimited, "gateway: too many requests; slow down"), retryAfter: wait}
}

// heavyLimited returns the error of a heavy query over the user's bound of
// heavy queries in flight.
func heavyLimited(bound int32) error {
	return &limitError{err: domain.Errorf(domain.ERateLimited,
		"gateway: %d history or conversations requests of this user are being answered already; wait for their answers", bound),
		retryAfter: heavyRetryAfter}
}

// limitError is a rate-limit error with the advised wait.
type limitError struct {
	err        *domain.Error
	retryAfter time.Duration
}

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }
