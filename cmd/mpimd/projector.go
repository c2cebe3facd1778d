package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/config"
	"github.com/mpim/mpim/internal/connect"
	"github.com/mpim/mpim/internal/coord"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/mpim/mpim/schema"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"os"
)

// Main is one mpimd process: parse the configuration, then Run. End-to-end
// tests drive it the same way.
type Main struct {
	Config Config
	Stdout io.Writer
	Stderr io.Writer

	// ready is closed when the process has started serving (tests wait on
	// it); opsAddr is then the address of the ops server.
	ready   chan struct{}
	opsAddr string
}

// ParseFlags loads the configuration of subcommand name from args, the
// environment and the config file, and validates it.
func (m *Main) ParseFlags(name string, args []string) error {
	fs := flag.NewFlagSet("mpimd "+name, flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	m.Config.flags(fs)
	if err := config.Load(fs, args, "MPIM", "config", os.LookupEnv); err != nil {
		return err
	}
	return m.Config.Validate()
}

// deps are the process's connections.
type deps struct {
	rdb   *redis.Client
	db    *sql.DB
	store *eventstore.Store
	reg   *prometheus.Registry
	lg    *slog.Logger
}

// Run runs the projectors until ctx ends, then shuts down gracefully.
func (m *Main) Run(ctx context.Context) error {
	c := &m.Config
	lg := c.logger(m.Stderr)
	d := &deps{reg: prometheus.NewRegistry(), lg: lg}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var err error
	if d.rdb, err = connect.Redis(startCtx, connect.RedisConfig{Addr: c.RedisAddr, Password: c.RedisPassword, DB: c.RedisDB}); err != nil {
		return err
	}
	defer d.rdb.Close()
	d.store, err = eventstore.Open(startCtx, d.rdb, eventstore.Config{Prefix: c.Prefix, Partitions: c.Partitions,
		Durability: eventstore.Durability{RequireFsyncAlways: c.FsyncAlways, WaitReplicas: c.WaitReplicas}})
	if err != nil {
		return err
	}
	defer d.store.Close()
	probes := map[string]probe{"redis": func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() }}
	if slices.Contains(c.Projectors, "mysql") || slices.Contains(c.Projectors, "archive") {
		if d.db, err = connect.MySQL(startCtx, c.MySQL); err != nil {
			return err
		}
		defer d.db.Close()
		applied, err := schema.Migrate(startCtx, d.db)
		if err != nil {
			return err
		}
		lg.Info("schema migrated", "applied", applied)
		probes["mysql"] = d.db.PingContext
	}
	coordinator, closeCoord, err := m.coordinator(startCtx, lg)
	if err != nil {
		return err
	}
	defer closeCoord()

	projs, err := buildProjectors(startCtx, c, d)
	if err != nil {
		return err
	}
	ops, err := newOpsServer(c.HTTPAddr, d.reg, probes, lg)
	if err != nil {
		return fmt.Errorf("ops server: %w", err)
	}
	defer ops.Close()
	m.opsAddr = ops.Addr()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, len(projs)+1)
	for _, p := range projs {
		r, err := projectors.NewRunner(d.store, coordinator, p, projectors.RunnerConfig{BatchSize: c.BatchSize, Logger: lg, Registerer: d.reg})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(runCtx); err != nil {
				errc <- fmt.Errorf("projector %s: %w", p.Name(), err)
			}
		}()
	}
	if c.TrimInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			trimLoop(runCtx, c.TrimInterval, d.store, projs, lg)
		}()
	}
	ops.ready.Store(true)
	lg.Info("mpimd projector running", "projectors", c.Projectors.String(), "partitions", c.Partitions, "http", ops.Addr(),
		"coordination", coordinationName(c))
	if m.ready != nil {
		close(m.ready)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	lg.Info("shutting down")
	stop()
	wg.Wait()
	return runErr
}

func coordinationName(c *Config) string {
	if len(c.ZooKeeper) == 0 {
		return "static (this process owns every partition)"
	}
	return "zookeeper " + c.ZooKeeper.String()
}

// coordinator returns the ZooKeeper coordinator, after checking the
// deployment's recorded partition count, or the static one.
func (m *Main) coordinator(ctx context.Context, lg *slog.Logger) (projectors.Coordinator, func(), error) {
	c := &m.Config
	if len(c.ZooKeeper) == 0 {
		return &projectors.Static{}, func() {}, nil
	}
	zk, err := coord.New(coord.Config{Servers: c.ZooKeeper, Root: c.ZKRoot, SessionTimeout: c.ZKSessionTimeout, MemberID: c.MemberID, Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	stored, err := zk.EnsureSetting(ctx, "partitions", strconv.Itoa(c.Partitions))
	if err != nil {
		zk.Close()
		return nil, nil, err
	}
	if stored != strconv.Itoa(c.Partitions) {
		zk.Close()
		return nil, nil, fmt.Errorf("partition count mismatch: ZooKeeper records %s for this deployment, configured %d", stored, c.Partitions)
	}
	return zk, zk.Close, nil
}

// checkpointed is a projector whose checkpoints bound trimming.
type checkpointed interface {
	projectors.Projector
	projectors.Checkpointer
}

// buildProjectors constructs the selected projectors.
func buildProjectors(ctx context.Context, c *Config, d *deps) ([]checkpointed, error) {
	var out []checkpointed
	for _, name := range projectorNames {
		if !slices.Contains(c.Projectors, name) {
			continue
		}
		p, err := buildProjector(ctx, name, c, d)
		if err != nil {
			return nil, fmt.Errorf("projector %s: %w", name, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func buildProjector(ctx context.Context, name string, c *Config, d *deps) (checkpointed, error) {
	lg := d.lg.With("projector", name)
	switch name {
	case "cache":
		return cache.New(d.rdb, cache.Config{Prefix: c.Prefix, Logger: lg})
	case "inbox":
		return inbox.New(d.rdb, inbox.Config{Prefix: c.Prefix, Window: int64(c.InboxWindow), Registerer: d.reg, Logger: lg})
	}
	return buildMySQLProjector(ctx, name, c, d)
}

// trimLoop trims the log below every checkpoint each interval.
func trimLoop(ctx context.Context, every time.Duration, store *eventstore.Store, projs []checkpointed, lg *slog.Logger) {
	cps := make([]projectors.Checkpointer, len(projs))
	for i, p := range projs {
		cps[i] = p
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := projectors.TrimLog(ctx, store, cps)
		if err != nil && !errors.Is(err, context.Canceled) {
			lg.Warn("trim failed", "err", err)
			continue
		}
		if n > 0 {
			lg.Info("log trimmed", "entries", n)
		}
	}
}
