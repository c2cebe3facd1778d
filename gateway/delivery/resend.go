package delivery

import (
	"context"
	"time"

	"github.com/mpim/mpim/internal/periodic"
)

// resendLoop re-pushes unacknowledged pushes older than AckTimeout until
// ctx ends, checking every AckTimeout/4 (at most every second).
func (h *Hub) resendLoop(ctx context.Context) {
	periodic.Run(ctx, min(max(h.cfg.AckTimeout/4, time.Millisecond), time.Second), nil, func() {
		for _, d := range h.snapshot() {
			if !h.resend(d) {
				h.m.sinkFailures.Inc()
				h.log.Info("detaching a device whose connection refused a resend", "user", d.user, "device", d.id)
				h.detach(ctx, d, false)
			}
		}
	})
}

// resend re-pushes d's pushes that are due, in inbox order; false if the
// sink refused one.
func (h *Hub) resend(d *Device) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := h.cfg.Now()
	if d.detached || len(d.inflight) == 0 || now.Sub(d.oldestSent) < h.cfg.AckTimeout {
		return true
	}
	oldest := now
	for i := range d.inflight {
		p := &d.inflight[i]
		if now.Sub(p.sent) >= h.cfg.AckTimeout {
			p.d.Resend = true
			if err := d.sink.Push(p.d); err != nil {
				return false
			}
			p.sent = now
			h.m.resends.Inc()
		}
		if p.sent.Before(oldest) {
			oldest = p.sent
		}
	}
	d.oldestSent = oldest
	return true
}
