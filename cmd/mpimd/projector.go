package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/periodic"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/cache"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/push/webhook"
)

// projectorTasks builds the selected projectors' runners and the trim loop.
func (m *Main) projectorTasks(ctx context.Context, d *deps) ([]task, error) {
	c := &m.Config
	projs, err := buildProjectors(ctx, c, d)
	if err != nil {
		return nil, err
	}
	// One read and one decode per partition feed every runner of the
	// process (projectors.SharedLog).
	slc := c.sharedLogConfig()
	slc.Registerer = d.reg
	log, err := projectors.NewSharedLog(d.store, slc)
	if err != nil {
		return nil, err
	}
	var sender *webhook.Sender
	if slices.Contains(c.Projectors, push.Name) {
		var p *push.Projector
		if p, sender, err = buildPush(c, d); err != nil {
			return nil, fmt.Errorf("projector %s: %w", push.Name, err)
		}
		projs = append(projs, p)
	}
	var tasks []task
	for _, p := range projs {
		r, err := projectors.NewRunner(log, d.coordinator(), p, projectors.RunnerConfig{BatchSize: c.BatchSize, MaxAttempts: c.MaxAttempts, Logger: d.lg, Registerer: d.reg})
		if err != nil {
			if sender != nil {
				closeSender(sender)
			}
			return nil, err
		}
		run := r.Run
		if p.Name() == push.Name {
			// The sender outlives the runner's last Apply: it is closed
			// once the runner returned.
			run = func(ctx context.Context) error {
				err := r.Run(ctx)
				if cerr := closeSender(sender); cerr != nil {
					d.lg.Warn("push webhook closed with calls unsettled; they are sent again after a restart", "err", cerr)
				}
				return err
			}
		}
		tasks = append(tasks, task{name: "projector " + p.Name(), run: run})
	}
	if c.TrimInterval > 0 {
		cps := make([]projectors.Checkpointer, len(projs))
		for i, p := range projs {
			cps[i] = p
		}
		tr, err := projectors.NewTapTrimmer(d.store, d.store, cps,
			projectors.TapRetention{MaxAge: c.TapMaxAge, MaxBytes: c.TapMaxBytes, Logger: d.lg.With("task", "trim")}, d.reg)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, task{name: "trim", run: func(ctx context.Context) error {
			trimLoop(ctx, c.TrimInterval, tr, d.lg)
			return nil
		}})
		tasks = append(tasks, task{name: "dead-letter trim", run: func(ctx context.Context) error {
			trimDeadLetters(ctx, c.TrimInterval, c.DLQMaxAge, d.store, d.lg)
			return nil
		}})
	}
	return tasks, nil
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
		return cache.New(d.rdb, cache.Config{Prefix: c.Prefix, Logger: lg, WaitReplicas: c.WaitReplicas})
	case "inbox":
		ic := c.inboxConfig()
		ic.Registerer, ic.Logger = d.reg, lg
		return inbox.New(d.rdb, ic)
	}
	return buildMySQLProjector(ctx, name, c, d)
}

// trimLoop trims the log below every checkpoint and tap group floor each
// interval.
func trimLoop(ctx context.Context, every time.Duration, tr *projectors.TapTrimmer, lg *slog.Logger) {
	periodic.Run(ctx, every, nil, func() {
		n, err := tr.Trim(ctx)
		if err != nil && !errors.Is(err, context.Canceled) {
			lg.Warn("trim failed", "err", err)
			return
		}
		if n > 0 {
			lg.Info("log trimmed", "entries", n)
		}
	})
}

// trimDeadLetters deletes tap dead letters older than maxAge each interval,
// beside trimLoop.
func trimDeadLetters(ctx context.Context, every, maxAge time.Duration, store *eventstore.Store, lg *slog.Logger) {
	periodic.Run(ctx, every, nil, func() {
		n, err := store.TrimDeadLetters(ctx, maxAge)
		if err != nil && !errors.Is(err, context.Canceled) {
			lg.Warn("dead-letter trim failed", "err", err)
			return
		}
		if n > 0 {
			lg.Info("dead letters trimmed", "entries", n, "max_age", maxAge)
		}
	})
}

// sharedLogConfig is the shared log's configuration from the flags.
func (c *Config) sharedLogConfig() projectors.SharedLogConfig {
	return projectors.SharedLogConfig{MaxEntries: c.SharedLogEntries, MaxBytes: c.SharedLogBytes}
}

// inboxConfig is the inbox projector's configuration from the flags.
func (c *Config) inboxConfig() inbox.Config {
	return inbox.Config{Prefix: c.Prefix, Window: int64(c.InboxWindow), QuotaBytes: c.InboxQuotaBytes,
		NotifyBytes: c.InboxNotifyBytes, RouteCacheEntries: c.RouteCacheEntries, RouteCacheBytes: c.RouteCacheBytes,
		WaitReplicas: c.WaitReplicas}
}
