package cache

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Projector. The zero value of each field takes the
// default documented next to it.
type Config struct {
	// Prefix is the deployment's key prefix (the event store's Prefix).
	Prefix string
	// QuarantineLen caps the quarantine stream (default 10,000, approximate).
	QuarantineLen int64
	// Logger is the projector's logger (default: discard).
	Logger *slog.Logger
	// Linger is how long a runner lets a partition's events gather before
	// it applies a batch that is not full (projectors.Lingering; default
	// 50ms, negative: none). The gateway reads the model for presence,
	// typing and profiles, where 50ms more lag goes unnoticed.
	Linger time.Duration
	// WaitReplicas, when positive, holds the checkpoint of a batch until
	// that many replicas have its writes (WAIT on each master that took
	// some, internal/replwait): a failover then loses no cache write below
	// the checkpoint. A batch whose writes do not reach them within
	// WaitTimeout fails, unavailable, and is applied again.
	WaitReplicas int
	// WaitTimeout bounds each WAIT (default 1s when WaitReplicas > 0).
	WaitTimeout time.Duration
}

func (c *Config) setDefaults() {
	c.QuarantineLen = cmp.Or(c.QuarantineLen, 10_000)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	c.Linger = cmp.Or(c.Linger, 50*time.Millisecond)
	if c.WaitReplicas > 0 && c.WaitTimeout == 0 {
		c.WaitTimeout = time.Second
	}
}

// Validate returns the problems of the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.QuarantineLen < 1 {
		errs = append(errs, fmt.Errorf("cache: quarantine length must be positive, got %d", c.QuarantineLen))
	}
	if c.WaitReplicas < 0 || c.WaitTimeout < 0 {
		errs = append(errs, fmt.Errorf("cache: wait replicas and wait timeout must not be negative, got %d and %s", c.WaitReplicas, c.WaitTimeout))
	}
	return errors.Join(errs...)
}
