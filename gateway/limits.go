package gateway

import (
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"golang.org/x/time/rate"
)

// userLimits holds one token bucket per user with a session on this
// gateway, shared by the user's connections, and drops it when the user's
// last session ends. It is safe for concurrent use.
type userLimits struct {
	rate  rate.Limit
	burst int

	mu    sync.Mutex // guards users
	users map[domain.UserID]*userLimit
}

type userLimit struct {
	lim  *rate.Limiter
	refs int
}

func newUserLimits(r rate.Limit, burst int) *userLimits {
	return &userLimits{rate: r, burst: burst, users: make(map[domain.UserID]*userLimit)}
}

// acquire returns user's bucket; every acquire is paired with a release.
func (u *userLimits) acquire(user domain.UserID) *rate.Limiter {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.users[user]
	if l == nil {
		l = &userLimit{lim: rate.NewLimiter(u.rate, u.burst)}
		u.users[user] = l
	}
	l.refs++
	return l.lim
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
func rateLimited(lim *rate.Limiter) error {
	wait := time.Duration(float64(time.Second) / float64(lim.Limit()))
	return &limitError{err: domain.Errorf(domain.ERateLimited, "gateway: too many requests; slow down"), retryAfter: wait}
}

// limitError is a rate-limit error with the advised wait.
type limitError struct {
	err        *domain.Error
	retryAfter time.Duration
}

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }
