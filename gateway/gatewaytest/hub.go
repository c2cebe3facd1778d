package gatewaytest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway"
)

// FakeHub is a gateway.Hub in memory: it records attachments, acknowledgements and
// detaches, and lets tests deliver through the attached sinks. It is safe for concurrent
// use.
type FakeHub struct {
	mu      sync.Mutex
	devices map[string]*FakeDevice // "<user> <device>" -> latest attachment
	all     []*FakeDevice
	failing bool
	// onAttach, if set, runs inside Attach with the new sink (a hub that
	// delivers during Attach, as a catch-up does).
	onAttach func(gateway.Sink)
	// beforeAttach, if set, runs at the start of Attach without the hub's
	// lock (another request may run meanwhile).
	beforeAttach func()
}

// FakeDevice is one attachment of a FakeHub; it records acknowledgements
// and its detach.
type FakeDevice struct {
	user, device string
	Sink         gateway.Sink // records the pushes in flight, then passes them to the session's sink
	session      gateway.Sink

	mu       sync.Mutex
	acks     []string
	inflight []pushedAt // first pushes not acknowledged yet, in order
	detached bool
	clean    bool
}

// pushedAt is a push in flight on a FakeDevice.
type pushedAt struct {
	ms, seq uint64
	at      time.Time
}

// parseInboxID splits an inbox entry id into its two numbers.
func parseInboxID(id string) (ms, seq uint64) {
	_, _ = fmt.Sscanf(id, "%d-%d", &ms, &seq)
	return ms, seq
}

// coveredBy reports whether an acknowledgement of inboxID covers p.
func (p pushedAt) coveredBy(inboxID string) bool {
	ms, seq := parseInboxID(inboxID)
	return p.ms < ms || p.ms == ms && p.seq <= seq
}

// inFlight is the sink a FakeDevice hands out: it records first pushes as
// the real hub does.
type inFlight struct {
	gateway.Sink
	d *FakeDevice
}

func (s inFlight) Push(del gateway.Delivery) error {
	if !del.Resend {
		ms, seq := parseInboxID(del.InboxID)
		s.d.mu.Lock()
		s.d.inflight = append(s.d.inflight, pushedAt{ms: ms, seq: seq, at: time.Now()})
		s.d.mu.Unlock()
	}
	return s.Sink.Push(del)
}

// NewFakeHub returns a FakeHub with nothing attached.
func NewFakeHub() *FakeHub { return &FakeHub{devices: map[string]*FakeDevice{}} }

var _ gateway.Hub = (*FakeHub)(nil)

// Attach attaches a device, recording pushes in flight on the sink it
// hands to the session.
func (h *FakeHub) Attach(ctx context.Context, uid domain.UserID, did domain.DeviceID, sink gateway.Sink) (gateway.HubDevice, error) {
	user, device := string(uid), string(did)
	h.mu.Lock()
	before := h.beforeAttach
	h.mu.Unlock()
	if before != nil {
		before()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing {
		return nil, fmt.Errorf("fake hub: attach refused")
	}
	d := &FakeDevice{user: user, device: device, session: sink}
	d.Sink = inFlight{Sink: sink, d: d}
	h.devices[user+" "+device] = d
	h.all = append(h.all, d)
	if h.onAttach != nil {
		h.onAttach(sink)
	}
	return d, nil
}

// Signal passes s to every attached device of the users in to.
func (h *FakeHub) Signal(ctx context.Context, to []domain.UserID, s gateway.Signal) error {
	h.mu.Lock()
	var sinks []gateway.Sink
	for _, u := range to {
		for _, d := range h.devices {
			if d.user == string(u) && !d.Detached() {
				sinks = append(sinks, d.Sink)
			}
		}
	}
	h.mu.Unlock()
	for _, s2 := range sinks {
		_ = s2.Signal(s) // a refused signal is the session's to handle, as with the real hub
	}
	return nil
}

// Online reports a user online while any device of theirs is attached.
func (h *FakeHub) Online(ctx context.Context, users []domain.UserID) (map[domain.UserID]gateway.Presence, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[domain.UserID]gateway.Presence{}
	for _, u := range users {
		for _, d := range h.devices {
			if d.user == string(u) && !d.Detached() {
				out[u] = gateway.Presence{Online: true}
			}
		}
	}
	return out, nil
}

// DevicePresence reports every attached device of user online.
func (h *FakeHub) DevicePresence(ctx context.Context, user domain.UserID) (map[domain.DeviceID]gateway.Presence, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[domain.DeviceID]gateway.Presence{}
	for _, d := range h.devices {
		if d.user == string(user) && !d.Detached() {
			out[domain.DeviceID(d.device)] = gateway.Presence{Online: true, LastSeen: time.Now()}
		}
	}
	return out, nil
}

// End ends and detaches the attached devices of user among devices.
func (h *FakeHub) End(ctx context.Context, user domain.UserID, devices []domain.DeviceID, why string) error {
	h.mu.Lock()
	var ended []*FakeDevice
	for _, d := range h.devices {
		if d.user == string(user) && slices.Contains(devices, domain.DeviceID(d.device)) && !d.Detached() {
			ended = append(ended, d)
		}
	}
	h.mu.Unlock()
	for _, d := range ended {
		if e, ok := d.session.(gateway.Endable); ok {
			e.Ended(why)
		}
		d.Detach(ctx, true)
	}
	return nil
}

// Attachments returns every attachment so far, in order.
func (h *FakeHub) Attachments() []*FakeDevice {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*FakeDevice(nil), h.all...)
}

// Device returns the latest attachment of (user, device).
func (h *FakeHub) Device(tb testing.TB, user, device string) *FakeDevice {
	tb.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.devices[user+" "+device]
	if d == nil {
		tb.Fatalf("device %s of %s was never attached", device, user)
	}
	return d
}

// Ack records an acknowledgement and reports the latency of the pushes it
// covers to the session, as the real hub does.
func (d *FakeDevice) Ack(ctx context.Context, inboxID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acks = append(d.acks, inboxID)
	n := 0
	for n < len(d.inflight) && d.inflight[n].coveredBy(inboxID) {
		if o, ok := d.session.(gateway.AckObserver); ok {
			o.Acked(time.Since(d.inflight[n].at))
		}
		n++
	}
	d.inflight = d.inflight[n:]
	return nil
}

// Covers reports whether inboxID covers the oldest push in flight.
func (d *FakeDevice) Covers(inboxID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0 && d.inflight[0].coveredBy(inboxID)
}

// Detach records the detach.
func (d *FakeDevice) Detach(ctx context.Context, clean bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.detached, d.clean = true, clean
}

// Detached reports whether the device was detached.
func (d *FakeDevice) Detached() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detached
}

// State returns whether the device was detached, cleanly, and its acks.
func (d *FakeDevice) State() (detached, clean bool, acks []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.detached, d.clean, append([]string(nil), d.acks...)
}

// SetFailing makes Attach refuse (or accept again).
func (h *FakeHub) SetFailing(failing bool) {
	h.mu.Lock()
	h.failing = failing
	h.mu.Unlock()
}

// SetOnAttach sets a function that runs inside Attach with the new sink.
func (h *FakeHub) SetOnAttach(f func(gateway.Sink)) {
	h.mu.Lock()
	h.onAttach = f
	h.mu.Unlock()
}

// SetBeforeAttach sets a function that runs at the start of Attach without
// the hub's lock.
func (h *FakeHub) SetBeforeAttach(f func()) {
	h.mu.Lock()
	h.beforeAttach = f
	h.mu.Unlock()
}
