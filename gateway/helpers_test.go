package gateway_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
	inboxproj "github.com/mpim/mpim/projectors/inbox"
	mysqlproj "github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// encodings runs a subtest per encoding.
func encodings(t *testing.T, f func(t *testing.T, enc frame.Encoding)) {
	for _, enc := range []frame.Encoding{frame.Proto, frame.JSON} {
		t.Run(enc.String(), func(t *testing.T) { f(t, enc) })
	}
}

// clock is a settable test clock that starts at the wall clock.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// env is a gateway on real Redis and MariaDB with the real write side, a
// fake hub, and (started on demand) the MySQL and cache projectors.
type env struct {
	rdb    *redis.Client
	prefix string
	store  *eventstore.Store
	cmd    *command.Service
	db     *sql.DB
	hub    *fakeHub
	reg    *prometheus.Registry
	clock  *clock
	srv    *gateway.Server
	http   *httptest.Server
	url    string

	projOnce sync.Once
	projs    []projectors.Checkpointer
}

func newEnv(tb testing.TB, tweak ...func(*gateway.Config, *gateway.Deps)) *env {
	tb.Helper()
	rt := testsvc.Redis(tb)
	return newEnvAt(tb, rt.Addr, rt.Prefix, tweak...)
}

// newEnvAt is newEnv on the Redis at addr, under prefix.
func newEnvAt(tb testing.TB, addr, prefix string, tweak ...func(*gateway.Config, *gateway.Deps)) *env {
	tb.Helper()
	ctx := context.Background()
	e := &env{prefix: prefix, hub: newFakeHub(), reg: prometheus.NewRegistry(), clock: &clock{}}
	e.rdb = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 32})
	tb.Cleanup(func() { e.rdb.Close() })
	var err error
	e.store, err = eventstore.Open(ctx, e.rdb, eventstore.Config{Prefix: prefix, Partitions: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.store.Close() })
	e.cmd, err = command.New(e.store, command.Config{Now: e.clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	e.db, err = connect.MySQL(mctx, testsvc.MySQL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	if _, err := schema.Migrate(mctx, e.db); err != nil {
		tb.Fatal(err)
	}
	e.start(tb, "gw-test", tweak...)
	return e
}

// newEnvOn starts a second gateway on base's deployment (its Redis prefix,
// event store and database), with a hub and metrics of its own.
func newEnvOn(tb testing.TB, base *env, tweak ...func(*gateway.Config, *gateway.Deps)) *env {
	tb.Helper()
	e := &env{prefix: base.prefix, hub: newFakeHub(), reg: prometheus.NewRegistry(), clock: base.clock,
		rdb: base.rdb, store: base.store, cmd: base.cmd, db: base.db}
	e.start(tb, "gw-test-2", tweak...)
	return e
}

// start runs a gateway server named id over e's dependencies.
func (e *env) start(tb testing.TB, id string, tweak ...func(*gateway.Config, *gateway.Deps)) {
	tb.Helper()
	var err error
	cfg := gateway.Config{
		GatewayID: id, PublicAddr: "127.0.0.1:1", Prefix: e.prefix,
		Argon2: gateway.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1},
		// Generous limits: the rate-limit tests set their own.
		ConnRate: 1000, ConnBurst: 1000, UserRate: 1000, UserBurst: 1000,
		DrainGrace: 200 * time.Millisecond,
		Now:        e.clock.Now,
	}
	deps := gateway.Deps{Commands: e.cmd, DB: e.db, Redis: e.rdb, Hub: e.hub, Registerer: e.reg}
	for _, f := range tweak {
		f(&cfg, &deps)
	}
	e.srv, err = gateway.New(cfg, deps)
	if err != nil {
		tb.Fatal(err)
	}
	e.http = httptest.NewServer(remoteFromHeader(e.srv.Handler()))
	e.url = "ws" + strings.TrimPrefix(e.http.URL, "http") + "/ws"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		e.http.Close()
	})
}

// ctx returns a context bounded well beyond any healthy answer.
func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// dial connects a client in enc.
func (e *env) dial(tb testing.TB, enc frame.Encoding) *gatewaytest.Client {
	tb.Helper()
	c, err := gatewaytest.Dial(testCtx(tb), e.url, enc, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.CloseNow() })
	return c
}

// testRemoteHeader names the header through which a test client poses as
// another client address (remoteFromHeader).
const testRemoteHeader = "X-Test-Remote-Addr"

// remoteFromHeader serves h with the request's remote address taken from
// the testRemoteHeader, when present: every test client connects from
// loopback, and the per-address limits need clients elsewhere.
func remoteFromHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get(testRemoteHeader); a != "" {
			r.RemoteAddr = a
		}
		h.ServeHTTP(w, r)
	})
}

// dialFrom connects as a client at remote (host:port).
func (e *env) dialFrom(tb testing.TB, enc frame.Encoding, remote string) *gatewaytest.Client {
	tb.Helper()
	c, err := gatewaytest.Dial(testCtx(tb), e.url, enc, &gatewaytest.Options{Header: http.Header{testRemoteHeader: {remote}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.CloseNow() })
	return c
}

// call sends a request and returns its response.
func call(tb testing.TB, c *gatewaytest.Client, req any) *mpimv1.Response {
	tb.Helper()
	r, err := c.Call(testCtx(tb), req)
	if err != nil {
		tb.Fatalf("%T: %v", req, err)
	}
	return r
}

// ok sends a request that must succeed.
func ok(tb testing.TB, c *gatewaytest.Client, req any) *mpimv1.Response {
	tb.Helper()
	r := call(tb, c, req)
	if e := r.GetError(); e != nil {
		tb.Fatalf("%T: error %s: %s", req, e.GetCode(), e.GetMessage())
	}
	return r
}

// fails sends a request that must fail with code.
func fails(tb testing.TB, c *gatewaytest.Client, code string, req any) *mpimv1.Error {
	tb.Helper()
	r := call(tb, c, req)
	if r.GetError().GetCode() != code {
		tb.Fatalf("%T: response %v, want error %q", req, r, code)
	}
	return r.GetError()
}

// user is a registered, logged-in test user.
type user struct {
	id     string
	name   string
	device string
	token  string
	c      *gatewaytest.Client
}

// login registers name (password "password-<name>") on a new connection in
// enc and logs it in as device "d1".
func (e *env) login(tb testing.TB, enc frame.Encoding, name string) *user {
	tb.Helper()
	c := e.dial(tb, enc)
	reg := ok(tb, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: name, Password: "password-" + name, DisplayName: strings.ToUpper(name)}})
	u := &user{id: reg.GetRegister().GetUserId(), name: name, device: "d1", c: c}
	res := ok(tb, c, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: name, Password: "password-" + name, DeviceId: u.device, Platform: "test"}})
	u.token = res.GetLogin().GetToken()
	if res.GetLogin().GetUserId() != u.id {
		tb.Fatalf("login as %s: user %q, registered %q", name, res.GetLogin().GetUserId(), u.id)
	}
	return u
}

// ping checks that c is still served.
func ping(tb testing.TB, c *gatewaytest.Client) {
	tb.Helper()
	r := ok(tb, c, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}})
	if r.GetPing().GetServerTimeMs() == 0 {
		tb.Fatalf("pong without time: %v", r)
	}
}

// project starts the MySQL and cache projectors (once) and waits until they
// have applied everything appended so far.
func (e *env) project(tb testing.TB) {
	tb.Helper()
	e.projOnce.Do(func() {
		rm, err := mysqlproj.NewReadModel(e.db, mysqlproj.Config{})
		if err != nil {
			tb.Fatal(err)
		}
		cp, err := cache.New(e.rdb, cache.Config{Prefix: e.prefix})
		if err != nil {
			tb.Fatal(err)
		}
		for _, p := range []projectors.Projector{rm, cp} {
			r, err := projectors.NewRunner(e.store, &projectors.Static{}, p, projectors.RunnerConfig{
				BatchSize: 200, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond})
			if err != nil {
				tb.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			tb.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					tb.Errorf("projector %s: %v", p.Name(), err)
				}
			})
			e.projs = append(e.projs, p.(projectors.Checkpointer))
		}
		tb.Cleanup(func() { rm.Close() })
	})
	ctx := testCtx(tb)
	heads := make([]eventstore.Position, e.store.Partitions())
	for p := range heads {
		info, err := e.store.Info(ctx, p)
		if err != nil {
			tb.Fatal(err)
		}
		heads[p] = info.Last
	}
	for _, proj := range e.projs {
		for p, head := range heads {
			for {
				pos, err := proj.Checkpoint(ctx, p)
				if err != nil {
					tb.Fatal(err)
				}
				if pos.Compare(head) >= 0 {
					break
				}
				select {
				case <-ctx.Done():
					tb.Fatalf("projector %s stuck at %v of partition %d (head %v)", proj.Name(), pos, p, head)
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}
}

// realDelivery makes the env use the real delivery hub (gateway/delivery)
// instead of the fake; it runs until the test ends.
func realDelivery(tb testing.TB) func(*gateway.Config, *gateway.Deps) {
	return func(c *gateway.Config, d *gateway.Deps) {
		h, err := delivery.New(d.Redis, delivery.Config{Prefix: c.Prefix, GatewayID: c.GatewayID,
			PollInterval: 50 * time.Millisecond, AckTimeout: time.Hour, Registerer: d.Registerer})
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()
		tb.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("delivery hub: %v", err)
			}
		})
		d.Hub = gateway.DeliveryHub(h)
	}
}

// runInbox runs the inbox projector until the test ends.
func (e *env) runInbox(tb testing.TB) {
	tb.Helper()
	p, err := inboxproj.New(e.rdb, inboxproj.Config{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := projectors.NewRunner(e.store, &projectors.Static{}, p, projectors.RunnerConfig{
		BatchSize: 200, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("inbox projector: %v", err)
		}
	})
}

// eventually retries cond until it holds or a minute passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeHub is a Hub in memory: it records attachments, acknowledgements and
// detaches, and lets tests deliver through the attached sinks.
type fakeHub struct {
	mu      sync.Mutex
	devices map[string]*fakeDevice // "<user> <device>" -> latest attachment
	all     []*fakeDevice
	failing bool
	// onAttach, if set, runs inside Attach with the new sink (a hub that
	// delivers during Attach, as a catch-up does).
	onAttach func(gateway.Sink)
	// beforeAttach, if set, runs at the start of Attach without the hub's
	// lock (another request may run meanwhile).
	beforeAttach func()
}

type fakeDevice struct {
	user, device string
	sink         gateway.Sink // records the pushes in flight, then passes them to the session's sink
	session      gateway.Sink

	mu       sync.Mutex
	acks     []string
	inflight []pushedAt // first pushes not acknowledged yet, in order
	detached bool
	clean    bool
}

// pushedAt is a push in flight on a fakeDevice.
type pushedAt struct {
	ms, seq uint64
	at      time.Time
}

func parseInboxID(id string) (ms, seq uint64) {
	fmt.Sscanf(id, "%d-%d", &ms, &seq)
	return ms, seq
}

// coveredBy reports whether an acknowledgement of inboxID covers p.
func (p pushedAt) coveredBy(inboxID string) bool {
	ms, seq := parseInboxID(inboxID)
	return p.ms < ms || p.ms == ms && p.seq <= seq
}

// inFlight is the sink a fakeDevice hands out: it records first pushes as
// the real hub does.
type inFlight struct {
	gateway.Sink
	d *fakeDevice
}

func (s inFlight) Push(del gateway.Delivery) error {
	if !del.Resend {
		ms, seq := parseInboxID(del.InboxID)
		s.d.mu.Lock()
		s.d.inflight = append(s.d.inflight, pushedAt{ms: ms, seq: seq, at: time.Now()})
		s.d.mu.Unlock()
	}
	return s.Sink.Push(del)
}

func newFakeHub() *fakeHub { return &fakeHub{devices: map[string]*fakeDevice{}} }

var _ gateway.Hub = (*fakeHub)(nil)

func (h *fakeHub) Attach(ctx context.Context, uid domain.UserID, did domain.DeviceID, sink gateway.Sink) (gateway.HubDevice, error) {
	user, device := string(uid), string(did)
	h.mu.Lock()
	before := h.beforeAttach
	h.mu.Unlock()
	if before != nil {
		before()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing {
		return nil, fmt.Errorf("fake hub: attach refused")
	}
	d := &fakeDevice{user: user, device: device, session: sink}
	d.sink = inFlight{Sink: sink, d: d}
	h.devices[user+" "+device] = d
	h.all = append(h.all, d)
	if h.onAttach != nil {
		h.onAttach(sink)
	}
	return d, nil
}

func (h *fakeHub) Signal(ctx context.Context, to []domain.UserID, s gateway.Signal) error {
	h.mu.Lock()
	var sinks []gateway.Sink
	for _, u := range to {
		for _, d := range h.devices {
			if d.user == string(u) && !d.isDetached() {
				sinks = append(sinks, d.sink)
			}
		}
	}
	h.mu.Unlock()
	for _, s2 := range sinks {
		s2.Signal(s)
	}
	return nil
}

func (h *fakeHub) Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]gateway.Presence, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[domain.UserID]gateway.Presence{}
	for _, u := range users {
		for _, d := range h.devices {
			if d.user == string(u) && !d.isDetached() {
				out[u] = gateway.Presence{Online: true}
			}
		}
	}
	return out, nil
}

func (h *fakeHub) DevicePresence(ctx context.Context, user domain.UserID) (map[domain.DeviceID]gateway.Presence, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[domain.DeviceID]gateway.Presence{}
	for _, d := range h.devices {
		if d.user == string(user) && !d.isDetached() {
			out[domain.DeviceID(d.device)] = gateway.Presence{Online: true, LastSeen: time.Now()}
		}
	}
	return out, nil
}

func (h *fakeHub) End(ctx context.Context, user domain.UserID, devices []domain.DeviceID, why string) error {
	h.mu.Lock()
	var ended []*fakeDevice
	for _, d := range h.devices {
		if d.user == string(user) && slices.Contains(devices, domain.DeviceID(d.device)) && !d.isDetached() {
			ended = append(ended, d)
		}
	}
	h.mu.Unlock()
	for _, d := range ended {
		if e, ok := d.session.(gateway.Endable); ok {
			e.Ended(why)
		}
		d.Detach(ctx, true)
	}
	return nil
}

// attachments returns every attachment so far, in order.
func (h *fakeHub) attachments() []*fakeDevice {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*fakeDevice(nil), h.all...)
}

// device returns the latest attachment of (user, device).
func (h *fakeHub) device(tb testing.TB, user, device string) *fakeDevice {
	tb.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[user+" "+device]
	if d == nil {
		tb.Fatalf("device %s of %s was never attached", device, user)
	}
	return d
}

func (d *fakeDevice) Ack(ctx context.Context, inboxID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acks = append(d.acks, inboxID)
	n := 0
	for n < len(d.inflight) && d.inflight[n].coveredBy(inboxID) {
		if o, ok := d.session.(gateway.AckObserver); ok {
			o.Acked(time.Since(d.inflight[n].at))
		}
		n++
	}
	d.inflight = d.inflight[n:]
	return nil
}

func (d *fakeDevice) Covers(inboxID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0 && d.inflight[0].coveredBy(inboxID)
}

func (d *fakeDevice) Detach(ctx context.Context, clean bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.detached, d.clean = true, clean
}

func (d *fakeDevice) isDetached() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detached
}

// state returns whether the device was detached, cleanly, and its acks.
func (d *fakeDevice) state() (detached, clean bool, acks []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detached, d.clean, append([]string(nil), d.acks...)
}
