package cache

import (
	"fmt"
	"log/slog"
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
}

func (c *Config) setDefaults() {
	if c.QuarantineLen == 0 {
		c.QuarantineLen = 10_000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate returns the problems of the configuration.
func (c *Config) Validate() error {
	if c.QuarantineLen < 1 {
		return fmt.Errorf("cache: quarantine length must be positive, got %d", c.QuarantineLen)
	}
	return nil
}
