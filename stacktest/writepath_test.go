package stacktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	inboxproj "github.com/mpim/mpim/projectors/inbox"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
)

// deliveryEnv is the real write side and the inbox projector on a real
// Redis, for tests that attach devices to delivery hubs directly.
type deliveryEnv struct {
	rdb    *redis.Client
	prefix string
	keys   inbox.Keys
}

// writePath is the real write side on a Redis of the test's own: the
// command service on the event store, and the inbox projector run by the
// runner until the test ends.
func writePath(tb testing.TB) (*deliveryEnv, *command.Service) {
	tb.Helper()
	rt := testsvc.Redis(tb)
	e := &deliveryEnv{rdb: redis.NewClient(&redis.Options{Addr: rt.Addr, PoolSize: 32}), prefix: rt.Prefix, keys: inbox.NewKeys(rt.Prefix)}
	tb.Cleanup(func() { e.rdb.Close() })
	store, err := eventstore.Open(context.Background(), e.rdb, eventstore.Config{Prefix: e.prefix, Partitions: 4})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() }) // after the runner stopped
	svc, err := command.New(store, command.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	proj, err := inboxproj.New(e.rdb, inboxproj.Config{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := projectors.NewRunner(store, &projectors.Static{}, proj, projectors.RunnerConfig{Block: 20 * time.Millisecond, BatchSize: 64})
	if err != nil {
		tb.Fatal(err)
	}
	gatewaytest.Go(tb, "runner", r.Run)
	return e, svc
}

// hub runs the delivery hub of gateway gw until the test ends; pushes are
// not resent within the test.
func (e *deliveryEnv) hub(tb testing.TB, gw string) *delivery.Hub {
	tb.Helper()
	h, err := delivery.New(e.rdb, delivery.Config{Prefix: e.prefix, GatewayID: gw, PollInterval: 50 * time.Millisecond,
		AckTimeout: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	gatewaytest.Go(tb, "hub "+gw, h.Run)
	return h
}

// attach attaches a device to h, recording what it is given, and detaches
// it when the test ends.
func attach(tb testing.TB, h *delivery.Hub, user domain.UserID, device domain.DeviceID) (*delivery.Device, *recorder) {
	tb.Helper()
	r := &recorder{}
	d, err := h.Attach(context.Background(), user, device, r)
	if err != nil {
		tb.Fatalf("attach %s/%s: %v", user, device, err)
	}
	tb.Cleanup(func() { d.Detach(context.Background(), false) })
	return d, r
}

// cursor returns a device's stored cursor ("" if none).
func (e *deliveryEnv) cursor(tb testing.TB, user domain.UserID, device domain.DeviceID) string {
	tb.Helper()
	v, err := e.rdb.Get(context.Background(), e.keys.Cursor(user, device)).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// recorder is a delivery.Sink that keeps every push; it is safe for
// concurrent use.
type recorder struct {
	mu     sync.Mutex
	pushes []delivery.Delivery
}

func (r *recorder) Push(d delivery.Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes = append(r.pushes, d)
	return nil
}

func (r *recorder) Signal(delivery.Signal) error { return nil }

func (r *recorder) SyncRequired(string) error { return nil }

// all returns the pushes so far.
func (r *recorder) all() []delivery.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pushes)
}

// firsts returns the inbox ids of the pushes that are not resends.
func (r *recorder) firsts() []string {
	var out []string
	for _, d := range r.all() {
		if !d.Resend {
			out = append(out, d.InboxID)
		}
	}
	return out
}

// autoAck acknowledges the latest push to r on d whenever there is a new
// one, as a client does, until the test ends.
func autoAck(tb testing.TB, d *delivery.Device, r *recorder) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		acked := 0
		for ctx.Err() == nil {
			ps := r.all()
			if len(ps) == acked {
				time.Sleep(time.Millisecond)
				continue
			}
			if err := d.Ack(ctx, ps[len(ps)-1].InboxID); err != nil && ctx.Err() == nil {
				tb.Errorf("ack %s: %v", ps[len(ps)-1].InboxID, err)
				return
			}
			acked = len(ps)
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

func register(tb testing.TB, svc *command.Service, name string) command.Actor {
	tb.Helper()
	return commandtest.Register(tb, svc, name, name)
}

func TestWritePathReachesEveryDeviceInOrderWithVersionsAndSeqs(t *testing.T) {
	e, svc := writePath(t)
	a, b := e.hub(t, "gw-a"), e.hub(t, "gw-b")
	ctx := context.Background()
	alice, bob := register(t, svc, "alice"), register(t, svc, "bob")

	dPhone, phone := attach(t, a, bob.User, "phone")
	autoAck(t, dPhone, phone)
	_, laptop := attach(t, a, bob.User, "laptop") // never acknowledges
	_, desktop := attach(t, b, alice.User, "desktop")

	if _, err := svc.Contact(ctx, alice, bob.User, domain.RequestFriend{From: alice.User, To: bob.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Contact(ctx, bob, alice.User, domain.AcceptFriend{By: bob.User}); err != nil {
		t.Fatal(err)
	}
	conv := domain.DirectConversation(alice.User, bob.User)
	const messages = 50
	for i := range messages {
		from := alice
		if i%3 == 2 {
			from = bob
		}
		if _, err := svc.Send(ctx, from, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: fmt.Sprint("m", i)}); err != nil {
			t.Fatal(err)
		}
	}

	for name, c := range map[string]struct {
		s    *recorder
		user domain.UserID
	}{"bob's phone": {phone, bob.User}, "bob's laptop": {laptop, bob.User}, "alice's desktop": {desktop, alice.User}} {
		var inbox []string
		gatewaytest.Eventually(t, name, func() bool {
			msgs, err := e.rdb.XRange(ctx, e.keys.Inbox(c.user), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			inbox = inbox[:0]
			for _, m := range msgs {
				inbox = append(inbox, m.ID)
			}
			return len(inbox) >= messages+2 && slices.Equal(c.s.firsts(), inbox)
		})
		var seqs []uint64
		for _, d := range c.s.all() {
			ev := new(mpimv1.Event)
			if err := proto.Unmarshal(d.Envelope, ev); err != nil {
				t.Fatalf("%s: push %s: %v", name, d.InboxID, err)
			}
			if ev.GetVersion() == 0 || string(ev.GetId()) != string(d.EventID[:]) {
				t.Errorf("%s: push %s of %s: version %d, id %x", name, d.InboxID, d.Type, ev.GetVersion(), ev.GetId())
			}
			if d.Type == "MessageSent" && !slices.Contains(seqs, ev.GetSeq()) { // an at-least-once retry may repeat one
				seqs = append(seqs, ev.GetSeq())
			}
		}
		if len(seqs) != messages || !slices.IsSorted(seqs) || seqs[0] != 1 {
			t.Errorf("%s: message seqs %v, want 1..%d in order", name, seqs, messages)
		}
	}
	last := phone.firsts()[len(phone.firsts())-1]
	gatewaytest.Eventually(t, "the phone's cursor", func() bool { return e.cursor(t, bob.User, "phone") == last })
	if got := e.cursor(t, bob.User, "laptop"); got != "" {
		t.Errorf("the laptop never acknowledged, yet its cursor is %q", got)
	}
}
