package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// SessionConfig configures Open.
type SessionConfig struct {
	// URL is the gateway's WebSocket URL.
	URL string
	// Options configure every connection; OnFrame must be nil (the session
	// receives the frames itself).
	Options Options

	// The device: who logs in, and as which device (DeviceID is required
	// and stable: the server keeps the device's cursor under it).
	Username, Password, DeviceID, Platform string
	// Token, when set, is resumed first instead of logging in.
	Token string

	// Handler receives every frame that is not a response, in arrival
	// order, on the session's receiver goroutine; a push is acknowledged
	// once Handler returns. Handler may make requests on the session. A
	// push can come again (after a reconnect, or when its ack was lost):
	// de-duplicate by event id.
	Handler func(*mpimv1.ServerFrame)
	// OnDisconnect, if set, is told that the connection ended and the
	// session is reconnecting.
	OnDisconnect func(err error)
	// OnReconnect, if set, is told that the session is connected again.
	OnReconnect func()
	// OnRetry, if set, is told of every failed reconnect attempt.
	OnRetry func(attempt int, err error)

	// Reconnect backoff: the first attempt after FirstBackoff (default
	// 250 ms, or what a goaway asked for), doubling up to MaxBackoff
	// (default 10 s), each wait with up to 50% jitter.
	FirstBackoff, MaxBackoff time.Duration
	// Timeout bounds a dial, login or resume (default 15 s).
	Timeout time.Duration
}

// Session is a device that stays connected to a gateway (see the package
// documentation). It is safe for concurrent use.
type Session struct {
	cfg    SessionConfig
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	err    error // why the session ended on its own; set before done is closed

	mu        sync.Mutex
	conn      *Conn         // nil while reconnecting
	connected chan struct{} // closed while conn is set
	password  string
	token     string
	heartbeat time.Duration
	goaway    time.Duration // the reconnect delay the server asked for
	login     *mpimv1.SessionResult
}

// Open connects, logs in (or resumes with cfg.Token) and starts receiving.
// ctx bounds the first connection only; the session runs until Close or
// until reconnecting cannot help. A failed first connection is returned,
// not retried.
func Open(ctx context.Context, cfg SessionConfig) (*Session, error) {
	if cfg.DeviceID == "" {
		return nil, errors.New("client: a session needs a device id")
	}
	if cfg.Options.OnFrame != nil {
		return nil, errors.New("client: a session receives its frames itself (Options.OnFrame must be nil)")
	}
	if cfg.FirstBackoff <= 0 {
		cfg.FirstBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	s := &Session{cfg: cfg, done: make(chan struct{}), connected: make(chan struct{}),
		password: cfg.Password, token: cfg.Token}
	c, err := s.connect(ctx)
	if err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.setConn(c)
	s.wg.Add(1)
	go s.run(c)
	return s, nil
}

// Login returns the result of the session's last login (nil if it only
// resumed): the user id, the device id and the profile.
func (s *Session) Login() *mpimv1.SessionResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.login
}

// Token returns the token the session resumes with.
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// SetPassword sets the password a later login uses (after a password
// change: the server may refuse the token).
func (s *Session) SetPassword(pw string) {
	s.mu.Lock()
	s.password = pw
	s.mu.Unlock()
}

// Conn returns the current connection, waiting while the session
// reconnects, until ctx ends or the session does.
func (s *Session) Conn(ctx context.Context) (*Conn, error) {
	for {
		s.mu.Lock()
		c, ch := s.conn, s.connected
		s.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ch:
		case <-s.done:
			if s.err != nil {
				return nil, s.err
			}
			return nil, errors.New("client: session closed")
		case <-ctx.Done():
			return nil, fmt.Errorf("client: not connected (reconnecting): %w", ctx.Err())
		}
	}
}

// Call sends a request on the current connection (see Conn.Call).
func (s *Session) Call(ctx context.Context, request any) (*mpimv1.Response, error) {
	c, err := s.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.Call(ctx, request)
}

// Request sends a request on the current connection (see Conn.Request).
func (s *Session) Request(ctx context.Context, request any) (*mpimv1.Response, error) {
	c, err := s.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return c.Request(ctx, request)
}

// Done is closed when the session has ended: Close, or an end that
// reconnecting cannot cure (Err).
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended on its own: a *CloseError matching
// ErrReplaced or ErrLoggedOut, or the login's *ResponseError
// (bad_credentials). It is nil while the session runs and after Close.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close closes the connection and stops the session.
func (s *Session) Close() error {
	s.cancel()
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Session) setConn(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case c != nil && s.conn == nil:
		close(s.connected)
	case c == nil && s.conn != nil:
		s.connected = make(chan struct{})
	}
	s.conn = c
}

// connect dials and authenticates one connection.
func (s *Session) connect(ctx context.Context) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	c, err := Dial(ctx, s.cfg.URL, &s.cfg.Options)
	if err != nil {
		return nil, err
	}
	if err := s.authenticate(ctx, c); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// authenticate resumes with the token, or logs in when there is none or
// the server no longer accepts it (a new login of the same device keeps
// its cursor).
func (s *Session) authenticate(ctx context.Context, c *Conn) error {
	s.mu.Lock()
	token, password := s.token, s.password
	s.mu.Unlock()
	if token != "" {
		r, err := c.Resume(ctx, token)
		if err == nil {
			s.mu.Lock()
			s.heartbeat = time.Duration(r.GetHeartbeatMs()) * time.Millisecond
			s.mu.Unlock()
			return nil
		}
		if ErrorCode(err) != "unauthenticated" {
			return fmt.Errorf("client: resume: %w", err)
		}
	}
	r, err := c.Login(ctx, &mpimv1.LoginRequest{Username: s.cfg.Username, Password: password,
		DeviceId: s.cfg.DeviceID, Platform: s.cfg.Platform})
	if err != nil {
		return fmt.Errorf("client: login %s: %w", s.cfg.Username, err)
	}
	s.mu.Lock()
	s.token = r.GetToken()
	s.heartbeat = time.Duration(r.GetHeartbeatMs()) * time.Millisecond
	s.login = r
	s.mu.Unlock()
	return nil
}

// permanent reports whether reconnecting cannot cure err.
func permanent(err error) bool {
	return errors.Is(err, ErrReplaced) || errors.Is(err, ErrLoggedOut) || ErrorCode(err) == "bad_credentials"
}

// run receives on each connection until it ends, then reconnects, until
// the session is closed or reconnecting cannot help.
func (s *Session) run(c *Conn) {
	defer s.wg.Done()
	var err error
	defer func() {
		if s.ctx.Err() == nil {
			s.err = err
		}
		close(s.done)
	}()
	for {
		pctx, stopPing := context.WithCancel(s.ctx)
		s.mu.Lock()
		every := s.heartbeat
		s.mu.Unlock()
		go ping(pctx, c, every)
		s.receive(c)
		stopPing()
		s.setConn(nil)
		c.CloseNow()
		if s.ctx.Err() != nil {
			return
		}
		if err = c.Err(); permanent(err) {
			err = fmt.Errorf("client: device %s: %w", s.cfg.DeviceID, err)
			return
		}
		if s.cfg.OnDisconnect != nil {
			s.cfg.OnDisconnect(err)
		}
		if c, err = s.reconnect(); err != nil {
			return
		}
		s.setConn(c)
		if s.cfg.OnReconnect != nil {
			s.cfg.OnReconnect()
		}
	}
}

// receive hands the frames of c to the handler and acknowledges the
// pushes, until c ends. An ack lost with the connection is harmless: the
// push comes again.
func (s *Session) receive(c *Conn) {
	for {
		f, err := c.Next(s.ctx)
		if err != nil {
			return
		}
		if s.cfg.Handler != nil {
			s.cfg.Handler(f)
		}
		switch {
		case f.GetPush() != nil:
			_ = c.Go(s.ctx, &mpimv1.ClientFrame{Request: ackRequest(f.GetPush().GetInboxId())}, nil) // an ack lost with the connection is harmless (above)
		case f.GetGoaway() != nil:
			// Leave after the last acks, and come back when asked.
			s.mu.Lock()
			s.goaway = time.Duration(f.GetGoaway().GetReconnectAfterMs()) * time.Millisecond
			s.mu.Unlock()
			time.AfterFunc(200*time.Millisecond, func() { c.Close() })
		}
	}
}

// reconnect dials and authenticates with backoff until it succeeds, the
// session is closed, or an error reconnecting cannot cure comes up.
func (s *Session) reconnect() (*Conn, error) {
	s.mu.Lock()
	delay := s.goaway
	s.goaway = 0
	s.mu.Unlock()
	if delay <= 0 {
		delay = s.cfg.FirstBackoff
	}
	for attempt := 1; ; attempt++ {
		wait := delay + time.Duration(rand.Int64N(int64(delay)/2+1))
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
		delay = min(2*delay, s.cfg.MaxBackoff)
		c, err := s.connect(s.ctx)
		if err == nil {
			return c, nil
		}
		if permanent(err) || s.ctx.Err() != nil {
			return nil, err
		}
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(attempt, err)
		}
	}
}

// ping keeps c alive while it is idle.
func ping(ctx context.Context, c *Conn, every time.Duration) {
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		case <-t.C:
			_ = c.Go(ctx, &mpimv1.ClientFrame{Request: &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}}, nil) // a lost ping is harmless; a broken connection ends receive
		}
	}
}
