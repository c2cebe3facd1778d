package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/gateway/web"
	"github.com/mpim/mpim/internal/coord"
	"golang.org/x/time/rate"
)

// selfDirectory is the gateway directory without ZooKeeper: the one gateway
// there is, this one.
type selfDirectory coord.GatewayInfo

func (s selfDirectory) Gateways(context.Context) ([]coord.GatewayInfo, error) {
	return []coord.GatewayInfo{coord.GatewayInfo(s)}, nil
}

// gatewayTasks starts the gateway: the delivery hub, the client server
// (/ws, /dispatch: without ZooKeeper it hands out this gateway) and, with
// ZooKeeper, the gateway's registration. The
// returned stop drains the clients (Goaway, flush, close) before the rest of
// the process shuts down.
func (m *Main) gatewayTasks(ctx context.Context, d *deps) ([]task, func(), error) {
	c := &m.Config
	policy := domain.DefaultPolicy()
	policy.MaxGroupMembers = c.MaxGroupMembers
	policy.MaxMute = c.MaxMute
	svc, err := command.New(d.store, command.Config{Policy: policy})
	if err != nil {
		return nil, nil, err
	}
	dc := c.deliveryConfig()
	dc.Registerer, dc.Logger = d.reg, d.lg.With("part", "delivery")
	hub, err := delivery.New(d.rdb, dc)
	if err != nil {
		return nil, nil, err
	}
	ln, err := listen(c.Listen, "gateway", c.httpLimits(), d.reg)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway listen: %w", err)
	}
	m.listenAddr = ln.Addr().String()
	public := c.PublicAddr
	if public == "" {
		public = m.listenAddr
	}
	deps := gateway.Deps{Commands: svc, DB: d.db, Redis: d.rdb, Hub: gateway.DeliveryHub(hub), Registerer: d.reg, Logger: d.lg.With("part", "gateway")}
	var reg *coord.Registration
	if d.zk != nil {
		if reg, err = d.zk.RegisterGateway(ctx, c.GatewayID, coord.GatewayInfo{Addr: public}); err != nil {
			ln.Close()
			return nil, nil, err
		}
		deps.Load = reg
	}
	if c.weakPasswordHashing() {
		d.lg.Warn("password hashing below the OWASP recommendation (argon2id 19 MiB x 2 passes, or 7 MiB x 5): for tests and benchmarks only",
			"password-memory-kib", c.PasswordMemoryKiB, "password-passes", c.PasswordPasses)
	}
	srv, err := gateway.New(gateway.Config{GatewayID: c.GatewayID, PublicAddr: public, Prefix: c.Prefix,
		ConnRate: rate.Limit(c.ClientRate), ConnBurst: c.ClientBurst, UserRate: rate.Limit(2 * c.ClientRate), UserBurst: 2 * c.ClientBurst,
		Argon2: gateway.Argon2Params{Time: uint32(c.PasswordPasses), MemoryKiB: uint32(c.PasswordMemoryKiB), Threads: 1}, PasswordKeys: d.passwordKeys,
		LoginFailuresPerUser: c.LoginFailuresPerUser, LoginFailuresPerAddr: c.LoginFailuresPerAddr,
		PasswordAttemptsPerAddr: c.PasswordAttemptsPerAddr, MaxUnauthPerAddr: c.MaxUnauthPerAddr, MaxUnauth: c.MaxUnauth,
		TokenPruneInterval: tokenPruneInterval(c.TokenPruneInterval), TokenPruneMax: c.TokenPruneMax,
		MemoryLimitFraction: c.RedisMemoryLimit, MemoryCheckInterval: c.RedisMemoryCheck,
		MaxDevicesListed: c.MaxDevicesListed,
		OutboxBytes:      c.OutboxBytes, OutboxHardBytes: c.OutboxHardBytes, OutboxDrainTimeout: c.OutboxDrainTimeout,
		HistoryPageBytes: c.HistoryPageBytes, HeavyQueryCost: c.HeavyQueryCost, HeavyInFlightPerUser: c.HeavyQueriesInFlight}, deps)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv.Handler())
	mux.Handle("/", web.Handler())
	var dir gateway.GatewayDirectory = selfDirectory{ID: c.GatewayID, Addr: public}
	if d.zk != nil {
		dir = d.zk
	}
	mux.Handle("/dispatch", gateway.NewDispatcher(dir, d.lg))
	httpSrv := newHTTPServer(mux, c.httpLimits(), d.lg)
	serve := task{name: "gateway server", run: func(ctx context.Context) error {
		err := httpSrv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}}
	hubTask := task{name: "delivery hub", run: hub.Run}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if reg != nil {
			reg.Close() // the dispatcher stops sending clients here first
		}
		if err := srv.Shutdown(sctx); err != nil {
			d.lg.Warn("gateway drain", "err", err)
		}
		if err := httpSrv.Shutdown(sctx); err != nil {
			d.lg.Warn("gateway http shutdown", "err", err)
		}
	}
	return []task{hubTask, serve}, stop, nil
}

// tokenPruneInterval turns --token-prune-interval's 0 (never) into the
// gateway's negative.
func tokenPruneInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// deliveryConfig is the delivery hub's configuration from the flags.
func (c *Config) deliveryConfig() delivery.Config {
	return delivery.Config{Prefix: c.Prefix, GatewayID: c.GatewayID, AckInterval: c.AckInterval}
}
