package delivery

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mpim/mpim/internal/inbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Hub. The zero value of each field takes the default
// documented next to it; Prefix and GatewayID have none.
type Config struct {
	// Prefix is the deployment's key prefix (the event store's Prefix).
	Prefix string
	// GatewayID is this gateway's id (inbox.ValidGateway): presence routes
	// name it and its notification channel carries it. Two running hubs must
	// never share one.
	GatewayID string
	// PageSize bounds the entries of one inbox read (default 200).
	PageSize int
	// AckTimeout is how long a push may stay unacknowledged before it is
	// sent again, marked as a resend (default 5s).
	AckTimeout time.Duration
	// AckInterval is how often acknowledged cursors are stored: a device's
	// cursor is written at most once per interval (the highest id it
	// acknowledged) and when it detaches; acknowledgements in between only
	// update memory. A gateway that dies loses at most the last interval's
	// acknowledgements: those entries are pushed again on the device's next
	// attachment (default 500ms; 1ms..5s).
	AckInterval time.Duration
	// MaxInFlight bounds the unacknowledged pushes of one device; a device
	// that reaches it is not read again until acknowledgements bring it down
	// to half (default 500). Unacknowledged pushes are held in memory for
	// resending, so it also bounds a device's memory.
	MaxInFlight int
	// RouteRefresh is the presence heartbeat: every attached device's route
	// is rewritten, with a new deadline of inbox.RouteTTL, this often
	// (default inbox.RouteTTL/3; at most inbox.RouteTTL/2).
	RouteRefresh time.Duration
	// PollInterval is how often every idle attached device's read position
	// is compared with its inbox, which repairs lost notifications
	// (default 2s).
	PollInterval time.Duration
	// Readers is the number of concurrent inbox read batches, each one
	// pipelined round trip for up to 256 devices (default 4).
	Readers int
	// Registerer receives the hub's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger is the hub's logger (default: discard).
	Logger *slog.Logger
	// Now is the clock of route deadlines, last-seen times, ack timeouts
	// and delivery latency (default time.Now). Tickers use real time.
	Now func() time.Time
}

// maxAckInterval bounds Config.AckInterval, and so what a gateway crash
// costs in re-delivered entries.
const maxAckInterval = 5 * time.Second

func (c *Config) setDefaults() {
	c.PageSize = cmp.Or(c.PageSize, 200)
	c.AckTimeout = cmp.Or(c.AckTimeout, 5*time.Second)
	c.AckInterval = cmp.Or(c.AckInterval, 500*time.Millisecond)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, 500)
	c.RouteRefresh = cmp.Or(c.RouteRefresh, inbox.RouteTTL/3)
	c.PollInterval = cmp.Or(c.PollInterval, 2*time.Second)
	c.Readers = cmp.Or(c.Readers, 4)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate returns every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if !inbox.ValidGateway(c.GatewayID) {
		errs = append(errs, fmt.Errorf("delivery: invalid gateway id %q", c.GatewayID))
	}
	if c.PageSize < 1 || c.PageSize > 10_000 {
		errs = append(errs, fmt.Errorf("delivery: page size must be 1..10000, got %d", c.PageSize))
	}
	if c.AckTimeout < time.Millisecond {
		errs = append(errs, fmt.Errorf("delivery: ack timeout must be at least 1ms, got %s", c.AckTimeout))
	}
	if c.AckInterval < time.Millisecond || c.AckInterval > maxAckInterval {
		errs = append(errs, fmt.Errorf("delivery: ack interval must be 1ms..%s, got %s", maxAckInterval, c.AckInterval))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("delivery: max in flight must be positive, got %d", c.MaxInFlight))
	}
	if c.RouteRefresh < time.Millisecond || c.RouteRefresh > inbox.RouteTTL/2 {
		errs = append(errs, fmt.Errorf("delivery: route refresh must be 1ms..%s, got %s", inbox.RouteTTL/2, c.RouteRefresh))
	}
	if c.PollInterval < time.Millisecond {
		errs = append(errs, fmt.Errorf("delivery: poll interval must be at least 1ms, got %s", c.PollInterval))
	}
	if c.Readers < 1 || c.Readers > 256 {
		errs = append(errs, fmt.Errorf("delivery: readers must be 1..256, got %d", c.Readers))
	}
	return errors.Join(errs...)
}
