package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PreviewMode says how much of a message a call reveals in its preview.
type PreviewMode string

const (
	// PreviewNone sends no preview.
	PreviewNone PreviewMode = "none"
	// PreviewSender sends the sender's name (the default).
	PreviewSender PreviewMode = "sender"
	// PreviewText sends "<sender name>: <text>", cut to MaxPreviewBytes.
	PreviewText PreviewMode = "text"
)

// Bounds of the configuration, checked by Validate.
const (
	MinWindow        = 10 * time.Millisecond
	MaxWindow        = time.Minute
	DefaultWindow    = 2 * time.Second
	minSecretBytes   = 16
	maxSecretBytes   = 1024
	maxURLBytes      = 2048
	maxPreviewLimit  = 1024
	maxAttemptsLimit = 50
	maxConcurrency   = 256
	maxTimeout       = time.Minute
	maxBackoffLimit  = time.Hour
	minQueueBytes    = 1 << 20
	maxQueueBytes    = 1 << 30
	maxQueueCalls    = 1_000_000
	maxDeadLetterLen = 10_000_000
	maxDeadLetterKey = 256
)

// Clock is the time a Sender reads and waits on: the collapse window and the
// backoff between attempts. Tests pass a clock they move by hand.
type Clock interface {
	Now() time.Time
	// SleepUntil waits until the clock reads t or ctx is done, returning
	// ctx's error then.
	SleepUntil(ctx context.Context, t time.Time) error
}

// wallClock is the real clock.
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) SleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Config configures a Sender. URL, Secret, Window and DeadLetterKey are
// required; any other zero field takes the default documented next to it.
type Config struct {
	// URL is the endpoint, http or https, that receives every call.
	URL string
	// Secret is the shared HMAC-SHA256 key (16..1024 bytes).
	Secret []byte
	// Preview is what a call reveals of a message (default PreviewSender).
	Preview PreviewMode
	// MaxPreviewBytes cuts a text preview (default 100, at most 1024), at a
	// character boundary.
	MaxPreviewBytes int
	// Window is how long a user's first notification waits for more to
	// collapse with (MinWindow..MaxWindow; mpimd's default DefaultWindow).
	Window time.Duration
	// MaxPerUser sends a user's call before its window ends once it carries
	// this many notifications (default 100).
	MaxPerUser int
	// MaxPendingUsers bounds the users whose calls are collapsing (default
	// 10,000, at most MaxCalls): a new user beyond it sends the call whose
	// window ends first early.
	MaxPendingUsers int
	// MaxCalls bounds the calls held, collapsing, queued, in flight or
	// waiting to retry (default 10,000, at most 1,000,000); MaxBytes bounds
	// their bodies (default 16 MiB, 1 MiB..1 GiB). Beyond either, Submit
	// waits for room.
	MaxCalls int
	MaxBytes int64
	// Concurrency bounds the requests open to the endpoint (default 8, at
	// most 256); Timeout bounds each (default 5 s, at most 1 min).
	Concurrency int
	Timeout     time.Duration
	// MaxAttempts is how many times a call is tried before it is
	// dead-lettered (default 8, at most 50).
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the wait before attempt n+1: a random
	// duration in [0, min(MaxBackoff, BaseBackoff*2^(n-1))), or the
	// endpoint's Retry-After if longer, cut to MaxBackoff (defaults 200 ms
	// and 30 s; MaxBackoff at most 1 h and not below BaseBackoff).
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// DeadLetterKey is the Redis stream of dead letters (at most 256
	// bytes); DeadLetterLen caps it (default 100,000, approximate MAXLEN,
	// at most 10,000,000).
	DeadLetterKey string
	DeadLetterLen int64
	// HTTPClient sends the requests (default: a client without redirects).
	HTTPClient *http.Client
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger is the sender's logger (default: discard).
	Logger *slog.Logger
	// Clock is the sender's time (default: the wall clock).
	Clock Clock
	// Rand returns the jitter fraction in [0, 1) (default math/rand/v2).
	Rand func() float64
}

func (c *Config) setDefaults() {
	c.Preview = cmp.Or(c.Preview, PreviewSender)
	c.MaxPreviewBytes = cmp.Or(c.MaxPreviewBytes, 100)
	c.MaxPerUser = cmp.Or(c.MaxPerUser, 100)
	c.MaxPendingUsers = cmp.Or(c.MaxPendingUsers, 10_000)
	c.MaxCalls = cmp.Or(c.MaxCalls, 10_000)
	c.MaxBytes = cmp.Or(c.MaxBytes, 16<<20)
	c.Concurrency = cmp.Or(c.Concurrency, 8)
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 8)
	c.BaseBackoff = cmp.Or(c.BaseBackoff, 200*time.Millisecond)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 30*time.Second)
	c.DeadLetterLen = cmp.Or(c.DeadLetterLen, 100_000)
	c.Logger = cmp.Or(c.Logger, slog.New(slog.DiscardHandler))
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.Clock == nil {
		c.Clock = wallClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
}

// Validate returns every problem of the configuration at once. Call it
// after the defaults are filled (New does both).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("webhook: "+format, args...)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.URL) > maxURLBytes {
		bad("URL must be an absolute http or https URL of at most %d bytes, got %q", maxURLBytes, c.URL)
	}
	if len(c.Secret) < minSecretBytes || len(c.Secret) > maxSecretBytes {
		bad("secret must be %d..%d bytes, got %d", minSecretBytes, maxSecretBytes, len(c.Secret))
	}
	if c.Preview != PreviewNone && c.Preview != PreviewSender && c.Preview != PreviewText {
		bad("preview must be none, sender or text, got %q", c.Preview)
	}
	if c.MaxPreviewBytes < 1 || c.MaxPreviewBytes > maxPreviewLimit {
		bad("max preview bytes must be 1..%d, got %d", maxPreviewLimit, c.MaxPreviewBytes)
	}
	if c.Window < MinWindow || c.Window > MaxWindow {
		bad("collapse window must be %s..%s, got %s", MinWindow, MaxWindow, c.Window)
	}
	if c.MaxCalls < 1 || c.MaxCalls > maxQueueCalls {
		bad("max calls must be 1..%d, got %d", maxQueueCalls, c.MaxCalls)
	}
	if c.MaxPerUser < 1 || c.MaxPerUser > 1_000_000 {
		bad("max notifications per call must be 1..1000000, got %d", c.MaxPerUser)
	}
	if c.MaxPendingUsers < 1 || c.MaxPendingUsers > c.MaxCalls {
		bad("max pending users must be 1..max calls (%d), got %d", c.MaxCalls, c.MaxPendingUsers)
	}
	if c.MaxBytes < minQueueBytes || c.MaxBytes > maxQueueBytes {
		bad("max bytes must be %d..%d, got %d", minQueueBytes, maxQueueBytes, c.MaxBytes)
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		bad("concurrency must be 1..%d, got %d", maxConcurrency, c.Concurrency)
	}
	if c.Timeout <= 0 || c.Timeout > maxTimeout {
		bad("timeout must be positive and at most %s, got %s", maxTimeout, c.Timeout)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > maxAttemptsLimit {
		bad("max attempts must be 1..%d, got %d", maxAttemptsLimit, c.MaxAttempts)
	}
	if c.BaseBackoff <= 0 || c.MaxBackoff < c.BaseBackoff || c.MaxBackoff > maxBackoffLimit {
		bad("backoff must satisfy 0 < base <= max <= %s, got base %s, max %s", maxBackoffLimit, c.BaseBackoff, c.MaxBackoff)
	}
	if c.DeadLetterKey == "" || len(c.DeadLetterKey) > maxDeadLetterKey {
		bad("dead-letter key must be 1..%d bytes, got %d", maxDeadLetterKey, len(c.DeadLetterKey))
	}
	if c.DeadLetterLen < 1 || c.DeadLetterLen > maxDeadLetterLen {
		bad("dead-letter length must be 1..%d, got %d", maxDeadLetterLen, c.DeadLetterLen)
	}
	return errors.Join(errs...)
}
