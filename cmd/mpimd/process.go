package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/config"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/coord"
	"github.com/mpim/mpim/internal/sealed"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
)

// Main is one mpimd process: ParseFlags, then Run. End-to-end tests drive it
// the same way.
type Main struct {
	Config Config
	Stdout io.Writer
	Stderr io.Writer

	// ready is closed once the process serves (tests wait on it); opsAddr
	// and listenAddr are then the addresses of the ops and client servers.
	ready      chan struct{}
	opsAddr    string
	listenAddr string
}

// ParseFlags loads the configuration of role ("projector", "gateway" or
// "all") from args, the environment and the config file, and validates it.
func (m *Main) ParseFlags(role string, args []string) error {
	fs := flag.NewFlagSet("mpimd "+role, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	m.Config.Role = role
	m.Config.flags(fs)
	if err := config.Load(fs, args, "MPIM", "config", os.LookupEnv); err != nil {
		return err
	}
	m.Config.addPushByDefault(fs)
	return m.Config.Validate()
}

// deps are the process's connections and shared services.
type deps struct {
	rdb   redis.UniversalClient
	db    *sql.DB
	store *eventstore.Store
	zk    *coord.ZooKeeper // nil without --zookeeper
	reg   *prometheus.Registry
	lg    *slog.Logger
	// passwordKeys seal and open password hashes (gateways only).
	passwordKeys *sealed.Keys
}

// newRegistry returns the process's metric registry with the Go and
// process collectors on it. Beside the default Go metrics it exports the
// runtime's CPU estimates by class (runtime/metrics /cpu/classes/...:
// go_cpu_classes_gc_total_cpu_seconds_total, ..._idle_..., ..._total_...)
// so that the garbage collector's share of the CPU the process used can
// be read from /metrics (scripts/bench.sh does).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// task is a part of the process that runs until its context ends.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// Run starts the process's roles and runs them until ctx ends or one fails,
// then shuts down gracefully: the gateway drains its clients, projectors
// finish their batch and hand their partitions over.
func (m *Main) Run(ctx context.Context) error {
	c := &m.Config
	d := &deps{reg: newRegistry(), lg: c.logger(m.Stderr)}
	embeddedRedis, embeddedMySQL := c.embedded()
	if c.runs("gateway") {
		keys, err := c.passwordKeys(embeddedRedis, d.lg)
		if err != nil {
			return err
		}
		d.passwordKeys = keys
	}
	stopEmbedded, err := c.startEmbedded(m.Stderr, d.lg)
	defer stopEmbedded()
	if err != nil {
		return err
	}
	closeDeps, probes, err := m.open(ctx, d, embeddedMySQL)
	defer closeDeps()
	if err != nil {
		return err
	}
	var tasks []task
	var stops []func()
	if c.runs("projector") {
		t, err := m.projectorTasks(ctx, d)
		if err != nil {
			return err
		}
		tasks = append(tasks, t...)
	}
	if c.runs("gateway") {
		t, stop, err := m.gatewayTasks(ctx, d)
		if err != nil {
			return err
		}
		tasks = append(tasks, t...)
		stops = append(stops, stop)
	}
	ops, err := newOpsServer(c.HTTPAddr, c.httpLimits(), d.reg, probes, c.Pprof, d.lg)
	if err != nil {
		return fmt.Errorf("ops server: %w", err)
	}
	defer ops.Close()
	m.opsAddr = ops.Addr()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(tasks))
	for _, t := range tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.run(runCtx); err != nil && runCtx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", t.name, err)
			}
		}()
	}
	ops.ready.Store(true)
	d.lg.Info("mpimd running", "role", c.Role, "partitions", c.Partitions, "ops", ops.Addr(), "clients", m.listenAddr,
		"coordination", coordinationName(c))
	if m.listenAddr != "" {
		fmt.Fprintf(m.Stdout, "mpimd: web chat at http://%s/ (clients: ws://%s/ws)\n", m.listenAddr, m.listenAddr)
	}
	if m.ready != nil {
		close(m.ready)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	d.lg.Info("shutting down")
	ops.ready.Store(false)
	for _, stop := range stops {
		stop() // drain clients before the services under them go
	}
	cancel()
	wg.Wait()
	return runErr
}

// open connects to Redis, the event store, MySQL (migrated) and ZooKeeper.
// The returned function closes whatever was opened, also after an error.
func (m *Main) open(ctx context.Context, d *deps, embeddedMySQL bool) (func(), map[string]probe, error) {
	c := &m.Config
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rc, err := c.redisConfig()
	if err != nil {
		return closeAll, nil, err
	}
	rc.PoolSize, rc.Registerer, rc.Name = c.redisPoolSize(), d.reg, c.Role
	if d.rdb, err = connect.Redis(ctx, rc); err != nil {
		return closeAll, nil, err
	}
	closers = append(closers, func() { d.rdb.Close() })
	d.store, err = eventstore.Open(ctx, d.rdb, eventstore.Config{Prefix: c.Prefix, Partitions: c.Partitions,
		Durability: eventstore.Durability{RequireFsyncAlways: c.FsyncAlways, WaitReplicas: c.WaitReplicas}})
	if err != nil {
		return closeAll, nil, err
	}
	closers = append(closers, func() { d.store.Close() })
	probes := map[string]probe{"redis": func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() }}
	if c.needsMySQL() {
		if d.db, err = connect.MySQL(ctx, c.MySQL); err != nil {
			return closeAll, nil, err
		}
		closers = append(closers, func() { d.db.Close() })
		if embeddedMySQL {
			d.db.SetMaxOpenConns(embeddedMaxConns)
		}
		applied, err := schema.Migrate(ctx, d.db)
		if err != nil {
			return closeAll, nil, err
		}
		d.lg.Info("schema migrated", "applied", applied)
		probes["mysql"] = d.db.PingContext
	}
	if len(c.ZooKeeper) > 0 {
		if d.zk, err = m.zookeeper(ctx, d.lg); err != nil {
			return closeAll, nil, err
		}
		closers = append(closers, d.zk.Close)
	}
	return closeAll, probes, nil
}

// redisPoolSize sizes the Redis pool: every projector partition keeps one
// connection in a blocking XREAD, so a pool smaller than that starves the
// batches' writes until some read times out (measured: deliveries seconds
// late with the default pool of 10 per CPU).
func (c *Config) redisPoolSize() int {
	n := 64
	if c.runs("projector") {
		n += c.Partitions * len(c.Projectors)
	}
	return n
}

func coordinationName(c *Config) string {
	if len(c.ZooKeeper) == 0 {
		return "static (this process owns every partition)"
	}
	return "zookeeper " + c.ZooKeeper.String()
}

// zookeeper connects to ZooKeeper and checks the deployment's recorded
// partition count.
func (m *Main) zookeeper(ctx context.Context, lg *slog.Logger) (*coord.ZooKeeper, error) {
	c := &m.Config
	zk, err := coord.New(coord.Config{Servers: c.ZooKeeper, Root: c.ZKRoot, SessionTimeout: c.ZKSessionTimeout, MemberID: c.MemberID, Logger: lg})
	if err != nil {
		return nil, err
	}
	want := fmt.Sprint(c.Partitions)
	stored, err := zk.EnsureSetting(ctx, "partitions", want)
	if err != nil {
		zk.Close()
		return nil, err
	}
	if stored != want {
		zk.Close()
		return nil, fmt.Errorf("partition count mismatch: ZooKeeper records %s for this deployment, configured %s", stored, want)
	}
	return zk, nil
}

// coordinator is the projectors' ownership coordinator.
func (d *deps) coordinator() projectors.Coordinator {
	if d.zk != nil {
		return d.zk
	}
	return &projectors.Static{}
}
