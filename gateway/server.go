package gateway

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/gateway/accounts"
	"github.com/mpim/mpim/internal/clientaddr"
	"github.com/mpim/mpim/proto/frame"
	"github.com/mpim/mpim/query"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Deps are the services a Server uses. Commands, DB, Redis and Hub are
// required.
type Deps struct {
	// Commands is the write side.
	Commands *command.Service
	// DB holds the MySQL read models (read through package query) and
	// auth_tokens; it must scan DATETIME into time.Time (parseTime=true, as
	// internal/connect.MySQL opens it).
	DB *sql.DB
	// Redis holds the cache read models (internal/cachekeys, read through
	// package query) and the login throttle's counters; the memory guard
	// watches its memory.
	Redis redis.UniversalClient
	// Hub delivers inboxes to devices.
	Hub Hub
	// Registerer receives the gateway's metrics (default: a private
	// registry, so nothing is registered globally).
	Registerer prometheus.Registerer
	// Logger is the gateway's logger (default: discard).
	Logger *slog.Logger
	// Load, if set, receives the gateway's load (open connections) every
	// Config.LoadInterval until Shutdown; *coord.Registration implements it.
	Load LoadReporter
}

// LoadReporter publishes a gateway's load for the dispatcher.
type LoadReporter interface {
	Update(load int) error
}

// Server is a gateway: it serves the client protocol over WebSocket
// (Handler), one session per connection, and drains gracefully (Shutdown).
// It is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	hub      Hub
	api      *api
	accounts *accounts.Service
	devices  *devices
	limits   *userLimits
	unauth   *unauthConns
	handler  http.Handler
	bg       sync.WaitGroup // reportLoad, pruneTokens and memGuard.run
	stopBg   context.CancelFunc
	memGuard *memoryGuard
	// eventJSON encodes each pushed event's JSON once for every JSON session.
	eventJSON eventJSONCache

	mu       sync.Mutex // guards the fields below
	sessions map[*session]struct{}
	draining bool
	nextConn uint64
	wg       sync.WaitGroup // sessions
}

// New returns a Server. It fails if the configuration is invalid (every
// problem at once) or a dependency is missing.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Commands == nil {
		errs = append(errs, errors.New("gateway: Deps.Commands is required"))
	}
	if deps.DB == nil {
		errs = append(errs, errors.New("gateway: Deps.DB is required"))
	}
	if deps.Redis == nil {
		errs = append(errs, errors.New("gateway: Deps.Redis is required"))
	}
	if deps.Hub == nil {
		errs = append(errs, errors.New("gateway: Deps.Hub is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	q, err := query.New(deps.DB, deps.Redis, query.Config{Prefix: cfg.Prefix, HistoryPageBytes: cfg.HistoryPageBytes, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	acc, err := accounts.New(cfg.accounts(), deps.Commands, deps.DB, deps.Redis, m.passwordHashes)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: deps.Logger.With("gateway", cfg.GatewayID), m: m, hub: deps.Hub,
		api:      &api{cmd: deps.Commands, hub: deps.Hub, q: q},
		accounts: acc,
		limits:   newUserLimits(cfg.UserRate, cfg.UserBurst, cfg.HeavyInFlightPerUser),
		unauth:   newUnauthConns(cfg.MaxUnauthPerAddr, cfg.MaxUnauth),
		sessions: make(map[*session]struct{}),
		memGuard: &memoryGuard{rdb: deps.Redis, fraction: cfg.MemoryLimitFraction, interval: cfg.MemoryCheckInterval,
			log: deps.Logger.With("gateway", cfg.GatewayID), ratio: m.redisMemory},
	}
	s.devices = &devices{acc: s.accounts, cmd: deps.Commands, hub: deps.Hub, q: q, maxListed: cfg.MaxDevicesListed}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", s.serveWS)
	s.handler = mux
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBg = cancel
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.memGuard.run(ctx)
	}()
	if deps.Load != nil {
		s.bg.Add(1)
		go s.reportLoad(ctx, deps.Load)
	}
	if cfg.TokenPruneInterval > 0 {
		s.bg.Add(1)
		go s.pruneTokens(ctx)
	}
	return s, nil
}

// Handler returns the HTTP handler of the WebSocket endpoint, GET /ws. A
// client must negotiate the subprotocol "mpim.v1.proto" or "mpim.v1.json".
func (s *Server) Handler() http.Handler { return s.handler }

// Load returns the number of open connections.
func (s *Server) Load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// UsersHeld returns the number of users whose per-user limits the server
// holds: one per user with a session, none once every session ended.
func (s *Server) UsersHeld() int { return s.limits.len() }

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	s.mu.Unlock()
	if draining {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "gateway: shutting down; reconnect through the dispatcher", http.StatusServiceUnavailable)
		return
	}
	key := clientaddr.Key(r.RemoteAddr)
	if !s.admit(w, key) {
		return
	}
	admitted := true
	defer func() {
		if admitted {
			s.unauth.leave(key)
		}
	}()
	cw := &corkingWriter{ResponseWriter: w}
	conn, err := websocket.Accept(cw, r, &websocket.AcceptOptions{
		Subprotocols:    frame.Subprotocols(),
		OriginPatterns:  s.cfg.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered the request
	}
	enc, ok := frame.ForSubprotocol(conn.Subprotocol())
	if !ok {
		conn.Close(websocket.StatusPolicyViolation, "negotiate the subprotocol mpim.v1.proto or mpim.v1.json")
		return
	}
	conn.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		conn.Close(websocket.StatusGoingAway, "gateway shutting down")
		return
	}
	admitted = false // the session holds the count from here
	s.nextConn++
	sess := newSession(s, conn, enc, s.log.With("conn", s.nextConn, "remote", r.RemoteAddr))
	sess.remote = r.RemoteAddr
	sess.unauthKey = key
	sess.unauthHeld.Store(true)
	sess.cork = cw.conn
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.connections.Inc()
	sess.run()
}

// remove forgets an ended session.
func (s *Server) remove(sess *session) {
	s.authenticated(sess) // uncounts a session that never authenticated
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	s.m.connections.Dec()
	s.wg.Done()
}

// Shutdown drains the gateway: it refuses new connections, sends every
// client a Goaway telling it to reconnect (through the dispatcher), lets
// clients leave by themselves for Config.DrainGrace while still answering
// their requests (acknowledgements above all), then writes what is queued
// for the rest and closes their connections (1001). If ctx ends first it
// closes every connection at once and returns ctx's error. Call it once;
// deregister the gateway from the dispatcher first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	sessions := s.snapshotLocked()
	s.mu.Unlock()
	s.stopBg()
	s.bg.Wait()

	all := make(chan struct{})
	go func() { s.wg.Wait(); close(all) }()

	for _, sess := range sessions {
		sess.goaway("gateway shutting down", false)
	}
	grace := time.NewTimer(s.cfg.DrainGrace)
	defer grace.Stop()
	select {
	case <-all:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	sessions = s.snapshotLocked()
	s.mu.Unlock()
	if ctx.Err() == nil {
		for _, sess := range sessions {
			sess.goaway("gateway shutting down", true)
		}
		select {
		case <-all:
			return nil
		case <-ctx.Done():
		}
	}
	for _, sess := range sessions {
		sess.conn.CloseNow()
	}
	<-all
	return ctx.Err()
}

func (s *Server) snapshotLocked() []*session {
	out := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		out = append(out, sess)
	}
	return out
}

// reportLoad publishes the load every LoadInterval until ctx ends.
func (s *Server) reportLoad(ctx context.Context, r LoadReporter) {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.LoadInterval)
	defer t.Stop()
	for {
		if err := r.Update(s.Load()); err != nil {
			s.log.Warn("gateway: reporting load", "err", err)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// pruneTokens deletes expired login tokens every TokenPruneInterval until ctx
// ends, at most TokenPruneMax a round. The gateway prunes because it alone
// writes auth_tokens and holds the token TTL; a projector never touches
// the table.
func (s *Server) pruneTokens(ctx context.Context) {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.TokenPruneInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		n, err := s.accounts.PruneTokens(ctx, s.cfg.TokenPruneMax)
		s.m.tokensPruned.Add(float64(n))
		if err != nil && ctx.Err() == nil {
			s.log.Warn("gateway: pruning expired tokens", "err", err, "deleted", n)
		}
	}
}
