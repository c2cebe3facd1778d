package delivery_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// patience bounds every wait: a safety net against hangs, never a timing
// assertion.
const patience = 60 * time.Second

// env is a real Redis under a key prefix of the test's own: one server,
// or with cluster set a Redis Cluster (rdb a *redis.ClusterClient, addr
// one of its nodes).
type env struct {
	addr    string
	rdb     redis.UniversalClient
	prefix  string
	keys    inbox.Keys
	cluster *testsvc.RedisClusterTarget
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr, PoolSize: 32})
	tb.Cleanup(func() { rdb.Close() })
	return &env{addr: rt.Addr, rdb: rdb, prefix: rt.Prefix, keys: inbox.NewKeys(rt.Prefix)}
}

// newClusterEnv is newEnv on the test services' Redis Cluster.
func newClusterEnv(tb testing.TB) *env {
	tb.Helper()
	ct := testsvc.RedisCluster(tb)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: ct.Addrs, PoolSize: 32})
	tb.Cleanup(func() { rdb.Close() })
	return &env{addr: ct.Addrs[0], rdb: rdb, prefix: ct.Prefix, keys: inbox.NewKeys(ct.Prefix), cluster: ct}
}

// testHub is a running Hub with its metrics.
type testHub struct {
	*delivery.Hub
	reg *prometheus.Registry
}

// hub starts a Hub of gateway gw on e (on rdb if given) and stops it when
// the test ends. Unless mod says otherwise, the position check runs every
// 50ms and pushes are not resent within the test.
func (e *env) hub(tb testing.TB, gw string, rdb redis.UniversalClient, mod func(*delivery.Config)) *testHub {
	tb.Helper()
	if rdb == nil {
		rdb = e.rdb
	}
	reg := prometheus.NewRegistry()
	cfg := delivery.Config{Prefix: e.prefix, GatewayID: gw, PollInterval: 50 * time.Millisecond, AckTimeout: time.Hour, Registerer: reg}
	if mod != nil {
		mod(&cfg)
	}
	h, err := delivery.New(rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("hub %s: Run: %v", gw, err)
			}
		case <-time.After(patience):
			tb.Errorf("hub %s: Run did not return", gw)
		}
	})
	return &testHub{Hub: h, reg: reg}
}

// metric returns the value of a counter or gauge of the hub.
func (h *testHub) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		sum := 0.0
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	return 0
}

// attach attaches a device and detaches it (uncleanly) when the test ends.
func (h *testHub) attach(tb testing.TB, user domain.UserID, device domain.DeviceID, s delivery.Sink) *delivery.Device {
	tb.Helper()
	d, err := h.Attach(context.Background(), user, device, s)
	if err != nil {
		tb.Fatalf("attach %s/%s: %v", user, device, err)
	}
	tb.Cleanup(func() { d.Detach(context.Background(), false) })
	return d
}

// clock is a controllable Now.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(time.Now().UnixMilli())
	return c
}

func (c *clock) Now() time.Time { return time.UnixMilli(c.ms.Load()) }
func (c *clock) Advance(d time.Duration) time.Time {
	return time.UnixMilli(c.ms.Add(d.Milliseconds()))
}

// sink records what a device is given. With fail set it refuses
// everything; with slow set it takes a little time per push (within what a
// Sink may take), to shake out interleavings.
type sink struct {
	fail     atomic.Bool
	slow     atomic.Bool
	replaced atomic.Int32 // Replaced calls
	ended    atomic.Int32 // Ended calls

	mu      sync.Mutex
	pushes  []delivery.Delivery
	signals []delivery.Signal
	syncs   []string
	changed chan struct{}
}

var (
	_ delivery.Sink        = (*sink)(nil)
	_ delivery.Replaceable = (*sink)(nil)
	_ delivery.Endable     = (*sink)(nil)
)

func (s *sink) Replaced() { s.replaced.Add(1) }

func (s *sink) Ended(reason string) { s.ended.Add(1) }

func newSink() *sink { return &sink{changed: make(chan struct{}, 1)} }

var errRefused = errors.New("sink: queue full")

func (s *sink) note() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sink) Push(d delivery.Delivery) error {
	if s.slow.Load() && !s.fail.Load() {
		// A slow client is part of what the tests vary (it lets the
		// writer get ahead of the pushes); no assertion depends on how
		// long it is.
		time.Sleep(20 * time.Microsecond)
	}
	return record(s, &s.pushes, d)
}

func (s *sink) Signal(sig delivery.Signal) error { return record(s, &s.signals, sig) }

func (s *sink) SyncRequired(cursor string) error { return record(s, &s.syncs, cursor) }

// record appends v to the sink's list (guarded by s.mu) and notes the
// change, or refuses it while the sink fails.
func record[T any](s *sink, list *[]T, v T) error {
	if s.fail.Load() {
		return errRefused
	}
	s.mu.Lock()
	*list = append(*list, v)
	s.mu.Unlock()
	s.note()
	return nil
}

// firsts returns the inbox ids of the pushes that are not resends.
func (s *sink) firsts() []string { return s.pushIDs(false) }

// resent returns the inbox ids of the resends.
func (s *sink) resent() []string { return s.pushIDs(true) }

// pushIDs returns the inbox ids of the pushes that are resends or not.
func (s *sink) pushIDs(resend bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, d := range s.pushes {
		if d.Resend == resend {
			out = append(out, d.InboxID)
		}
	}
	return out
}

func (s *sink) syncCursors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.syncs)
}

func (s *sink) signalKinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sig := range s.signals {
		out = append(out, sig.Kind)
	}
	return out
}

// waitFor waits until cond holds, re-checking whenever the sink changes
// (and every 10ms for conditions outside it).
func (s *sink) waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	waitFor(tb, what, s.changed, cond)
}

// waitFor waits until cond holds, re-checking on every signal of changed
// and every 10ms; it fails tb after patience.
func waitFor(tb testing.TB, what string, changed <-chan struct{}, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting for %s", what)
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// autoAck acknowledges every push to s on d, as a client does, until the
// test ends.
func autoAck(tb testing.TB, d *delivery.Device, s *sink) {
	tb.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		acked := 0
		for {
			s.mu.Lock()
			n := len(s.pushes)
			var last string
			if n > acked {
				last = s.pushes[n-1].InboxID
			}
			s.mu.Unlock()
			if n > acked {
				if err := d.Ack(context.Background(), last); err != nil {
					tb.Errorf("ack %s: %v", last, err)
					return
				}
				acked = n
				continue
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	tb.Cleanup(func() { close(stop); <-done })
}

// newUser returns a fresh user id.
func newUser() domain.UserID { return domain.UserID("u/" + ulid.Make().String()) }

// entry returns an inbox entry with a real envelope.
func entry(seq uint64) (inbox.Entry, error) {
	id := ulid.Make()
	env, err := proto.Marshal(&mpimv1.Event{Id: id[:], Aggregate: "d/test", OccurredAtMs: time.Now().UnixMilli(),
		Actor: &mpimv1.Actor{UserId: "u/x", DeviceId: "dev"}})
	return inbox.Entry{EventID: id, Type: "MessageSent", Partition: 0, Position: "1-1", Version: seq, Seq: seq, Envelope: env}, err
}

// add appends n entries to user's inbox without notifying anyone and
// returns their ids.
func (e *env) add(tb testing.TB, user domain.UserID, n int) []string {
	tb.Helper()
	ids, err := e.addErr(user, n)
	return mustIDs(tb, ids, err)
}

// mustIDs returns ids, failing tb if err is not nil.
func mustIDs(tb testing.TB, ids []string, err error) []string {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

func (e *env) addErr(user domain.UserID, n int) ([]string, error) {
	ctx := context.Background()
	pipe := e.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, n)
	for i := range n {
		en, err := entry(uint64(i + 1))
		if err != nil {
			return nil, err
		}
		cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: e.keys.Inbox(user), Values: en.AppendFields(nil)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	ids := make([]string, n)
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids, nil
}

// project appends n entries to user's inbox and then notifies the gateways
// where the user has a live route, as the inbox projector does.
func (e *env) project(tb testing.TB, user domain.UserID, n int) []string {
	tb.Helper()
	ids, err := e.projectErr(user, n)
	return mustIDs(tb, ids, err)
}

func (e *env) projectErr(user domain.UserID, n int) ([]string, error) {
	ids, err := e.addErr(user, n)
	if err != nil {
		return nil, err
	}
	return ids, e.notifyRoutes(user, ids[len(ids)-1])
}

// notifyRoutes publishes a notification of user's inbox up to last to each
// gateway with a live route of the user.
func (e *env) notifyRoutes(user domain.UserID, last string) error {
	ctx := context.Background()
	routes, err := e.rdb.HGetAll(ctx, e.keys.Presence(user)).Result()
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, v := range routes {
		r, err := inbox.DecodeRoute(v)
		if err != nil {
			return err
		}
		if !r.Live(time.Now()) || seen[r.Gateway] {
			continue
		}
		seen[r.Gateway] = true
		n := inbox.Notification{Users: []inbox.Head{{User: user, Last: last}}}
		if err := e.rdb.Publish(ctx, e.keys.Notify(r.Gateway), n.Encode()).Err(); err != nil {
			return err
		}
	}
	return nil
}

// route returns a device's presence route; false if it has none.
func (e *env) route(tb testing.TB, user domain.UserID, device string) (inbox.Route, bool) {
	tb.Helper()
	v, err := e.rdb.HGet(context.Background(), e.keys.Presence(user), device).Result()
	if errors.Is(err, redis.Nil) {
		return inbox.Route{}, false
	}
	if err != nil {
		tb.Fatal(err)
	}
	r, err := inbox.DecodeRoute(v)
	if err != nil {
		tb.Fatal(err)
	}
	return r, true
}

// cursor returns a device's stored cursor ("" if none).
func (e *env) cursor(tb testing.TB, user domain.UserID, device string) string {
	tb.Helper()
	v, err := e.rdb.Get(context.Background(), e.keys.Cursor(user, domain.DeviceID(device))).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func (e *env) setCursor(tb testing.TB, user domain.UserID, device, id string) {
	tb.Helper()
	if err := e.rdb.Set(context.Background(), e.keys.Cursor(user, domain.DeviceID(device)), id, time.Hour).Err(); err != nil {
		tb.Fatal(err)
	}
}

// waitSubscribed waits until gateway gw's hub listens on its channel.
func (e *env) waitSubscribed(tb testing.TB, gw string) {
	tb.Helper()
	waitFor(tb, "gateway "+gw+" to subscribe", nil, func() bool {
		ctx, ch := context.Background(), e.keys.Notify(gw)
		numSub := e.rdb.PubSubNumSub
		if cc, ok := e.rdb.(*redis.ClusterClient); ok { // sharded: ask the channel's master
			node, err := cc.MasterForKey(ctx, ch)
			if err != nil {
				tb.Fatal(err)
			}
			numSub = node.PubSubShardNumSub
		}
		n, err := numSub(ctx, ch).Result()
		if err != nil {
			tb.Fatal(err)
		}
		return n[ch] > 0
	})
}

// inOrder fails tb unless got equals want.
func inOrder(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if slices.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	tb.Fatalf("%s: %d pushes, want %d; first difference at %d: got %s, want %s", what, len(got), len(want), i,
		strings.Join(got[i:min(i+3, len(got))], ","), strings.Join(want[i:min(i+3, len(want))], ","))
}

// cmdCounter counts the commands a client sends, pipelined or not, that
// match.
type cmdCounter struct {
	match func(redis.Cmder) bool
	n     atomic.Int64
}

func (c *cmdCounter) count(cmd redis.Cmder) {
	if c.match(cmd) {
		c.n.Add(1)
	}
}

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.count(cmd); return next(ctx, cmd) }
}

func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

// countingClient returns a client of e's Redis whose commands that match
// are counted.
func (e *env) countingClient(tb testing.TB, match func(redis.Cmder) bool) (*redis.Client, *cmdCounter) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: e.addr, PoolSize: 16})
	tb.Cleanup(func() { rdb.Close() })
	c := &cmdCounter{match: match}
	rdb.AddHook(c)
	return rdb, c
}
