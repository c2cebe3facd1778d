package inbox

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Projector. The zero value of each field takes the
// default documented next to it.
type Config struct {
	// Prefix is the deployment's key prefix (the event store's Prefix).
	Prefix string
	// Window is the number of entries an inbox keeps (default 10,000): an
	// inbox holds at most Window entries; the oldest go first. A device
	// whose cursor falls out of the window syncs history by conversation seq.
	Window int64
	// QuotaBytes is the most bytes an inbox keeps (default 16 MiB; the
	// bytes of an entry are the lengths of its fields and values, mostly the
	// event's envelope): beyond it the oldest entries are trimmed, as
	// beyond Window, so one group's traffic cannot grow a user's inbox
	// without bound. The newest entry is always kept.
	QuotaBytes int64
	// ReadFanoutThreshold is the group size above which a group would be
	// delivered by read fan-out instead of write fan-out. Reserved: it is
	// validated but not used yet; every group is written out (0, the default,
	// states that explicitly).
	ReadFanoutThreshold int
	// NotifyBytes bounds the payload of one gateway's notification of a
	// batch (default 64 KiB, at most internal/inbox.MaxNotificationBytes):
	// the recipients' entries are carried while they fit, and the users
	// whose entries do not fit get their head only (the gateway reads their
	// inboxes back).
	NotifyBytes int
	// QuarantineLen caps the quarantine stream (default 10,000, approximate).
	QuarantineLen int64
	// RouteCacheEntries bounds the users whose presence routes the
	// projector keeps (default 100,000); beyond it, random entries are
	// evicted and their users looked up again when they next receive.
	RouteCacheEntries int
	// RouteCacheBytes bounds the route cache's estimated memory (default
	// 16 MiB, at least 4 KiB), evicting as RouteCacheEntries does.
	RouteCacheBytes int64
	// WaitReplicas, when positive, holds the checkpoint of a batch until
	// that many replicas have its inbox writes (WAIT on each master that
	// took some), as the event store's Durability.WaitReplicas holds an
	// append's acknowledgement: a failover then loses no inbox entry below
	// the checkpoint. A batch whose writes do not reach them within
	// WaitTimeout fails, unavailable, and is applied again.
	WaitReplicas int
	// WaitTimeout bounds each WAIT (default 1s when WaitReplicas > 0).
	WaitTimeout time.Duration
	// Registerer receives the projector's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger is the projector's logger (default: discard).
	Logger *slog.Logger
	// Now is the clock that decides whether a presence route is live
	// (default time.Now).
	Now func() time.Time
}

func (c *Config) setDefaults() {
	c.Window = cmp.Or(c.Window, 10_000)
	c.QuotaBytes = cmp.Or(c.QuotaBytes, 16<<20)
	c.QuarantineLen = cmp.Or(c.QuarantineLen, 10_000)
	c.RouteCacheEntries = cmp.Or(c.RouteCacheEntries, 100_000)
	c.RouteCacheBytes = cmp.Or(c.RouteCacheBytes, 16<<20)
	c.NotifyBytes = cmp.Or(c.NotifyBytes, 64<<10)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.WaitReplicas > 0 && c.WaitTimeout == 0 {
		c.WaitTimeout = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate returns every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Window < 1 {
		errs = append(errs, fmt.Errorf("inbox: window must be positive, got %d", c.Window))
	}
	if c.QuotaBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("inbox: quota must be at least 64 KiB, got %d bytes", c.QuotaBytes))
	}
	if c.ReadFanoutThreshold < 0 {
		errs = append(errs, fmt.Errorf("inbox: read fan-out threshold must not be negative, got %d", c.ReadFanoutThreshold))
	}
	if c.NotifyBytes < 1 || c.NotifyBytes > delivery.MaxNotificationBytes {
		errs = append(errs, fmt.Errorf("inbox: notification bytes must be 1..%d, got %d", delivery.MaxNotificationBytes, c.NotifyBytes))
	}
	if c.QuarantineLen < 1 {
		errs = append(errs, fmt.Errorf("inbox: quarantine length must be positive, got %d", c.QuarantineLen))
	}
	if c.WaitReplicas < 0 || c.WaitTimeout < 0 {
		errs = append(errs, fmt.Errorf("inbox: wait replicas and wait timeout must not be negative, got %d and %s", c.WaitReplicas, c.WaitTimeout))
	}
	if c.RouteCacheEntries < 1 {
		errs = append(errs, fmt.Errorf("inbox: route cache entries must be positive, got %d", c.RouteCacheEntries))
	}
	if c.RouteCacheBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("inbox: route cache must be at least 4 KiB, got %d bytes", c.RouteCacheBytes))
	}
	return errors.Join(errs...)
}
