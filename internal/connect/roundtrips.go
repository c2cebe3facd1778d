package connect

import (
	"context"

	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// roundTrips is a go-redis hook that counts what a client sends: one round
// trip per Process (a single command, a blocking read included) and one per
// pipeline or transaction, whatever its length, and every command of it
// (MULTI and EXEC of a transaction included). A command that go-redis
// retries counts once. A new connection's handshake (HELLO, then CLIENT
// SETINFO, AUTH or SELECT in one pipeline) passes through the hooks and
// counts like any command. Pub/sub connections are not counted.
type roundTrips struct {
	trips, cmds prometheus.Counter
}

var _ redis.Hook = roundTrips{}

// newRoundTrips registers the counters, labelled client=name, on reg.
func newRoundTrips(reg prometheus.Registerer, name string) (roundTrips, error) {
	labels := prometheus.Labels{"client": name}
	h := roundTrips{
		trips: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_redis_roundtrips_total", ConstLabels: labels,
			Help: "Round trips to Redis: one per command sent alone, one per pipeline or transaction."}),
		cmds: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_redis_commands_sent_total", ConstLabels: labels,
			Help: "Commands sent to Redis, each command of a pipeline counted (commands run inside scripts are not: see INFO commandstats)."}),
	}
	return h, promreg.Register(reg, "connect: redis client "+name+" metrics", h.trips, h.cmds)
}

func (h roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Inc()
		h.cmds.Inc()
		return next(ctx, cmd)
	}
}

func (h roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Inc()
		h.cmds.Add(float64(len(cmds)))
		return next(ctx, cmds)
	}
}
