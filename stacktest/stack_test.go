package stacktest

import (
	"testing"
	"time"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
	inboxproj "github.com/mpim/mpim/projectors/inbox"
	mysqlproj "github.com/mpim/mpim/projectors/mysql"
	"github.com/mpim/mpim/projectors/projectorstest"
)

// env is a gateway in process (gatewaytest.Env) whose read models the
// tests fill by running the real projectors over its log.
type env struct {
	*gatewaytest.Env
	readModel *mysqlproj.ReadModel // nil until the first project
	cache     *cache.Projector
}

// newEnv starts a gateway as gatewaytest.New does.
func newEnv(tb testing.TB, tweak ...gatewaytest.Tweak) *env {
	tb.Helper()
	return &env{Env: gatewaytest.New(tb, tweak...)}
}

// newEnvOn starts a second gateway on base's deployment, as
// gatewaytest.NewOn does; it projects into the same read models.
func newEnvOn(tb testing.TB, base *env, tweak ...gatewaytest.Tweak) *env {
	tb.Helper()
	return &env{Env: gatewaytest.NewOn(tb, base.Env, tweak...)}
}

// project runs the MySQL and cache projectors until they have applied
// everything appended so far.
func (e *env) project(tb testing.TB) {
	tb.Helper()
	if e.readModel == nil {
		rm, err := mysqlproj.NewReadModel(e.DB, mysqlproj.Config{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { rm.Close() })
		cp, err := cache.New(e.Redis, cache.Config{Prefix: e.Prefix})
		if err != nil {
			tb.Fatal(err)
		}
		e.readModel, e.cache = rm, cp
	}
	projectorstest.RunToHead(tb, e.Store, e.readModel, e.readModel, 200)
	projectorstest.RunToHead(tb, e.Store, e.cache, e.cache, 200)
}

// runInbox runs the inbox projector until the test ends.
func (e *env) runInbox(tb testing.TB) {
	tb.Helper()
	p, err := inboxproj.New(e.Redis, inboxproj.Config{Prefix: e.Prefix})
	if err != nil {
		tb.Fatal(err)
	}
	r, err := projectors.NewRunner(e.Store, &projectors.Static{}, p, projectors.RunnerConfig{
		BatchSize: 200, Block: 20 * time.Millisecond, RetryBackoff: 5 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	gatewaytest.Go(tb, "inbox projector", r.Run)
}
