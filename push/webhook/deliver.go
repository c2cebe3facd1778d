package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Failure classes, the "class" label of mpim_webhook_failures_total.
const (
	classNetwork   = "network"   // no answer: refused, reset, DNS; retried
	classTimeout   = "timeout"   // no answer within Timeout; retried
	classServer    = "server"    // 5xx; retried
	classThrottled = "throttled" // 429; retried after Retry-After
	classRejected  = "rejected"  // any other non-2xx; dead-lettered at once
)

// maxReasonBytes bounds the answer kept as a dead letter's reason.
const maxReasonBytes = 256

// outcome is the result of one attempt.
type outcome struct {
	class      string // "" when delivered
	reason     string
	status     int
	retryAfter time.Duration
}

func (o outcome) retry() bool { return o.class != "" && o.class != classRejected }

// worker delivers released calls until the sender stops.
func (s *Sender) worker() {
	defer s.wg.Done()
	for {
		select {
		case c := <-s.ready:
			if s.deliver(s.ctx, c.body, c.p.EventID, string(c.p.User)) != abandoned {
				s.settle(c)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// result is how a call ended.
type result int

const (
	delivered    result = iota + 1
	deadLettered        // rejected, or failed MaxAttempts times
	abandoned           // ctx ended first: neither delivered nor dead-lettered
)

// deliver tries body until it is delivered, or dead-letters it after a
// rejection or MaxAttempts failures.
func (s *Sender) deliver(ctx context.Context, body []byte, key, user string) result {
	for attempt := 1; ; attempt++ {
		o := s.attempt(ctx, body, key)
		if ctx.Err() != nil {
			return abandoned
		}
		if o.class == "" {
			return delivered
		}
		s.m.failures.WithLabelValues(o.class).Inc()
		if !o.retry() || attempt >= s.cfg.MaxAttempts {
			return s.deadLetter(ctx, DeadLetter{Key: key, User: user, Body: body, Reason: o.reason, Status: o.status, Attempts: attempt})
		}
		if s.sleep(ctx, s.backoff(attempt, o.retryAfter)) != nil {
			return abandoned
		}
	}
}

// backoff is the wait after failed attempt n: full jitter under
// min(MaxBackoff, BaseBackoff*2^(n-1)), or retryAfter if longer, at most
// MaxBackoff.
func (s *Sender) backoff(n int, retryAfter time.Duration) time.Duration {
	ceiling := s.cfg.MaxBackoff
	if n-1 < 63 && s.cfg.BaseBackoff <= ceiling>>(n-1) { // no overflow
		ceiling = s.cfg.BaseBackoff << (n - 1)
	}
	d := time.Duration(s.cfg.Rand() * float64(ceiling))
	return min(max(d, retryAfter), s.cfg.MaxBackoff)
}

// sleep waits d on the sender's clock.
func (s *Sender) sleep(ctx context.Context, d time.Duration) error {
	return s.cfg.Clock.SleepUntil(ctx, s.cfg.Clock.Now().Add(d))
}

// attempt posts body once, within Timeout and a concurrency slot.
func (s *Sender) attempt(ctx context.Context, body []byte, key string) outcome {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return outcome{class: classNetwork, reason: ctx.Err().Error()}
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{class: classRejected, reason: err.Error()}
	}
	ts := s.cfg.Clock.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(s.cfg.Secret, ts, body))
	req.Header.Set(HeaderIdempotency, key)
	start := time.Now()
	s.m.calls.Inc()
	resp, err := s.cfg.HTTPClient.Do(req)
	s.m.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return outcome{class: classTimeout, reason: fmt.Sprintf("no answer within %s", s.cfg.Timeout)}
		}
		return outcome{class: classNetwork, reason: err.Error()}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxReasonBytes))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	o := outcome{status: resp.StatusCode, reason: fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(answer))}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return outcome{}
	case resp.StatusCode == http.StatusTooManyRequests:
		o.class = classThrottled
	case resp.StatusCode >= 500:
		o.class = classServer
	default:
		o.class = classRejected
		return o
	}
	o.retryAfter = s.retryAfter(resp.Header.Get("Retry-After"))
	return o
}

// retryAfter parses a Retry-After value, seconds or an HTTP date; an
// absent or bad one is 0. Backoff cuts it to MaxBackoff.
func (s *Sender) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxBackoffLimit/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(s.cfg.Clock.Now()), 0)
	}
	return 0
}
