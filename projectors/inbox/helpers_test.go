package inbox_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/command/commandtest"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/redis/go-redis/v9"
)

// env is the real write path (command service on the event store) on a real
// Redis under a key prefix of its own.
type env struct {
	rdb    redis.UniversalClient
	addr   string // the address of the Redis rdb is a client of
	store  *eventstore.Store
	svc    *command.Service
	prefix string
	keys   delivery.Keys
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	w := commandtest.New(tb, commandtest.Options{Partitions: 4})
	return &env{rdb: w.RDB, addr: w.Addr, store: w.Store, svc: w.Svc, prefix: w.Prefix, keys: delivery.NewKeys(w.Prefix)}
}

func (e *env) projector(tb testing.TB, cfg inbox.Config) *inbox.Projector {
	tb.Helper()
	cfg.Prefix = e.prefix
	p, err := inbox.New(e.rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func (e *env) register(tb testing.TB, name string) command.Actor {
	tb.Helper()
	return commandtest.Register(tb, e.svc, name, name)
}

// runToHead runs proj until cp's checkpoint of every partition is the
// partition's last entry.
func (e *env) runToHead(tb testing.TB, proj projectors.Projector, cp projectors.Checkpointer) {
	tb.Helper()
	projectorstest.RunToHead(tb, e.store, proj, cp, 64)
}

// entry is one inbox entry with its inbox id.
type entry struct {
	id string
	delivery.Entry
}

func (e *env) inbox(tb testing.TB, u domain.UserID) []entry {
	tb.Helper()
	msgs, err := e.rdb.XRange(context.Background(), e.keys.Inbox(u), "-", "+").Result()
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]entry, len(msgs))
	for i, m := range msgs {
		d, err := delivery.DecodeEntry(m.Values)
		if err != nil {
			tb.Fatalf("inbox of %s, entry %s: %v", u, m.ID, err)
		}
		out[i] = entry{id: m.ID, Entry: d}
	}
	return out
}

// batch returns every event of partition p after after, as one batch.
func (e *env) batch(tb testing.TB, p int, token uint64, after eventstore.Position) *projectors.Batch {
	tb.Helper()
	recs, err := e.store.ReadPartition(context.Background(), p, after, 100_000)
	var de *eventstore.DecodeError
	if err != nil && !errors.As(err, &de) {
		tb.Fatal(err)
	}
	if len(recs) == 0 {
		tb.Fatalf("no events in partition %d after %s", p, after)
	}
	return &projectors.Batch{Partition: p, Token: token, After: after, To: recs[len(recs)-1].Position, Events: recs}
}

// keysUnder returns the sorted keys matching pattern.
func (e *env) keysUnder(tb testing.TB, pattern string) []string {
	tb.Helper()
	var out []string
	iter := e.rdb.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// book records which users must receive which events.
type book struct {
	want map[domain.UserID]map[[16]byte]string // user -> event id -> what
}

func newBook() *book { return &book{want: map[domain.UserID]map[[16]byte]string{}} }

func (b *book) add(tb testing.TB, what string, id [16]byte, users ...command.Actor) {
	tb.Helper()
	for _, u := range users {
		m := b.want[u.User]
		if m == nil {
			m = map[[16]byte]string{}
			b.want[u.User] = m
		}
		m[id] = what
	}
}

// step fails tb on a command error and returns the command's first event id.
type step struct{ tb testing.TB }

func (s step) id(res command.Result, err error) [16]byte {
	s.tb.Helper()
	if err != nil {
		s.tb.Fatal(err)
	}
	return res.Events[0].ID
}

func (s step) sent(m command.Sent, err error) command.Sent {
	s.tb.Helper()
	if err != nil {
		s.tb.Fatal(err)
	}
	return m
}
