package webhook

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("webhook: sender closed")

// Batch numbers a Submit call: 1 for the first, then one more each time.
// Batch b is settled when every call carrying a notification of a batch up
// to b was delivered or dead-lettered.
type Batch uint64

// Sender collapses notifications into calls and delivers them to one
// endpoint. Submit may not be called concurrently with itself; every other
// method is safe for concurrent use.
type Sender struct {
	cfg    Config
	rdb    redis.UniversalClient
	m      *metrics
	slots  chan struct{} // one per request open to the endpoint
	ready  chan *call    // released calls, cap MaxCalls: never full
	wake   chan struct{} // the collapser's doorbell, cap 1
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	subMu  sync.Mutex // serialises Submit

	mu         sync.Mutex // guards every field below
	users      map[domain.UserID]*user
	collapsing *list.List // of *call, in deadline order
	held       int        // calls collapsing, parked, queued or in flight
	heldBytes  int64
	pending    int           // users with a call collapsing or parked
	open       map[Batch]int // held calls by the first batch they carry
	last       Batch         // the last batch Submit numbered
	submitting bool          // Submit is admitting batch last
	settled    Batch         // every batch up to it is settled
	changed    chan struct{} // closed when settled advances or room frees
	closed     bool
}

// user is a user with a call held.
type user struct {
	pending *call // collapsing (in Sender.collapsing) or parked (due)
	busy    bool  // a call of the user is queued or in flight
}

// call is one webhook call: the latest notification of its user and how
// many it carries.
type call struct {
	p       Payload
	first   Batch
	bytes   int64
	due     time.Time
	elem    *list.Element // in Sender.collapsing while collapsing
	body    []byte        // set when released
	attempt int
}

// New returns a running Sender for cfg, which fills its defaults and must
// validate; rdb holds the dead-letter stream.
func New(rdb redis.UniversalClient, cfg Config) (*Sender, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if rdb == nil {
		return nil, errors.New("webhook: a Redis client is required for the dead-letter stream")
	}
	s := &Sender{
		cfg: cfg, rdb: rdb,
		slots:      make(chan struct{}, cfg.Concurrency),
		ready:      make(chan *call, cfg.MaxCalls),
		wake:       make(chan struct{}, 1),
		users:      make(map[domain.UserID]*user),
		collapsing: list.New(),
		open:       make(map[Batch]int),
		changed:    make(chan struct{}),
	}
	m, err := newMetrics(cfg.Registerer, s.heldCalls)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1 + cfg.Concurrency)
	go s.collapser()
	for range cfg.Concurrency {
		go s.worker()
	}
	return s, nil
}

// Submit adds the notifications of one batch and returns the batch's
// number. It validates all of them first and adds none if one is out of
// range (the error wraps ErrInvalid and names its index). It waits for
// room while MaxCalls or MaxBytes are reached; if ctx ends meanwhile it
// returns ctx's error with part of the batch added, and the batch must be
// submitted again (its notifications added already may then be sent twice).
func (s *Sender) Submit(ctx context.Context, ns []Notification) (Batch, error) {
	for i := range ns {
		if err := ns[i].validate(i); err != nil {
			return 0, err
		}
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.last++
	b := s.last
	s.submitting = true
	defer func() {
		s.submitting = false
		s.advance()
	}()
	for i := range ns {
		if err := s.admit(ctx, b, &ns[i]); err != nil {
			return 0, err
		}
	}
	return b, nil
}

// admit adds n of batch b, merging it into its user's collapsing call or
// starting a call when there is room. s.mu is held.
func (s *Sender) admit(ctx context.Context, b Batch, n *Notification) error {
	p := n.payload(s.cfg.Preview, s.cfg.MaxPreviewBytes)
	size := p.size()
	for {
		if s.closed {
			return ErrClosed
		}
		u := s.users[n.User]
		if u != nil && u.pending != nil {
			c := u.pending
			count := c.p.Count + 1
			s.heldBytes += size - c.bytes
			c.p, c.bytes = p, size
			c.p.Count = count
			s.m.collapsed.Inc()
			if count >= s.cfg.MaxPerUser {
				s.release(u, c)
			}
			return nil
		}
		if s.held < s.cfg.MaxCalls && s.heldBytes+size <= s.cfg.MaxBytes &&
			(s.pending < s.cfg.MaxPendingUsers || s.releaseOldest()) {
			if u == nil {
				u = &user{}
				s.users[n.User] = u
			}
			c := &call{p: p, first: b, bytes: size, due: s.cfg.Clock.Now().Add(s.cfg.Window)}
			u.pending = c
			s.pending++
			s.held++
			s.heldBytes += size
			s.open[b]++
			c.elem = s.collapsing.PushBack(c)
			if c.elem == s.collapsing.Front() {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
			if s.cfg.MaxPerUser == 1 {
				s.release(u, c)
			}
			return nil
		}
		if err := s.waitChange(ctx); err != nil {
			return err
		}
	}
}

// waitChange waits, with s.mu released, until settled advances or room
// frees up, or ctx ends. s.mu is held on return.
func (s *Sender) waitChange(ctx context.Context) error {
	ch := s.changed
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release sends u's pending call c now, or parks it until u's call in
// flight settles. s.mu is held.
func (s *Sender) release(u *user, c *call) {
	if c.elem != nil {
		s.collapsing.Remove(c.elem)
		c.elem = nil
	}
	if u.busy {
		return // parked: settle releases it
	}
	u.pending = nil
	u.busy = true
	s.pending--
	c.body = c.p.marshal()
	s.ready <- c // cap MaxCalls >= s.held: never blocks
}

// releaseOldest sends early the collapsing call whose window ends first
// among users with no call in flight, to make room for a new user. It
// reports whether one was sent. s.mu is held.
func (s *Sender) releaseOldest() bool {
	for e := s.collapsing.Front(); e != nil; e = e.Next() {
		c := e.Value.(*call)
		if u := s.users[c.p.User]; !u.busy {
			s.release(u, c)
			return true
		}
	}
	return false
}

// collapser releases calls whose window ended.
func (s *Sender) collapser() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		var next time.Time
		now := s.cfg.Clock.Now()
		for e := s.collapsing.Front(); e != nil; e = s.collapsing.Front() {
			c := e.Value.(*call)
			if next = c.due; next.After(now) {
				break
			}
			s.release(s.users[c.p.User], c)
		}
		empty := s.collapsing.Len() == 0
		s.mu.Unlock()
		if empty {
			select {
			case <-s.wake:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		if s.cfg.Clock.SleepUntil(s.ctx, next) != nil {
			return
		}
	}
}

// settle ends c: delivered or dead-lettered. It releases its user's parked
// call and advances the settled batch.
func (s *Sender) settle(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held--
	s.heldBytes -= c.bytes
	if s.open[c.first]--; s.open[c.first] == 0 {
		delete(s.open, c.first)
	}
	u := s.users[c.p.User]
	u.busy = false
	switch next := u.pending; {
	case next == nil:
		delete(s.users, c.p.User)
	case next.elem == nil || s.closed:
		s.release(u, next) // parked, or Close flushes
	}
	s.advance()
	close(s.changed)
	s.changed = make(chan struct{})
}

// advance moves settled past batches with no held call. s.mu is held.
func (s *Sender) advance() {
	limit := s.last
	if s.submitting {
		limit--
	}
	moved := false
	for s.settled < limit && s.open[s.settled+1] == 0 {
		s.settled++
		moved = true
	}
	if moved {
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// Settled reports whether batch b is settled.
func (s *Sender) Settled(b Batch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settled >= b
}

// Wait waits until batch b is settled or ctx ends. Collapsing windows that
// have not ended are waited for; Flush ends them.
func (s *Sender) Wait(ctx context.Context, b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.settled < b {
		if err := s.waitChange(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Flush sends every collapsing call now, without waiting for its window
// (a call whose user has one in flight goes when that one settles).
func (s *Sender) Flush() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
}

func (s *Sender) flushLocked() {
	for e := s.collapsing.Front(); e != nil; e = s.collapsing.Front() {
		c := e.Value.(*call)
		s.release(s.users[c.p.User], c)
	}
}

// heldCalls is the number of calls held, for the metrics.
func (s *Sender) heldCalls() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.held)
}

// Close refuses new batches, sends every held call and waits until all
// settle or ctx ends; then it stops the sender. Calls still unsettled are
// abandoned (their batches stay unsettled: the caller re-reads them after
// a restart) and the error says how many.
func (s *Sender) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	close(s.changed) // a Submit waiting for room returns ErrClosed
	s.changed = make(chan struct{})
	s.flushLocked()
	var err error
	for s.held > 0 && err == nil {
		err = s.waitChange(ctx)
	}
	held := s.held
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if held > 0 {
		return fmt.Errorf("webhook: closed with %d calls unsettled: %w", held, err)
	}
	return nil
}
