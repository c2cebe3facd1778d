package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/push/webhook"
	"github.com/mpim/mpim/query"
)

// pushConfig is the push projector's part of the configuration. The
// projector runs only when URL is set.
type pushConfig struct {
	URL        string
	SecretFile string
	Window     time.Duration
	Preview    string
	Start      string
	MaxPending int
}

// Bounds of the push flags (the webhook sender's own, checked here too so
// that every bad flag is reported at start-up).
const (
	maxPushURLBytes = 2048
	minPushSecret   = 16
	maxPushSecret   = 1024
	// pushCloseTimeout bounds how long a stopping process waits for the
	// calls still held to settle; the rest are sent again after a restart.
	pushCloseTimeout = 10 * time.Second
)

func (c *pushConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "push-webhook-url", "", "projector: http or https URL of the push webhook (docs/push.md); set, it adds the push projector to the default --projectors (empty: no push projector)")
	fs.StringVar(&c.SecretFile, "push-webhook-secret-file", "", "projector: file of the webhook's HMAC-SHA256 secret, 16..1024 bytes (a trailing newline is dropped; mode 600); required with --push-webhook-url")
	fs.DurationVar(&c.Window, "push-window", webhook.DefaultWindow, fmt.Sprintf("projector: notifications of one user within this window collapse into one webhook call (%s..%s)", webhook.MinWindow, webhook.MaxWindow))
	fs.StringVar(&c.Preview, "push-preview", string(webhook.PreviewSender), "projector: what a push call reveals of a message: none, sender or text")
	fs.IntVar(&c.MaxPending, "push-max-pending", push.DefaultMaxPending, fmt.Sprintf("projector: batches of a partition handed to the webhook and not yet settled before the push projector waits (1..%d; after a crash up to this many are sent again)", push.MaxMaxPending))
	fs.StringVar(&c.Start, "push-start", string(push.StartHead), "projector: where the push projector begins on a partition it never processed: head (nothing old is pushed) or zero")
}

// validate reports every problem of the push flags.
func (c *pushConfig) validate() []error {
	var errs []error
	if c.URL != "" {
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(c.URL) > maxPushURLBytes {
			errs = append(errs, fmt.Errorf("push-webhook-url must be an absolute http or https URL of at most %d bytes, got %q", maxPushURLBytes, c.URL))
		}
		if _, err := c.secret(); err != nil {
			errs = append(errs, err)
		}
	} else if c.SecretFile != "" {
		errs = append(errs, errors.New("push-webhook-secret-file is set without push-webhook-url"))
	}
	if c.Window < webhook.MinWindow || c.Window > webhook.MaxWindow {
		errs = append(errs, fmt.Errorf("push-window must be %s..%s, got %s", webhook.MinWindow, webhook.MaxWindow, c.Window))
	}
	switch webhook.PreviewMode(c.Preview) {
	case webhook.PreviewNone, webhook.PreviewSender, webhook.PreviewText:
	default:
		errs = append(errs, fmt.Errorf("push-preview must be none, sender or text, got %q", c.Preview))
	}
	if c.MaxPending < 1 || c.MaxPending > push.MaxMaxPending {
		errs = append(errs, fmt.Errorf("push-max-pending must be 1..%d, got %d", push.MaxMaxPending, c.MaxPending))
	}
	if _, err := push.ParseStart(c.Start); err != nil {
		errs = append(errs, fmt.Errorf("push-start must be head or zero, got %q", c.Start))
	}
	return errs
}

// secret reads the webhook secret from SecretFile.
func (c *pushConfig) secret() ([]byte, error) {
	if c.SecretFile == "" {
		return nil, errors.New("push-webhook-secret-file is required with push-webhook-url")
	}
	fi, err := os.Stat(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("push-webhook-secret-file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("push-webhook-secret-file %s: mode %04o lets other users read it; chmod 600 it", c.SecretFile, fi.Mode().Perm())
	}
	if fi.Size() > maxPushSecret+2 {
		return nil, fmt.Errorf("push-webhook-secret-file %s: must hold %d..%d bytes, has %d", c.SecretFile, minPushSecret, maxPushSecret, fi.Size())
	}
	b, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("push-webhook-secret-file: %w", err)
	}
	b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(b) < minPushSecret || len(b) > maxPushSecret {
		return nil, fmt.Errorf("push-webhook-secret-file %s: must hold %d..%d bytes, has %d", c.SecretFile, minPushSecret, maxPushSecret, len(b))
	}
	return b, nil
}

// addPushByDefault adds the push projector to the projectors when a
// webhook URL is configured and --projectors was not given.
func (c *Config) addPushByDefault(fs *flag.FlagSet) {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "projectors" })
	if c.Push.URL != "" && !given && !slices.Contains(c.Projectors, push.Name) {
		c.Projectors = append(c.Projectors, push.Name)
	}
}

// knownProjector reports whether name may be selected: one of
// projectorNames, or push with a webhook URL.
func (c *Config) knownProjector(name string) bool {
	return slices.Contains(projectorNames, name) || (name == push.Name && c.Push.URL != "")
}

// runsEveryProjector reports whether this process runs every projector of
// the deployment, push included when a webhook URL is configured: then its
// trim sees every checkpoint.
func (c *Config) runsEveryProjector() bool {
	for _, name := range projectorNames {
		if !slices.Contains(c.Projectors, name) {
			return false
		}
	}
	return c.Push.URL == "" || slices.Contains(c.Projectors, push.Name)
}

// buildPush returns the push projector and the sender it calls through,
// which the caller closes once the projector's runner returned.
func buildPush(c *Config, d *deps) (*push.Projector, *webhook.Sender, error) {
	secret, err := c.Push.secret()
	if err != nil {
		return nil, nil, err
	}
	lg := d.lg.With("projector", push.Name)
	sender, err := webhook.New(d.rdb, webhook.Config{URL: c.Push.URL, Secret: secret, Preview: webhook.PreviewMode(c.Push.Preview),
		Window: c.Push.Window, DeadLetterKey: webhook.DeadLetterKey(c.Prefix), Registerer: d.reg, Logger: lg})
	if err != nil {
		return nil, nil, err
	}
	dir, err := query.New(d.db, d.rdb, query.Config{Prefix: c.Prefix})
	if err == nil {
		var p *push.Projector
		start, _ := push.ParseStart(c.Push.Start)
		if p, err = push.New(d.rdb, dir, sender, d.store, push.Config{Prefix: c.Prefix, Start: start, MaxPending: c.Push.MaxPending, Logger: lg, Registerer: d.reg}); err == nil {
			return p, sender, nil
		}
	}
	closeSender(sender)
	return nil, nil, err
}

// closeSender closes s, waiting at most pushCloseTimeout for its calls.
func closeSender(s *webhook.Sender) error {
	ctx, cancel := context.WithTimeout(context.Background(), pushCloseTimeout)
	defer cancel()
	return s.Close(ctx)
}

// push.Projector reads the read models through query.Service.
var _ push.Directory = (*query.Service)(nil)
