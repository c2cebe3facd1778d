package push

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Start says where a partition the projector never processed begins.
type Start string

const (
	// StartHead begins after the partition's last entry when the
	// projector first claims it: old events are never pushed (the default).
	StartHead Start = "head"
	// StartZero begins at the partition's first entry.
	StartZero Start = "zero"
)

// ParseStart returns the Start named s ("head" or "zero").
func ParseStart(s string) (Start, error) {
	switch Start(s) {
	case StartHead, StartZero:
		return Start(s), nil
	}
	return "", fmt.Errorf("push: start must be head or zero, got %q", s)
}

// maxRecipients bounds the users one event may notify (a group's members);
// beyond it the rest are left out and logged.
const maxRecipients = 100_000

// Bounds of Config.MaxPending.
const (
	// DefaultMaxPending is the default Config.MaxPending.
	DefaultMaxPending = 64
	// MaxMaxPending is the largest Config.MaxPending.
	MaxMaxPending = 10_000
)

// Config configures a Projector. The zero value of each field takes the
// default documented next to it.
type Config struct {
	// Prefix is the deployment's key prefix (the event store's).
	Prefix string
	// Start is where a partition never processed begins (default
	// StartHead).
	Start Start
	// MaxRecipients bounds the users one event notifies (default and at
	// most 100,000: mpimd's largest group).
	MaxRecipients int
	// MaxPending bounds the batches of a partition that were applied but
	// are not settled yet, whose checkpoint is still to be written
	// (default DefaultMaxPending, 1..MaxMaxPending). Apply waits while it
	// is reached. With a collapse window W and batches of n events a
	// partition is pushed at up to MaxPending*n/W events a second; after a
	// crash up to MaxPending batches are sent again.
	MaxPending int
	// Now is the clock of presence and mutes (default time.Now).
	Now func() time.Time
	// Logger is the projector's logger (default: discard).
	Logger *slog.Logger
	// Registerer receives the projector's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Linger is how long a runner lets a partition's events gather before
	// it applies a batch that is not full (projectors.Lingering; default
	// 50ms, negative: none, at most 1s). A batch costs its lookups and a
	// checkpoint script whatever its size, and a push waits out the
	// webhook's collapse window anyway.
	Linger time.Duration
}

// maxLinger bounds Config.Linger.
const maxLinger = time.Second

func (c *Config) setDefaults() {
	c.Start = cmp.Or(c.Start, StartHead)
	c.MaxRecipients = cmp.Or(c.MaxRecipients, maxRecipients)
	c.MaxPending = cmp.Or(c.MaxPending, DefaultMaxPending)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	c.Linger = cmp.Or(c.Linger, 50*time.Millisecond)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate returns every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if _, err := ParseStart(string(c.Start)); err != nil {
		errs = append(errs, err)
	}
	if c.MaxRecipients < 1 || c.MaxRecipients > maxRecipients {
		errs = append(errs, fmt.Errorf("push: max recipients must be 1..%d, got %d", maxRecipients, c.MaxRecipients))
	}
	if c.MaxPending < 1 || c.MaxPending > MaxMaxPending {
		errs = append(errs, fmt.Errorf("push: max pending batches must be 1..%d, got %d", MaxMaxPending, c.MaxPending))
	}
	if c.Linger > maxLinger {
		errs = append(errs, fmt.Errorf("push: linger must be at most %s, got %s", maxLinger, c.Linger))
	}
	return errors.Join(errs...)
}
