package gateway

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/accounts"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/corknet"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"golang.org/x/time/rate"
)

// Disconnect reasons (the mpim_gateway_disconnects_total label).
const (
	reasonClient     = "client_closed"
	reasonNetwork    = "network"
	reasonIdle       = "idle"
	reasonAuth       = "auth_timeout"
	reasonSlow       = "slow_client"
	reasonTooLarge   = "frame_too_large"
	reasonShutdown   = "shutdown"
	reasonWriteError = "write_failed"
	reasonReplaced   = "replaced"
)

// statusReplaced closes a connection whose device connected again to the
// same gateway: the newer connection receives the device's pushes.
const statusReplaced websocket.StatusCode = 4001

// session is one client connection: it reads frames, answers each request
// in order, and writes responses and deliveries from one bounded queue.
//
// Goroutines: the reader (run, on the HTTP handler's goroutine) decodes and
// handles requests one at a time, so a client's sends keep their order; the
// writer drains the queue; the hub calls the Sink methods from its own
// goroutines. The fields under "reader" are only touched by the reader;
// those guarded by mu by anyone.
type session struct {
	srv  *Server
	conn *websocket.Conn
	cork *corknet.Conn // under conn; nil if the ResponseWriter was not hijacked through it
	enc  frame.Encoding
	log  *slog.Logger // immutable: the writer logs too
	// remote is the client's address (host:port), set before run.
	remote string
	// unauthKey is remote's clientaddr.Key, under which the connection counts as
	// unauthenticated while unauthHeld (Server.authenticated).
	unauthKey  string
	unauthHeld atomic.Bool

	ctx    context.Context // ends when the session ends
	cancel context.CancelFunc

	out        *outbox // closed once the session is closing
	writerDone chan struct{}
	// writeDog closes the connection when one write takes longer than
	// WriteTimeout; writing is set while the writer writes. One timer per
	// session, reset per write, instead of a context with a deadline per
	// frame (which also costs the WebSocket library a context.AfterFunc).
	writeDog  *time.Timer
	writing   atomic.Bool
	idle      *time.Timer
	authTimer *time.Timer
	authed    atomic.Bool
	connLimit *rate.Limiter

	// reader
	rbuf    bytes.Buffer
	me      *caller
	userLim *userLimit
	device  HubDevice
	readErr error

	mu       sync.Mutex // guards the fields below; taken before out's
	reason   string     // why the session is closing ("" until it is)
	clean    bool       // the client is leaving on purpose
	wentAway bool       // a Goaway was queued
	gen      uint64     // the current attachment; sinks of older ones are ignored
}

func newSession(srv *Server, conn *websocket.Conn, enc frame.Encoding, log *slog.Logger) *session {
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		srv: srv, conn: conn, enc: enc, log: log, ctx: ctx, cancel: cancel,
		out:        newOutbox(&srv.cfg, outboxMetrics{bytes: srv.m.outboxBytes, pauses: srv.m.readPauses, peak: srv.m.outboxPeak}),
		writerDone: make(chan struct{}),
		connLimit:  rate.NewLimiter(srv.cfg.ConnRate, srv.cfg.ConnBurst),
	}
	s.idle = time.AfterFunc(srv.cfg.IdleTimeout, func() {
		s.fail(reasonIdle, websocket.StatusPolicyViolation, "idle timeout: send a ping at least every heartbeat interval")
	})
	s.authTimer = time.AfterFunc(srv.cfg.AuthTimeout, s.authTimeout)
	s.writeDog = time.AfterFunc(time.Hour, s.writeStalled)
	s.writeDog.Stop()
	return s
}

// writeStalled aborts a write that took longer than WriteTimeout by closing
// the connection (as the WebSocket library does when a write's context
// ends); the writer then fails.
func (s *session) writeStalled() {
	if s.writing.Load() {
		s.conn.CloseNow()
	}
}

// read reads the next message into the session's reusable buffer (only
// the reader calls it); data is valid until the next call. Handling a
// frame copies what it keeps (protobuf decoding copies), so one buffer
// serves every message instead of one allocation or more per message.
func (s *session) read(ctx context.Context) (websocket.MessageType, []byte, error) {
	typ, r, err := s.conn.Reader(ctx)
	if err != nil {
		return 0, nil, err
	}
	if s.rbuf.Cap() > 64<<10 {
		s.rbuf = bytes.Buffer{} // let a big message's buffer go
	}
	s.rbuf.Reset()
	if _, err := s.rbuf.ReadFrom(r); err != nil {
		return 0, nil, err
	}
	return typ, s.rbuf.Bytes(), nil
}

func (s *session) authTimeout() {
	if !s.authed.Load() {
		s.fail(reasonAuth, websocket.StatusPolicyViolation, "authentication timeout: log in or resume first")
	}
}

// run serves the connection until it ends.
func (s *session) run() {
	go s.writer()
	defer s.end()
	for {
		// A client whose answers pile up is not read from until it takes
		// them in.
		s.waitOutbox()
		// s.ctx ends only after this loop (end), and every other end of the
		// session closes the connection, which ends the read: a context
		// without Done spares the library a context.AfterFunc per message.
		typ, data, err := s.read(context.Background())
		if err != nil {
			s.readErr = err
			return
		}
		// The client is not idle while its request is handled.
		s.idle.Stop()
		s.handle(typ == websocket.MessageBinary, data)
		s.idle.Reset(s.srv.cfg.IdleTimeout)
	}
}

// end releases everything the session holds once the reader has stopped.
func (s *session) end() {
	s.idle.Stop()
	s.authTimer.Stop()
	s.mu.Lock()
	s.out.close()
	reason, clean := s.reason, s.clean
	s.gen++
	s.mu.Unlock()
	if reason == "" {
		switch st := websocket.CloseStatus(s.readErr); {
		case errors.Is(s.readErr, websocket.ErrMessageTooBig):
			reason = reasonTooLarge
		case st == websocket.StatusNormalClosure || st == websocket.StatusGoingAway:
			reason, clean = reasonClient, true
		case st != -1:
			reason = reasonClient
		default:
			reason = reasonNetwork
		}
	}
	s.cancel()
	if s.writing.Load() {
		// The writer is in a write (or about to see the cancellation, see
		// write): abort it as the end of its context used to.
		s.conn.CloseNow()
	}
	<-s.writerDone
	s.out.discard()
	s.writeDog.Stop()
	s.conn.CloseNow()
	s.detach(clean)
	s.authTimer.Stop()
	s.srv.m.disconnects.WithLabelValues(reason).Inc()
	s.srv.remove(s)
	s.log.Debug("gateway: connection closed", "reason", reason, "err", s.readErr)
}

// fail closes the connection with a status and reason, without flushing the
// queue. The first reason wins.
func (s *session) fail(reason string, code websocket.StatusCode, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(reason, code, msg)
}

func (s *session) failLocked(reason string, code websocket.StatusCode, msg string) {
	if !s.out.close() { // a reader waiting for the queue to drain reads again, and fails
		return
	}
	s.reason = reason
	if reason == reasonSlow {
		s.srv.m.slowDisconnects.Inc()
	}
	// Close sends the close frame and waits for the peer's, for seconds.
	go s.conn.Close(code, msg)
}

var requestOneof = (&mpimv1.ClientFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("request")

// requestType names a frame's request for metrics ("send", "unknown").
func requestType(f *mpimv1.ClientFrame) string {
	fd := f.ProtoReflect().WhichOneof(requestOneof)
	if fd == nil {
		return "unknown"
	}
	return string(fd.Name())
}

// handle decodes one message and answers it.
func (s *session) handle(binary bool, data []byte) {
	start := time.Now()
	f := &mpimv1.ClientFrame{}
	var resp *mpimv1.Response
	var after func()
	var err error
	typ := "bad_frame"
	if derr := s.enc.DecodeClient(binary, data, f); derr != nil {
		err = domain.Errorf(codeBadFrame, "gateway: %w", derr)
	} else {
		typ = requestType(f)
		resp, after, err = s.dispatch(f)
	}
	rm := s.srv.m.request(typ)
	rm.in.Inc()
	if err != nil {
		resp = s.errorResponse(f.GetId(), err)
	}
	s.enqueue(outFrame{frame: &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Response{Response: resp}}})
	if after != nil {
		after()
	}
	rm.duration.Observe(time.Since(start).Seconds())
}

func (s *session) errorResponse(id uint64, err error) *mpimv1.Response {
	e, serverFault := clientError(err)
	var le *limitError
	var de *domain.Error
	switch {
	case errors.As(err, &le):
		e.RetryAfterMs = uint32(max(le.retryAfter.Milliseconds(), 1))
	case errors.As(err, &de) && de.RetryAfter > 0:
		e.RetryAfterMs = uint32(min(max(de.RetryAfter.Milliseconds(), 1), math.MaxUint32))
	}
	if serverFault {
		if s.me != nil {
			s.log.Warn("gateway: request failed", "user", s.me.user, "device", s.me.device, "code", e.Code, "err", err)
		} else {
			s.log.Warn("gateway: request failed", "code", e.Code, "err", err)
		}
	}
	s.srv.m.errors.WithLabelValues(e.Code).Inc()
	return &mpimv1.Response{Id: id, Result: &mpimv1.Response_Error{Error: e}}
}

// dispatch answers a decoded request. after, if not nil, runs once the
// response is queued.
func (s *session) dispatch(f *mpimv1.ClientFrame) (resp *mpimv1.Response, after func(), err error) {
	// Acknowledgements of pushes are driven by the server's own pushes:
	// they are not rate limited. Any other frame is.
	// A heavy query takes tokens in proportion to its page.
	cost, heavy := s.srv.cfg.requestCost(f)
	if a, isAck := f.GetRequest().(*mpimv1.ClientFrame_Ack); !isAck || s.device == nil || !s.device.Covers(a.Ack.GetInboxId()) {
		now := time.Now()
		if !s.connLimit.AllowN(now, cost) {
			return nil, nil, rateLimitedN(s.connLimit, cost)
		}
		if s.userLim != nil && !s.userLim.lim.AllowN(now, cost) {
			return nil, nil, rateLimitedN(s.userLim.lim, cost)
		}
	}
	r := &mpimv1.Response{Id: f.GetId()}
	// The frequent requests that need no deadline of their own come first,
	// before the request context (a timer) is made.
	switch q := f.GetRequest().(type) {
	case nil:
		return nil, nil, domain.Errorf(codeUnknownRequest, "gateway: the frame holds no request this server knows")
	case *mpimv1.ClientFrame_Ping:
		r.Result = &mpimv1.Response_Ping{Ping: &mpimv1.Pong{ServerTimeMs: s.srv.cfg.Now().UnixMilli()}}
		return r, nil, nil
	case *mpimv1.ClientFrame_Ack:
		if s.me == nil {
			return nil, nil, errUnauthenticated
		}
		// The cursor write is bounded by the hub itself, and s.ctx lasts
		// as long as this reader.
		if err := s.ack(s.ctx, q.Ack.GetInboxId()); err != nil {
			return nil, nil, err
		}
		r.Result = &mpimv1.Response_Ack{Ack: done}
		return r, nil, nil
	}
	if err := s.srv.memGuard.refuses(f); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.RequestTimeout)
	defer cancel()
	switch q := f.GetRequest().(type) {
	case *mpimv1.ClientFrame_Register:
		id, name, err := s.srv.accounts.Register(ctx, q.Register.GetUsername(), q.Register.GetPassword(), q.Register.GetDisplayName(), s.remote)
		if err != nil {
			return nil, nil, err
		}
		r.Result = &mpimv1.Response_Register{Register: &mpimv1.RegisterResult{UserId: string(id), Username: name}}
		return r, nil, nil
	case *mpimv1.ClientFrame_Login:
		if s.me != nil {
			return nil, nil, domain.Errorf(codeAuthenticated, "gateway: already logged in; log out first")
		}
		l, err := s.srv.accounts.Login(ctx, q.Login.GetUsername(), q.Login.GetPassword(), domain.DeviceID(q.Login.GetDeviceId()),
			q.Login.GetPlatform(), s.remote)
		if err != nil {
			return nil, nil, err
		}
		u := l.User
		res := &mpimv1.SessionResult{Token: l.Token, Profile: &mpimv1.Profile{UserId: string(l.Identity.User), Username: u.Username(),
			DisplayName: u.DisplayName(), AvatarUrl: u.AvatarURL()}}
		r.Result = &mpimv1.Response_Login{Login: res}
		after, err := s.attach(ctx, l.Identity, res)
		return r, after, err
	case *mpimv1.ClientFrame_Resume:
		if s.me != nil {
			return nil, nil, domain.Errorf(codeAuthenticated, "gateway: already logged in; log out first")
		}
		id, err := s.srv.accounts.Resume(ctx, q.Resume.GetToken())
		if err != nil {
			return nil, nil, err
		}
		res := &mpimv1.SessionResult{}
		if p, err := s.srv.api.profile(ctx, id.User); err == nil {
			res.Profile = p
		}
		r.Result = &mpimv1.Response_Resume{Resume: res}
		after, err := s.attach(ctx, id, res)
		if err == nil {
			err = s.confirmResume(ctx, q.Resume.GetToken())
		}
		if err != nil {
			return nil, nil, err
		}
		return r, after, nil
	}
	if s.me == nil {
		return nil, nil, errUnauthenticated
	}
	if _, ok := f.GetRequest().(*mpimv1.ClientFrame_Logout); ok {
		if err := s.srv.accounts.Logout(ctx, s.me.actor()); err != nil {
			return nil, nil, err
		}
		s.detach(true)
		r.Result = &mpimv1.Response_Logout{Logout: done}
		return r, nil, nil
	}
	if resp, ok, err := s.srv.devices.handle(ctx, s.me, s.remote, f); ok {
		return resp, nil, err
	}
	if ul := s.userLim; heavy {
		if !ul.beginHeavy() {
			return nil, nil, heavyLimited(ul.max)
		}
		s.srv.m.heavyInFlight.Inc()
		defer func() { ul.endHeavy(); s.srv.m.heavyInFlight.Dec() }()
	}
	resp, err = s.srv.api.handle(ctx, s.me, f)
	return resp, nil, err
}

// attach authenticates the session as id and attaches it to the hub. The
// hub may deliver at once; deliveries are held back until the response,
// which res completes, is queued (after).
func (s *session) attach(ctx context.Context, id accounts.Identity, res *mpimv1.SessionResult) (func(), error) {
	s.mu.Lock()
	s.gen++
	s.out.hold()
	sk := &sink{s: s, gen: s.gen}
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if why := s.out.release(); why != "" {
			s.overflowLocked(why)
		}
	}
	dev, err := s.srv.hub.Attach(ctx, id.User, id.Device, sk)
	if err != nil {
		// Whatever the failed attachment delivered is dropped with it.
		s.mu.Lock()
		s.gen++
		s.out.dropHeld()
		s.mu.Unlock()
		if c := domain.ErrorCode(err); c == domain.EInternal {
			err = unavailable("attaching the device", err)
		}
		return nil, err
	}
	s.me, s.device = &caller{user: id.User, device: id.Device}, dev
	s.userLim = s.srv.limits.acquire(id.User)
	s.authed.Store(true)
	s.srv.authenticated(s)
	s.authTimer.Stop()
	s.srv.m.sessions.Inc()
	res.UserId, res.DeviceId = string(id.User), string(id.Device)
	res.TokenExpiresAtMs = id.Expiry.UnixMilli()
	res.HeartbeatMs = uint32(s.srv.cfg.HeartbeatInterval.Milliseconds())
	return release, nil
}

// detach ends the session's authentication and its hub attachment.
func (s *session) detach(clean bool) {
	if s.me == nil {
		return
	}
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.RequestTimeout)
	defer cancel()
	s.device.Detach(ctx, clean)
	s.srv.limits.release(s.me.user)
	s.srv.m.sessions.Dec()
	s.me, s.device, s.userLim = nil, nil, nil
	s.authed.Store(false)
	s.authTimer.Reset(s.srv.cfg.AuthTimeout)
}

// ack forwards a client acknowledgement; the hub reports the latency of
// the pushes it acknowledges (sink.Acked).
func (s *session) ack(ctx context.Context, inboxID string) error {
	if !validInboxID(inboxID) {
		return domain.Errorf(domain.EInvalid, "gateway: invalid inbox id %q", inboxID)
	}
	if err := s.device.Ack(ctx, inboxID); err != nil {
		if domain.ErrorCode(err) == domain.EInternal {
			return unavailable("acknowledging", err)
		}
		return err
	}
	return nil
}

// goaway queues a Goaway telling the client to reconnect elsewhere; with
// closeAfter the connection is closed (1001) once everything queued before
// it is written.
func (s *session) goaway(reason string, closeAfter bool) {
	var wait uint32
	if j := s.srv.cfg.ReconnectJitter; j > 0 {
		wait = uint32(rand.Int64N(int64(j)) / int64(time.Millisecond))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clean = true
	if !s.wentAway {
		s.wentAway = true
		s.enqueueLocked(outFrame{frame: &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Goaway{Goaway: &mpimv1.Goaway{
			Reason: reason, Reconnect: true, ReconnectAfterMs: wait}}}}, false)
	}
	if closeAfter && !s.out.isClosed() {
		s.enqueueLocked(outFrame{close: &closeFrame{code: websocket.StatusGoingAway, reason: reason}}, false)
		s.out.close()
		s.reason = reasonShutdown
	}
}

// sink is the session as one attachment's Sink.
type sink struct {
	s   *session
	gen uint64
}

var errDetached = errors.New("gateway: the session is closed or detached")

func (k *sink) deliver(f outFrame) error {
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.gen != s.gen || !s.enqueueLocked(f, true) {
		return errDetached
	}
	return nil
}

func (k *sink) Push(d Delivery) error { return k.deliver(outFrame{push: &d}) }

func (k *sink) Signal(sg Signal) error {
	out := &mpimv1.Signal{FromUserId: sg.From, Kind: sg.Kind}
	if sg.Kind == SignalTyping || sg.Kind == SignalTypingStopped {
		out.ConversationId = string(sg.Payload)
	} else {
		out.Payload = sg.Payload
	}
	return k.deliver(outFrame{frame: &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_Signal{Signal: out}}})
}

func (k *sink) SyncRequired(cursor string) error {
	return k.deliver(outFrame{frame: &mpimv1.ServerFrame{Frame: &mpimv1.ServerFrame_SyncRequired{SyncRequired: &mpimv1.SyncRequired{Cursor: cursor}}}})
}

// Replaced closes the session when a newer connection of the same device
// took over its attachment: it would otherwise stay open and receive
// nothing.
func (k *sink) Replaced() {
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.gen == s.gen {
		s.failLocked(reasonReplaced, statusReplaced, "replaced: this device connected again; do not reconnect automatically")
	}
}

// Acked observes the push-to-ack latency of one acknowledged push.
func (k *sink) Acked(latency time.Duration) {
	k.s.srv.m.ackLatency.Observe(max(latency, 0).Seconds())
}

var (
	_ Sink                 = (*sink)(nil)
	_ delivery.AckObserver = (*sink)(nil)
	_ delivery.Replaceable = (*sink)(nil)
	_ Endable              = (*sink)(nil)
)
