package push_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors/cache"
	"github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/push/webhook"
	"github.com/mpim/mpim/query"
	"github.com/mpim/mpim/schema"
	"github.com/redis/go-redis/v9"
)

// secret is the receiver's HMAC key.
var secret = []byte("push-projector-test-secret")

// call is one request the receiver took.
type call struct {
	header http.Header
	body   []byte
	p      webhook.Payload
}

// receiver is the webhook endpoint of a test: it records every call and
// answers with answer (200 by default); hold, when set, is waited on
// before answering.
type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []call
	got   chan struct{} // one send per call, cap 1000
	hold  chan struct{}
}

func newReceiver(tb testing.TB, hold chan struct{}) *receiver {
	tb.Helper()
	r := &receiver{got: make(chan struct{}, 1000), hold: hold}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		c := call{header: req.Header.Clone(), body: body}
		if err := json.Unmarshal(body, &c.p); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.calls = append(r.calls, c)
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
		if r.hold != nil {
			select {
			case <-r.hold:
			case <-req.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

// taken returns the calls taken so far.
func (r *receiver) taken() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// env is a command service on a Redis of its own, its cache and MySQL
// projectors, the query service over their read models and a webhook
// sender to a receiver.
type env struct {
	w      *commandtest.Env
	ctx    context.Context
	cache  *cache.Projector
	db     *sql.DB
	rm     *mysql.ReadModel
	dir    *query.Service
	sender *webhook.Sender
	recv   *receiver
	now    time.Time
}

func newEnv(tb testing.TB, hold chan struct{}) *env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	e := &env{ctx: ctx, now: time.Now()}
	e.w = commandtest.New(tb, commandtest.Options{Partitions: 2})
	var err error
	if e.cache, err = cache.New(e.w.RDB, cache.Config{Prefix: e.w.Prefix}); err != nil {
		tb.Fatal(err)
	}
	if e.db, err = connect.MySQL(ctx, testsvc.MySQL(tb)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	if _, err := schema.Migrate(ctx, e.db); err != nil {
		tb.Fatal(err)
	}
	if e.rm, err = mysql.NewReadModel(e.db, mysql.Config{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.rm.Close() })
	if e.dir, err = query.New(e.db, e.w.RDB, query.Config{Prefix: e.w.Prefix}); err != nil {
		tb.Fatal(err)
	}
	e.recv = newReceiver(tb, hold)
	e.sender, err = webhook.New(e.w.RDB, webhook.Config{URL: e.recv.srv.URL, Secret: secret, Window: webhook.MinWindow,
		DeadLetterKey: e.w.Prefix + "push:dead", MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if hold != nil {
			select {
			case <-hold:
			default:
				close(hold)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.sender.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	return e
}

// projector returns a push projector starting at start.
func (e *env) projector(tb testing.TB, start push.Start) *push.Projector {
	tb.Helper()
	return e.projectorWith(tb, e.dir, push.Config{Start: start})
}

// projectorWith returns a push projector reading dir, with cfg's prefix and
// clock set to the env's.
func (e *env) projectorWith(tb testing.TB, dir push.Directory, cfg push.Config) *push.Projector {
	tb.Helper()
	cfg.Prefix, cfg.Now = e.w.Prefix, func() time.Time { return e.now }
	p, err := push.New(e.w.RDB, dir, e.sender, e.w.Store, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// trips is a go-redis hook that counts round trips: those of the
// checkpoint scripts (EVALSHA or EVAL sent alone) and the others (a
// command sent alone, or a pipeline, whatever its length), a new
// connection's handshake left out.
type trips struct {
	mu               sync.Mutex
	lookups, scripts int
}

func (c *trips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.mu.Lock()
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.scripts++
		} else if !handshake(cmd) {
			c.lookups++
		}
		c.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (c *trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.mu.Lock()
		if !handshake(cmds[0]) {
			c.lookups++
		}
		c.mu.Unlock()
		return next(ctx, cmds)
	}
}

// handshake reports whether cmd is part of a new connection's handshake
// (HELLO, then CLIENT SETINFO in a pipeline), which is not counted.
func handshake(cmd redis.Cmder) bool {
	name := cmd.Name()
	return name == "hello" || name == "client"
}

// take returns the round trips counted since the last take.
func (c *trips) take() (lookups, scripts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lookups, scripts = c.lookups, c.scripts
	c.lookups, c.scripts = 0, 0
	return lookups, scripts
}

// countedProjector returns a push projector starting at start whose
// Redis client, its directory's included, counts its round trips in the
// trips returned (the sender's are not counted).
func (e *env) countedProjector(tb testing.TB, start push.Start) (*push.Projector, *trips) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.w.Addr})
	tb.Cleanup(func() { rdb.Close() })
	c := &trips{}
	rdb.AddHook(c)
	dir, err := query.New(e.db, rdb, query.Config{Prefix: e.w.Prefix})
	if err != nil {
		tb.Fatal(err)
	}
	p, err := push.New(rdb, dir, e.sender, e.w.Store, push.Config{Prefix: e.w.Prefix, Start: start, Now: func() time.Time { return e.now }})
	if err != nil {
		tb.Fatal(err)
	}
	return p, c
}

// waitCheckpointOf waits until p's stored checkpoint of the partition is
// want (the env's context is the safety net).
func (e *env) waitCheckpointOf(tb testing.TB, p *push.Projector, partition int, want eventstore.Position) {
	tb.Helper()
	for {
		got, err := p.Checkpoint(e.ctx, partition)
		if err != nil {
			tb.Fatal(err)
		}
		if got == want {
			return
		}
		select {
		case <-e.ctx.Done():
			tb.Fatalf("checkpoint %s, want %s", got, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// run runs the MySQL and cache projectors, then p, to the head of the log.
func (e *env) run(tb testing.TB, p *push.Projector) {
	tb.Helper()
	projectorstest.RunToHead(tb, e.w.Store, e.rm, e.rm, 100)
	e.runLagging(tb, p)
}

// runLagging runs the cache projector, then p, to the head of the log,
// leaving the MySQL projector behind.
func (e *env) runLagging(tb testing.TB, p *push.Projector) {
	tb.Helper()
	projectorstest.RunToHead(tb, e.w.Store, e.cache, e.cache, 100)
	projectorstest.RunToHead(tb, e.w.Store, p, p, 100)
}

func (e *env) must(tb testing.TB) func(command.Result, error) {
	return func(_ command.Result, err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// user registers name shown as display, logs in each device and gives
// the devices in tokens a push token (the device id as the token).
func (e *env) user(tb testing.TB, name, display string, devices []domain.DeviceID, tokens ...domain.DeviceID) command.Actor {
	tb.Helper()
	a := commandtest.Register(tb, e.w.Svc, name, display)
	for _, d := range devices {
		dev := a
		dev.Device = d
		e.must(tb)(e.w.Svc.UpdateUser(e.ctx, dev, domain.LogIn{Device: d, Platform: "test"}))
	}
	for _, d := range tokens {
		dev := a
		dev.Device = d
		e.must(tb)(e.w.Svc.RegisterPushToken(e.ctx, dev, domain.PushToken{Platform: domain.PushAPNs, Token: "tok-" + string(d), AppID: "com.example.chat"}))
	}
	return a
}

// online gives u's device a live presence route, as a gateway does.
func (e *env) online(tb testing.TB, u domain.UserID, d domain.DeviceID) {
	tb.Helper()
	r := inbox.Route{Gateway: "gw1", Expires: e.now.Add(inbox.RouteTTL)}
	if err := e.w.RDB.HSet(e.ctx, inbox.NewKeys(e.w.Prefix).Presence(u), string(d), r.Encode()).Err(); err != nil {
		tb.Fatal(err)
	}
}

// send sends text from a to conv.
func (e *env) send(tb testing.TB, a command.Actor, conv domain.ConversationID, text string) command.Sent {
	tb.Helper()
	s, err := e.w.Svc.Send(e.ctx, a, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: text})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// checkSigned fails tb unless c carries a valid signature of its body.
func checkSigned(tb testing.TB, c call) {
	tb.Helper()
	ts, err := strconv.ParseInt(c.header.Get(webhook.HeaderTimestamp), 10, 64)
	if err != nil || !webhook.Verify(secret, ts, c.body, c.header.Get(webhook.HeaderSignature)) {
		tb.Errorf("call to %s is not signed: ts %q, signature %q", c.p.User, c.header.Get(webhook.HeaderTimestamp), c.header.Get(webhook.HeaderSignature))
	}
}
