package gateway

import (
	"net/http"
	"sync"
)

// unauthConns counts the connections that have not authenticated yet, per
// client address (clientaddr.Key) and in all, and refuses new ones over the caps,
// so that connections which only wait for the authentication timeout (or
// queue logins and registrations) cannot crowd out everyone else. A
// connection counts from its handshake until its first login or resume, or
// its end. It is safe for concurrent use.
type unauthConns struct {
	perAddr, total int // -1 perAddr: not limited per address

	mu     sync.Mutex // guards the fields below
	byAddr map[string]int
	n      int
}

func newUnauthConns(perAddr, total int) *unauthConns {
	return &unauthConns{perAddr: perAddr, total: total, byAddr: make(map[string]int)}
}

// enter counts a new connection from the address key, or returns the
// name of the cap it would exceed ("per_address" or "total").
func (u *unauthConns) enter(key string) (refused string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n >= u.total {
		return "total"
	}
	if u.perAddr >= 0 && u.byAddr[key] >= u.perAddr {
		return "per_address"
	}
	u.n++
	u.byAddr[key]++
	return ""
}

// leave uncounts a connection counted by enter.
func (u *unauthConns) leave(key string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n--
	if u.byAddr[key]--; u.byAddr[key] <= 0 {
		delete(u.byAddr, key)
	}
}

// admit counts a WebSocket handshake from r as unauthenticated, or answers
// it 429 (too many from its address) or 503 (too many in all) and returns
// false. The caller calls leaveUnauth(key) when the connection
// authenticates or ends.
func (s *Server) admit(w http.ResponseWriter, key string) bool {
	switch s.unauth.enter(key) {
	case "":
		return true
	case "per_address":
		s.m.refusedConns.WithLabelValues("unauthenticated_per_address").Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "gateway: too many connections from this address that have not logged in; log in on the open ones or retry later", http.StatusTooManyRequests)
	default:
		s.m.refusedConns.WithLabelValues("unauthenticated_total").Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, "gateway: too many connections that have not logged in; retry later", http.StatusServiceUnavailable)
	}
	return false
}

// authenticated uncounts sess from the unauthenticated connections, once:
// at its first login or resume, or at its end.
func (s *Server) authenticated(sess *session) {
	if sess.unauthKey != "" && sess.unauthHeld.CompareAndSwap(true, false) {
		s.unauth.leave(sess.unauthKey)
	}
}
