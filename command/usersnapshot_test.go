package command_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/proto/codec"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

// entriesRead is a go-redis hook that counts the stream entries XRANGE
// commands return, in plain calls and in pipelines.
type entriesRead struct{ n atomic.Int64 }

func (h *entriesRead) count(cmd redis.Cmder) {
	if x, ok := cmd.(*redis.XMessageSliceCmd); ok {
		h.n.Add(int64(len(x.Val())))
	}
}

func (h *entriesRead) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *entriesRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(cmd)
		return err
	}
}

func (h *entriesRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.count(c)
		}
		return err
	}
}

var _ redis.Hook = (*entriesRead)(nil)

// TestLoginReadsBoundedHistory checks that a user with 10,000 logins logs in
// (loads the user to check the password, then appends DeviceLoggedIn)
// reading a bounded number of events, in a process whose in-memory cache
// has never seen the user, and that the state loaded from the snapshot is
// the state the whole history gives.
func TestLoginReadsBoundedHistory(t *testing.T) {
	const logins = 10_000
	const bound = 2 * 64 // two loads a login, each at most the snapshot interval
	rt := testsvc.Redis(t)
	hook := &entriesRead{}
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	rdb.AddHook(hook)
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	newService := func() *command.Service {
		svc, err := command.New(store, command.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	id, err := newService().Register(ctx, "frequent", commandtest.PasswordHash, "Frequent", "")
	if err != nil {
		t.Fatal(err)
	}
	// 10,000 logins, appended in bulk as the log would hold them.
	agg := string(id)
	version := uint64(1)
	for version < logins {
		n := min(100, logins-int(version))
		envs := make([]*mpimv1.Event, n)
		for i := range envs {
			envs[i], err = codec.Envelope(codec.Meta{ID: ulid.Make(), Aggregate: agg, OccurredAt: time.Now(), ActorUser: id},
				domain.DeviceLoggedIn{Device: domain.DeviceID("dev-" + string(rune('a'+i%26))), Platform: "test"})
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := store.Append(ctx, eventstore.AppendRequest{PartitionKey: agg, Streams: []eventstore.StreamAppend{
			{Aggregate: agg, Expected: eventstore.Exact(version), KeepHistory: true, Events: envs}}}); err != nil {
			t.Fatal(err)
		}
		version += uint64(n)
	}

	login := func(svc *command.Service, device string) int64 {
		t.Helper()
		before := hook.n.Load()
		if _, err := svc.User(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.UpdateUser(ctx, command.Actor{User: id, Device: domain.DeviceID(device)},
			domain.LogIn{Device: domain.DeviceID(device), Platform: "test"}); err != nil {
			t.Fatal(err)
		}
		return hook.n.Load() - before
	}
	// The first load after the bulk append reads the history once (as it
	// would for a user whose snapshot expired) and saves a snapshot.
	login(newService(), "warm-up")
	// Every later login, each in a fresh process, reads a bounded number.
	for i := range 200 {
		if n := login(newService(), "phone"); n > bound {
			t.Fatalf("login %d after %d logins read %d events, want at most %d", i, logins, n, bound)
		}
	}
	// The loaded state is the state of the whole history.
	fromSnapshot, err := newService().User(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.ReadAggregate(ctx, agg, agg)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]domain.Event, len(recs))
	for i, r := range recs {
		if _, events[i], err = codec.Decode(r.Event); err != nil {
			t.Fatal(err)
		}
	}
	full, err := domain.RebuildUser(id, events)
	if err != nil {
		t.Fatal(err)
	}
	if fromSnapshot.Version() != full.Version() || len(fromSnapshot.Devices()) != len(full.Devices()) ||
		fromSnapshot.PasswordHash() != full.PasswordHash() || fromSnapshot.DisplayName() != full.DisplayName() {
		t.Fatalf("loaded v%d %+v, whole history v%d %+v", fromSnapshot.Version(), fromSnapshot.Snapshot(), full.Version(), full.Snapshot())
	}
	// A snapshot that does not continue into the stream is not used.
	if err := store.SaveSnapshot(ctx, agg, agg, eventstore.Snapshot{Version: 5, Position: eventstore.Position{}, Data: []byte(`{"f":1,"Version":5}`)}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if u, err := newService().User(ctx, id); err != nil || u.Version() != full.Version() || u.PasswordHash() != full.PasswordHash() {
		t.Fatalf("with a stale snapshot: %v, %v", u, err)
	}
}
