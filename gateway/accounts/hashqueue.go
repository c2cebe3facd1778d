package accounts

import (
	"context"
	"slices"
	"sync"

	"github.com/mpim/mpim/domain"
)

// hashPriority orders the waiters for a password-hashing slot.
type hashPriority int

const (
	// priorityLogin is a login's verification: served first, so a flood
	// of registrations cannot keep users from logging in.
	priorityLogin hashPriority = iota
	// priorityRegister is a registration's new hash.
	priorityRegister
	numHashPriorities
)

// hashQueue hands out a fixed number of password-hashing slots; when none is
// free, waiters are served by priority (logins before registrations), then
// in arrival order. It is safe for concurrent use.
type hashQueue struct {
	mu      sync.Mutex // guards the fields below
	free    int
	waiting [numHashPriorities][]chan struct{}
}

func newHashQueue(slots int) *hashQueue { return &hashQueue{free: slots} }

// acquire takes a slot, waiting until one is free or ctx ends (an
// EUnavailable error). Every successful acquire is paired with a release.
func (q *hashQueue) acquire(ctx context.Context, p hashPriority) error {
	q.mu.Lock()
	if q.free > 0 && !q.waitersUpToLocked(p) {
		q.free--
		q.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	q.waiting[p] = append(q.waiting[p], ch)
	q.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	i := slices.Index(q.waiting[p], ch)
	if i >= 0 {
		q.waiting[p] = slices.Delete(q.waiting[p], i, i+1)
	}
	q.mu.Unlock()
	if i < 0 {
		q.release() // granted as ctx ended: pass the slot on
	}
	return domain.Errorf(domain.EUnavailable, "gateway: waiting to hash a password: %w", ctx.Err())
}

// waitersUpToLocked reports whether anyone of priority p or higher waits.
func (q *hashQueue) waitersUpToLocked(p hashPriority) bool {
	for i := range p + 1 {
		if len(q.waiting[i]) > 0 {
			return true
		}
	}
	return false
}

// release returns a slot: to the first waiter of the highest priority, or
// to the free slots.
func (q *hashQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for p := range q.waiting {
		if len(q.waiting[p]) > 0 {
			ch := q.waiting[p][0]
			q.waiting[p] = q.waiting[p][1:]
			close(ch)
			return
		}
	}
	q.free++
}

// waiters returns how many wait at priority p (for tests).
func (q *hashQueue) waiters(p hashPriority) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting[p])
}
