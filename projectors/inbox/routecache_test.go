package inbox_test

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// lookupCounter is a go-redis hook that counts the HGETALLs sent, and the
// XREVRANGEs of inboxes (reads of an inbox's last id).
type lookupCounter struct{ n, inboxReads atomic.Int64 }

func (c *lookupCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *lookupCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		return next(ctx, cmd)
	}
}

func (c *lookupCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (c *lookupCounter) count(cmd redis.Cmder) {
	switch args := cmd.Args(); {
	case cmd.Name() == "hgetall":
		c.n.Add(1)
	case cmd.Name() == "xrevrange" && strings.Contains(fmt.Sprint(args[1]), "inbox:{"):
		c.inboxReads.Add(1)
	}
}

// take returns the HGETALLs counted since the last take.
func (c *lookupCounter) take() int64 { return c.n.Swap(0) }

// routed is a group chat, its projector on a client that counts lookups,
// and a subscription to the notifications of gateways gw-1 to gw-4.
type routed struct {
	e        *env
	users    []command.Actor
	gid      domain.GroupID
	part     int
	proj     *inbox.Projector
	reg      *prometheus.Registry
	lookups  *lookupCounter
	sub      *redis.PubSub
	channels []string
	after    eventstore.Position
	round    int
}

func newRouted(t *testing.T, cfg inbox.Config, names ...string) *routed {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	r := &routed{e: e, reg: prometheus.NewRegistry(), lookups: &lookupCounter{}}
	r.users, r.gid, r.part = groupChat(t, e, names...)
	rdb := redis.NewClient(&redis.Options{Addr: e.addr})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(r.lookups)
	cfg.Prefix, cfg.Registerer = e.prefix, r.reg
	var err error
	if r.proj, err = inbox.New(rdb, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := r.proj.Claim(ctx, r.part, 7); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		r.channels = append(r.channels, e.keys.Notify(fmt.Sprint("gw-", i)))
	}
	r.sub = e.rdb.Subscribe(ctx, r.channels...)
	t.Cleanup(func() { r.sub.Close() })
	for range r.channels {
		if _, err := r.sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// announce does what a gateway does on attach (route set) or clean detach
// (route nil): it writes the presence hash and appends the numbered change.
func (r *routed) announce(t *testing.T, u command.Actor, device, gateway string, route *delivery.Route) {
	t.Helper()
	ctx := context.Background()
	keys := r.e.keys
	c := delivery.RouteChange{User: u.User, Device: domain.DeviceID(device), Gateway: gateway, Deleted: route == nil}
	if route != nil {
		c.Route = *route
		r.e.route(t, u, device, gateway, route.Expires)
	} else if err := r.e.rdb.HDel(ctx, keys.Presence(u.User), device).Err(); err != nil {
		t.Fatal(err)
	}
	n, err := r.e.rdb.Incr(ctx, keys.RouteSeq()).Result()
	if err != nil {
		t.Fatal(err)
	}
	args := c.ChangeArgs()
	values := []any{delivery.FieldChangeSeq, strconv.FormatInt(n, 10), delivery.FieldChangeUser, args[0],
		delivery.FieldChangeDevice, args[1], delivery.FieldChangeGateway, args[2], delivery.FieldChangeRoute, args[3]}
	if err := r.e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.RouteChanges(), Values: values}).Err(); err != nil {
		t.Fatal(err)
	}
}

// send has every user say something, applies the batch and returns, per
// gateway number, the users notified.
func (r *routed) send(t *testing.T) map[int][]domain.UserID {
	t.Helper()
	for _, u := range r.users {
		r.e.say(t, u, r.gid, fmt.Sprint("round ", r.round))
	}
	r.round++
	b := r.e.batch(t, r.part, 7, r.after)
	if err := r.proj.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	r.after = b.To
	got := map[int][]domain.UserID{}
	for ch, notes := range drain(t, r.e, r.sub, r.channels) {
		for i, c := range r.channels {
			if c != ch {
				continue
			}
			for _, n := range notes {
				for _, h := range n.Users {
					got[i+1] = append(got[i+1], h.User)
				}
			}
		}
	}
	return got
}

func (r *routed) want(t *testing.T, what string, got, want map[int][]domain.UserID, lookups int64) {
	t.Helper()
	for gw, us := range want {
		want[gw] = sortUsers(us)
	}
	for gw, us := range got {
		got[gw] = sortUsers(us)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: notified %v, want %v", what, got, want)
	}
	if n := r.lookups.take(); n != lookups {
		t.Errorf("%s: %d presence lookups, want %d", what, n, lookups)
	}
}

func sortUsers(us []domain.UserID) []domain.UserID {
	hs := make([]delivery.Head, len(us))
	for i, u := range us {
		hs[i].User = u
	}
	hs = sortHeads(hs...)
	for i, h := range hs {
		us[i] = h.User
	}
	return us
}

func TestCachedRecipientsAreNotLookedUpAgain(t *testing.T) {
	r := newRouted(t, inbox.Config{}, "alice", "bob", "carol")
	alice, bob := r.users[0], r.users[1]
	live := delivery.Route{Gateway: "gw-1", Expires: time.Now().Add(time.Hour)}
	r.announce(t, alice, "phone", "gw-1", &live)
	r.e.route(t, bob, "phone", "gw-2", live.Expires) // written before the cache follows changes
	// carol is offline.
	want := map[int][]domain.UserID{1: {alice.User}, 2: {bob.User}}
	r.want(t, "first batch", r.send(t), want, 3)
	r.want(t, "second batch", r.send(t), map[int][]domain.UserID{1: {alice.User}, 2: {bob.User}}, 0)
	if got := counter(t, r.reg, "mpim_inbox_route_cache_hits_total"); got != 3 {
		t.Fatalf("cache hits %v, want 3", got)
	}
}

func TestRouteChangesUpdateTheCache(t *testing.T) {
	r := newRouted(t, inbox.Config{}, "alice", "bob", "carol")
	alice, bob, carol := r.users[0], r.users[1], r.users[2]
	expires := time.Now().Add(time.Hour)
	route := func(gw string) *delivery.Route { return &delivery.Route{Gateway: gw, Expires: expires} }
	r.announce(t, alice, "phone", "gw-1", route("gw-1"))
	r.want(t, "first batch", r.send(t), map[int][]domain.UserID{1: {alice.User}}, 3)

	r.announce(t, alice, "phone", "gw-2", route("gw-2"))  // reconnected elsewhere
	r.announce(t, carol, "laptop", "gw-3", route("gw-3")) // came online
	r.want(t, "after attaches", r.send(t), map[int][]domain.UserID{2: {alice.User}, 3: {carol.User}}, 0)

	r.announce(t, alice, "phone", "gw-1", nil) // the old gateway's late clean detach
	r.announce(t, carol, "laptop", "gw-3", nil)
	r.announce(t, bob, "tablet", "gw-4", route("gw-4"))
	r.want(t, "after detaches", r.send(t), map[int][]domain.UserID{2: {alice.User}, 4: {bob.User}}, 0)
}

func TestMissedRouteChangesFallBackToLookups(t *testing.T) {
	r := newRouted(t, inbox.Config{}, "alice", "bob")
	alice, bob := r.users[0], r.users[1]
	ctx := context.Background()
	expires := time.Now().Add(time.Hour)
	r.announce(t, alice, "phone", "gw-1", &delivery.Route{Gateway: "gw-1", Expires: expires})
	r.want(t, "first batch", r.send(t), map[int][]domain.UserID{1: {alice.User}}, 2)

	// A change the cache never reads: its number is taken, its entry lost.
	r.e.route(t, bob, "phone", "gw-2", expires)
	if err := r.e.rdb.Incr(ctx, r.e.keys.RouteSeq()).Err(); err != nil {
		t.Fatal(err)
	}
	r.announce(t, alice, "tablet", "gw-3", &delivery.Route{Gateway: "gw-3", Expires: expires})
	r.want(t, "after a gap", r.send(t), map[int][]domain.UserID{1: {alice.User}, 2: {bob.User}, 3: {alice.User}}, 2)
	if got := counter(t, r.reg, "mpim_inbox_route_cache_resets_total"); got != 1 {
		t.Fatalf("cache resets %v, want 1", got)
	}
	r.want(t, "cache rebuilt", r.send(t), map[int][]domain.UserID{1: {alice.User}, 2: {bob.User}, 3: {alice.User}}, 0)

	// The change stream cannot be read: every recipient is looked up, and
	// the batch still applies.
	if err := r.e.rdb.Set(ctx, r.e.keys.RouteChanges(), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.e.route(t, bob, "phone", "gw-4", expires) // unannounced: seen only by a lookup
	r.want(t, "unreadable changes", r.send(t), map[int][]domain.UserID{1: {alice.User}, 3: {alice.User}, 4: {bob.User}}, 2)
}

func TestExpiredRoutesAreLookedUpAndIgnored(t *testing.T) {
	start := time.Now()
	var now atomic.Int64
	now.Store(start.UnixNano())
	r := newRouted(t, inbox.Config{Now: func() time.Time { return time.Unix(0, now.Load()) }}, "alice", "bob")
	alice, bob := r.users[0], r.users[1]
	soon := start.Add(10 * time.Second)
	r.announce(t, alice, "phone", "gw-1", &delivery.Route{Gateway: "gw-1", Expires: soon})
	r.announce(t, bob, "phone", "gw-2", &delivery.Route{Gateway: "gw-2", Expires: soon})
	r.want(t, "first batch", r.send(t), map[int][]domain.UserID{1: {alice.User}, 2: {bob.User}}, 2)

	// alice's gateway heartbeats (unannounced); bob's died.
	r.e.route(t, alice, "phone", "gw-1", start.Add(time.Minute))
	now.Store(soon.UnixNano())
	r.want(t, "past the cached deadlines", r.send(t), map[int][]domain.UserID{1: {alice.User}}, 2)
	r.want(t, "cached again", r.send(t), map[int][]domain.UserID{1: {alice.User}}, 0)
}

func TestRouteCacheIsBounded(t *testing.T) {
	for name, cfg := range map[string]inbox.Config{
		"entries": {RouteCacheEntries: 2},
		"bytes":   {RouteCacheBytes: 4 << 10},
	} {
		t.Run(name, func(t *testing.T) {
			names := make([]string, 40)
			for i := range names {
				names[i] = fmt.Sprint("user", i)
			}
			r := newRouted(t, cfg, names...)
			expires := time.Now().Add(time.Hour)
			for _, u := range r.users {
				r.announce(t, u, "phone", "gw-1", &delivery.Route{Gateway: "gw-1", Expires: expires})
			}
			for round := range 3 {
				got := r.send(t)
				if len(got[1]) != len(r.users) {
					t.Fatalf("round %d: %d users notified, want %d", round, len(got[1]), len(r.users))
				}
				n, size := r.proj.RouteCacheSize()
				if n > 2 && cfg.RouteCacheEntries == 2 || size > 4<<10 {
					t.Fatalf("round %d: the cache holds %d users, %d bytes", round, n, size)
				}
				if round > 0 && r.lookups.take() < int64(len(r.users)-n) {
					t.Fatalf("round %d: evicted users were not looked up", round)
				}
				r.lookups.take()
			}
			if counter(t, r.reg, "mpim_inbox_route_cache_evictions_total") == 0 {
				t.Fatal("no evictions counted")
			}
		})
	}
}
