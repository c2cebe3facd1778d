// Package coord coordinates mpim processes through ZooKeeper: projector
// membership and partition ownership with fencing tokens (ZooKeeper.Run,
// which implements projectors.Coordinator), the gateway registry
// (RegisterGateway, Gateways) and the deployment's immutable settings
// (EnsureSetting).
//
// Every node lives under Config.Root (default /mpim):
//
//	<root>/projectors/<name>/members/_c_<guid>-m-<seq>  ephemeral: one per running member, data = member id
//	<root>/projectors/<name>/owners/<p>                 ephemeral: held while partition p's work runs
//	<root>/gateways/<id>                                ephemeral: JSON GatewayInfo
//	<root>/settings/<key>                               persistent: the value
//
// A ZooKeeper owns one client connection. The client reconnects by itself
// and keeps the session while the session timeout allows; when the session
// is lost, everything bound to it (membership, ownerships, gateway
// registrations) is lost with it and re-established in the next session.
package coord

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrClosed is returned by the methods of a closed ZooKeeper, and is the
// cause of the contexts it cancels when it closes.
var ErrClosed = errors.New("coord: closed")

// ErrSessionLost is the cause (context.Cause) of a work context cancelled
// because the ZooKeeper session expired or was presumed lost.
var ErrSessionLost = errors.New("coord: zookeeper session lost")

// ErrUnassigned is the cause (context.Cause) of a work context cancelled
// because the partition was assigned to another member.
var ErrUnassigned = errors.New("coord: partition no longer assigned to this member")

// minBackoff and maxBackoff bound the waits between retries of ZooKeeper
// requests, of joining, and of work that failed or returned early; each wait
// doubles the one before.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// settleDelay is how long the coordinator leaves a new connection to the
// client before sending requests on it: a new session is handed out, and
// cleanups resume, only that long after the client reported it. Right after
// reporting a session, go-zookeeper (v1.0.4) re-registers the watches of
// the connection's previous sessions, reading a field (lastZxid) that its
// receive goroutine writes on every reply without synchronization (an
// unfixed data race: go-zookeeper/zk#35, samuel/go-zookeeper#178). Replies
// to requests queued before that re-registration race with it; requests
// queued after it do not. The race is harmless on 64-bit machines but makes
// every race-enabled build that resumes a session after a ZooKeeper outage
// fail; the delay keeps our requests behind the re-registration.
const settleDelay = 200 * time.Millisecond

// ZooKeeper is the ZooKeeper coordinator of one process. It is safe for
// concurrent use; Run may be called for several projectors at once.
type ZooKeeper struct {
	cfg  Config
	log  *slog.Logger
	conn *zk.Conn
	acl  []zk.ACL

	// base is cancelled (cause ErrClosed) by Close; every Run, registration
	// and request context derives from it.
	base       context.Context
	cancelBase context.CancelCauseFunc
	wg         sync.WaitGroup // Runs and registration goroutines
	closeOnce  sync.Once

	mu         sync.Mutex // guards the fields below
	closed     bool
	sess       *session      // latest session; nil before the first
	changed    chan struct{} // closed and replaced when sess changes or is lost
	graceGen   uint64        // invalidates a pending presumed-loss timer
	graceTimer *time.Timer
	// connGen counts the client's session events; a pending installation
	// of a new session is dropped if another event came meanwhile.
	connGen     uint64
	connectedAt time.Time       // when the client last reported a session; zero since any other state
	gateways    map[string]bool // gateway ids registered through this ZooKeeper

	jan janitor
}

// session is one ZooKeeper session as this process sees it. Its context
// is cancelled (cause ErrSessionLost) when the server reports it expired,
// when the connection stayed down for a third of the session timeout, or
// on Close. A session presumed lost and then resumed gets a new record.
type session struct {
	id     int64
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (s *session) live() bool { return s != nil && s.ctx.Err() == nil }

// New validates cfg and starts connecting to ZooKeeper; it does not wait for
// a session (methods wait for one, bounded by their contexts).
func New(cfg Config) (*ZooKeeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	z := &ZooKeeper{
		cfg:      cfg,
		log:      cfg.Logger.With("member", cfg.MemberID),
		acl:      zk.WorldACL(zk.PermAll),
		changed:  make(chan struct{}),
		gateways: make(map[string]bool),
	}
	z.base, z.cancelBase = context.WithCancelCause(context.Background())
	z.jan.init()
	dialer := cfg.dialer
	if dialer == nil {
		dialer = net.DialTimeout
	}
	// Holding mu until z.conn is set keeps onEvent, which reads it, waiting.
	// The client's event channel is left unread (it drops what does not
	// fit): onEvent sees every event, synchronously.
	z.mu.Lock()
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithLogger(zkLogger{cfg.Logger.With("component", "zk")}),
		zk.WithEventCallback(z.onEvent),
		zk.WithDialer(dialer))
	z.conn = conn
	z.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("coord: connecting to %v: %w", cfg.Servers, err)
	}
	go z.jan.run(z)
	return z, nil
}

// Close stops every Run (their work contexts are cancelled with cause
// ErrClosed; Close waits for work to return and the members to leave) and
// every gateway registration, then closes the session, which removes all of
// this process's ephemeral nodes at once. Close is idempotent.
func (z *ZooKeeper) Close() {
	z.closeOnce.Do(func() {
		z.mu.Lock()
		z.closed = true
		z.mu.Unlock()
		z.cancelBase(ErrClosed)
		z.wg.Wait()
		z.jan.stop()
		z.conn.Close()
		z.jan.wait()
		z.mu.Lock()
		z.stopGraceLocked()
		z.loseLocked("closed")
		z.mu.Unlock()
	})
}

// begin registers a caller of the public API that runs until end is called;
// it fails once Close has begun.
func (z *ZooKeeper) begin() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed {
		return ErrClosed
	}
	z.wg.Add(1)
	return nil
}

func (z *ZooKeeper) end() { z.wg.Done() }

// scope returns a context that ends with ctx or when z closes.
func (z *ZooKeeper) scope(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(z.base, func() { cancel(ErrClosed) })
	return c, func() { stop(); cancel(context.Canceled) }
}

// onEvent follows the client's session state; it is called by the client's
// goroutines and must not block.
func (z *ZooKeeper) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.connGen++
	z.connectedAt = time.Time{}
	switch ev.State {
	case zk.StateHasSession:
		z.stopGraceLocked()
		z.connectedAt = time.Now()
		sid := z.conn.SessionID()
		if z.sess.live() && z.sess.id == sid {
			z.log.Info("coord: reconnected to zookeeper", "session", sessionHex(sid), "server", ev.Server)
			break
		}
		z.loseLocked("replaced")
		gen, server := z.connGen, ev.Server
		time.AfterFunc(settleDelay, func() { z.install(gen, sid, server) })
	case zk.StateDisconnected:
		if z.sess.live() && z.graceTimer == nil {
			s, gen, grace := z.sess, z.graceGen, z.cfg.SessionTimeout/3
			z.log.Warn("coord: disconnected from zookeeper", "session", sessionHex(s.id), "presumed_lost_after", grace)
			z.graceTimer = time.AfterFunc(grace, func() { z.presumeLost(s, gen) })
		}
	case zk.StateExpired:
		z.stopGraceLocked()
		if z.sess != nil {
			z.log.Warn("coord: zookeeper session expired", "session", sessionHex(z.sess.id))
		}
		z.loseLocked("expired")
	}
	z.jan.wake()
}

// install hands out session sid, reported settleDelay ago, unless the
// client reported anything since (generation gen) or z closed.
func (z *ZooKeeper) install(gen uint64, sid int64, server string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed || gen != z.connGen || z.sess.live() {
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	z.sess = &session{id: sid, ctx: ctx, cancel: cancel}
	z.log.Info("coord: zookeeper session established", "session", sessionHex(sid), "server", server)
	z.broadcastLocked()
	z.jan.wake()
}

// unsettled returns how long to wait before sending a request on the
// client's connection: 0 once it has had a session for settleDelay, the
// rest of settleDelay before that, and minBackoff while it has none (a
// session event wakes the janitor earlier).
func (z *ZooKeeper) unsettled() time.Duration {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.connectedAt.IsZero() {
		return minBackoff
	}
	return max(0, settleDelay-time.Since(z.connectedAt))
}

// presumeLost ends session s if the connection has stayed down since the
// timer of generation gen was started: by then the server may have expired
// it, and the owner must stop before a new owner can start.
func (z *ZooKeeper) presumeLost(s *session, gen uint64) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if gen != z.graceGen || z.sess != s || !s.live() {
		return
	}
	z.graceTimer = nil
	z.log.Warn("coord: zookeeper session presumed lost: no connection for a third of the session timeout",
		"session", sessionHex(s.id))
	z.loseLocked("presumed lost")
	z.jan.wake()
}

func (z *ZooKeeper) stopGraceLocked() {
	z.graceGen++
	if z.graceTimer != nil {
		z.graceTimer.Stop()
		z.graceTimer = nil
	}
}

// loseLocked ends the current session record, if live.
func (z *ZooKeeper) loseLocked(why string) {
	if !z.sess.live() {
		return
	}
	z.sess.cancel(fmt.Errorf("%w (%s)", ErrSessionLost, why))
	z.broadcastLocked()
}

func (z *ZooKeeper) broadcastLocked() {
	close(z.changed)
	z.changed = make(chan struct{})
}

// waitSession returns the current live session, waiting for one until ctx
// ends.
func (z *ZooKeeper) waitSession(ctx context.Context) (*session, error) {
	for {
		z.mu.Lock()
		s, ch := z.sess, z.changed
		z.mu.Unlock()
		if s.live() {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// retry calls f with the current live session until it returns nil or an
// error that is not a connection problem, or ctx ends.
func (z *ZooKeeper) retry(ctx context.Context, what string, f func(*session) error) error {
	b := newBackoff()
	for {
		s, err := z.waitSession(ctx)
		if err != nil {
			return err
		}
		err = f(s)
		if err == nil || !transient(err) {
			return err
		}
		z.log.Debug("coord: zookeeper request failed; retrying", "op", what, "err", err)
		if err := b.wait(ctx); err != nil {
			return err
		}
	}
}

// ensurePath creates path and its missing parents as persistent nodes.
func (z *ZooKeeper) ensurePath(ctx context.Context, path string) error {
	return z.retry(ctx, "create "+path, func(*session) error {
		if ok, _, err := z.conn.Exists(path); err != nil || ok {
			return err
		}
		for i := 1; i <= len(path); i++ {
			if i < len(path) && path[i] != '/' {
				continue
			}
			_, err := z.conn.Create(path[:i], nil, zk.FlagPersistent, z.acl)
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("coord: creating %s: %w", path[:i], err)
			}
		}
		return nil
	})
}

// path joins segments under the root.
func (z *ZooKeeper) path(segs ...string) string {
	return z.cfg.Root + "/" + strings.Join(segs, "/")
}

// transient reports whether err is a connection problem worth retrying: the
// request may or may not have been applied.
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, errSessionChanged)
}

// errSessionChanged reports that a request ran in another session than the
// one it was made for.
var errSessionChanged = errors.New("coord: zookeeper session changed")

func sessionHex(id int64) string { return strconv.FormatUint(uint64(id), 16) }

// backoff doubles a wait from minBackoff up to maxBackoff.
type backoff struct{ next time.Duration }

func newBackoff() *backoff { return &backoff{next: minBackoff} }

func (b *backoff) reset() { b.next = minBackoff }

// step returns the current backoff and doubles it.
func (b *backoff) step() time.Duration {
	d := b.next
	b.next = min(2*b.next, maxBackoff)
	return d
}

// wait sleeps for the current backoff, or until ctx ends, and doubles it.
func (b *backoff) wait(ctx context.Context) error {
	t := time.NewTimer(b.step())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// zkLogger routes the ZooKeeper client's logs to slog at debug level: the
// coordinator logs the session changes that matter itself.
type zkLogger struct{ log *slog.Logger }

func (l zkLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
