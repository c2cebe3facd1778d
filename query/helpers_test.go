package query

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/schema"
	"github.com/redis/go-redis/v9"
)

// t0 is the time the seeded rows happen at.
var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// env is a Service over a migrated database of its own and a Redis prefix
// of its own, with the rows each test seeds as the projectors would write
// them.
type env struct {
	db  *sql.DB
	rdb *redis.Client
	s   *Service
	now time.Time
}

func newEnv(tb testing.TB, cfg Config) *env {
	tb.Helper()
	rt := testsvc.Redis(tb)
	e := &env{rdb: redis.NewClient(&redis.Options{Addr: rt.Addr}), now: t0}
	tb.Cleanup(func() { e.rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if e.db, err = connect.MySQL(ctx, testsvc.MySQL(tb)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { e.db.Close() })
	if _, err := schema.Migrate(ctx, e.db); err != nil {
		tb.Fatal(err)
	}
	cfg.Prefix = rt.Prefix
	cfg.Now = func() time.Time { return e.now }
	if e.s, err = New(e.db, e.rdb, cfg); err != nil {
		tb.Fatal(err)
	}
	return e
}

// exec runs seeding statements.
func (e *env) exec(tb testing.TB, q string, args ...any) {
	tb.Helper()
	if _, err := e.db.Exec(q, args...); err != nil {
		tb.Fatalf("%s: %v", q, err)
	}
}

// user adds a users row.
func (e *env) user(tb testing.TB, id domain.UserID, username, name string) {
	tb.Helper()
	e.exec(tb, "INSERT INTO users (user_id, username, display_name, password_hash, created_at, updated_at, version) VALUES (?, ?, ?, '', ?, ?, 1)",
		string(id), username, name, t0, t0)
}

// ids returns n user ids, in order.
func ids(n int) []domain.UserID {
	out := make([]domain.UserID, n)
	for i := range out {
		out[i] = domain.UserID("u/01ARZ3NDEKTSV4RRFFQ69G5FA" + string(rune('A'+i)))
	}
	return out
}

// ctx returns a context bounded well beyond any healthy answer.
func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
