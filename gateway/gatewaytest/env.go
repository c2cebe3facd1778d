package gatewaytest

import (
	"context"
	"database/sql"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/sealed"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/proto/frame"
	"github.com/mpim/mpim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// PasswordKey is the password key of every test gateway (64 hex digits):
// gateways of one deployment must share it.
const PasswordKey = "6d70696d2074657374207061737377726420b579206e6f742061207365637274"

// PasswordKeys are PasswordKey parsed, for gateway.Config.PasswordKeys.
var PasswordKeys = func() *sealed.Keys {
	k, err := sealed.Parse(PasswordKey)
	if err != nil {
		panic(err)
	}
	return k
}()

// Tweak changes a gateway's configuration or dependencies before it starts.
type Tweak func(*gateway.Config, *gateway.Deps)

// Clock is a settable test clock that starts at the wall clock; it is safe
// for concurrent use.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the wall clock moved by every Add so far.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }

// Add moves the clock forward by d.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// ManualClock is a test clock that stands still until Add moves it, so
// that a test decides when a delay has passed whatever the machine's speed;
// it is safe for concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewManualClock returns a ManualClock that reads the wall clock's time now.
func NewManualClock() *ManualClock { return &ManualClock{now: time.Now()} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// Add moves the clock forward by d.
func (c *ManualClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// Env is a gateway on real Redis and MariaDB with the real write side and,
// unless a Tweak replaces it, a fake hub. Nothing runs the projectors: the
// read models hold what a test's harness projects into them.
type Env struct {
	Redis    redis.UniversalClient
	Prefix   string
	Store    *eventstore.Store
	Commands *command.Service
	DB       *sql.DB
	Hub      *FakeHub
	Registry *prometheus.Registry
	Clock    *Clock
	Server   *gateway.Server
	HTTP     *httptest.Server
	URL      string // the WebSocket URL
}

// New starts an Env on the test's Redis; everything stops when the test
// ends.
func New(tb testing.TB, tweak ...Tweak) *Env {
	tb.Helper()
	rt := testsvc.Redis(tb)
	return NewAt(tb, rt.Addr, rt.Prefix, tweak...)
}

// NewAt is New on the Redis at addr, under prefix.
func NewAt(tb testing.TB, addr, prefix string, tweak ...Tweak) *Env {
	tb.Helper()
	ctx := context.Background()
	e := &Env{Prefix: prefix, Hub: NewFakeHub(), Registry: prometheus.NewRegistry(), Clock: &Clock{}}
	e.Redis = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
	tb.Cleanup(func() { e.Redis.Close() })
	var err error
	e.Store, err = eventstore.Open(ctx, e.Redis, eventstore.Config{Prefix: prefix, Partitions: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.Store.Close() })
	e.Commands, err = command.New(e.Store, command.Config{Now: e.Clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	e.DB, err = connect.MySQL(mctx, testsvc.MySQL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.DB.Close() })
	if _, err := schema.Migrate(mctx, e.DB); err != nil {
		tb.Fatal(err)
	}
	e.start(tb, "gw-test", tweak...)
	return e
}

// NewOn starts a second gateway on base's deployment (its Redis prefix,
// event store and database), with a hub and metrics of its own.
func NewOn(tb testing.TB, base *Env, tweak ...Tweak) *Env {
	tb.Helper()
	e := &Env{Prefix: base.Prefix, Hub: NewFakeHub(), Registry: prometheus.NewRegistry(), Clock: base.Clock,
		Redis: base.Redis, Store: base.Store, Commands: base.Commands, DB: base.DB}
	e.start(tb, "gw-test-2", tweak...)
	return e
}

// start runs a gateway server named id over e's dependencies.
func (e *Env) start(tb testing.TB, id string, tweak ...Tweak) {
	tb.Helper()
	var err error
	cfg := gateway.Config{
		GatewayID: id, PublicAddr: "127.0.0.1:1", Prefix: e.Prefix,
		Argon2: gateway.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}, PasswordKeys: PasswordKeys,
		// Generous limits: the rate-limit tests set their own.
		ConnRate: 1000, ConnBurst: 1000, UserRate: 1000, UserBurst: 1000,
		DrainGrace: 200 * time.Millisecond,
		Now:        e.Clock.Now,
	}
	deps := gateway.Deps{Commands: e.Commands, DB: e.DB, Redis: e.Redis, Hub: e.Hub, Registerer: e.Registry}
	for _, f := range tweak {
		f(&cfg, &deps)
	}
	e.Server, err = gateway.New(cfg, deps)
	if err != nil {
		tb.Fatal(err)
	}
	e.HTTP = httptest.NewServer(remoteFromHeader(e.Server.Handler()))
	e.URL = "ws" + strings.TrimPrefix(e.HTTP.URL, "http") + "/ws"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Server.Shutdown(ctx) // past the deadline the connections left are cut; the test is over
		e.HTTP.Close()
	})
}

// RemoteHeader names the header through which a test client poses as
// another client address.
const RemoteHeader = "X-Test-Remote-Addr"

// remoteFromHeader serves h with the request's remote address taken from
// RemoteHeader, when present: every test client connects from loopback,
// and the per-address limits need clients elsewhere.
func remoteFromHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get(RemoteHeader); a != "" {
			r.RemoteAddr = a
		}
		h.ServeHTTP(w, r)
	})
}

// Dial connects a client in enc; it is closed when the test ends.
func (e *Env) Dial(tb testing.TB, enc frame.Encoding) *Client {
	tb.Helper()
	return e.dial(tb, enc, nil)
}

// DialFrom connects as a client at remote (host:port).
func (e *Env) DialFrom(tb testing.TB, enc frame.Encoding, remote string) *Client {
	tb.Helper()
	return e.dial(tb, enc, &Options{Header: http.Header{RemoteHeader: {remote}}})
}

func (e *Env) dial(tb testing.TB, enc frame.Encoding, opts *Options) *Client {
	tb.Helper()
	c, err := Dial(Ctx(tb), e.URL, enc, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// RealDelivery makes the Env use the real delivery hub (gateway/delivery)
// instead of the fake; it runs until the test ends.
func RealDelivery(tb testing.TB) Tweak {
	return func(c *gateway.Config, d *gateway.Deps) {
		h, err := delivery.New(d.Redis, delivery.Config{Prefix: c.Prefix, GatewayID: c.GatewayID,
			PollInterval: 50 * time.Millisecond, AckTimeout: time.Hour, Registerer: d.Registerer})
		if err != nil {
			tb.Fatal(err)
		}
		Go(tb, "delivery hub", h.Run)
		d.Hub = gateway.DeliveryHub(h)
	}
}
