package delivery

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// Tuning that is not configuration.
const (
	// readBatch bounds the devices of one pipelined read.
	readBatch = 256
	// probeBatch bounds the commands of one pipelined position check or
	// route refresh.
	probeBatch = 512
	// opTimeout bounds the Redis work a caller's cancelled context must not
	// interrupt half-way (detach, a shared cursor write).
	opTimeout = 5 * time.Second
	// lastSeenTTL is how long a user's last-seen time is kept.
	lastSeenTTL = 90 * 24 * time.Hour
	// healthInterval is how long the subscriber waits for a message before
	// it pings; a ping unanswered for as long again means a dead connection.
	healthInterval = 5 * time.Second
)

// Hub is the delivery of one gateway process: its attached devices, the
// subscriber of its notification and signal channels, and the loops that
// read inboxes, check positions, refresh routes and resend. Create it with
// New, run it with Run.
type Hub struct {
	rdb      redis.UniversalClient
	cfg      Config
	keys     inbox.Keys
	channels inbox.Channels // plain or sharded pub/sub, by rdb
	log      *slog.Logger
	m        *metrics
	scripts  scripts
	cursors  cursorWriter
	queue    readQueue
	pollNow  chan struct{} // capacity 1: run a position check now
	running  atomic.Bool

	mu    sync.RWMutex
	users map[domain.UserID][]*Device // guarded by mu: attached devices by user
	count int                         // guarded by mu: attached devices

	// routeMu serializes heartbeat route writes with clean detaches, so a
	// heartbeat never writes back a route a clean detach just deleted.
	routeMu sync.Mutex
}

// New returns a Hub on rdb (the caller keeps ownership of the client). It
// fails on an invalid configuration (every problem at once) or a metrics
// registration conflict.
func New(rdb redis.UniversalClient, cfg Config) (*Hub, error) {
	cfg.setDefaults()
	err := cfg.Validate()
	if rdb == nil {
		err = errors.Join(err, errors.New("delivery: hub needs a Redis client"))
	}
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Hub{
		rdb: rdb, cfg: cfg, keys: inbox.NewKeys(cfg.Prefix), channels: inbox.ChannelsOf(rdb), log: cfg.Logger.With("gateway", cfg.GatewayID), m: m,
		scripts: newScripts(), queue: readQueue{ready: make(chan struct{}, 1)}, pollNow: make(chan struct{}, 1),
		users: make(map[domain.UserID][]*Device),
	}
	h.cursors.h = h
	return h, nil
}

// Run delivers until ctx ends, then returns nil: it subscribes to this
// gateway's notification and signal channels (subscribing again, with
// backoff, whenever the connection drops), and runs the inbox readers, the
// position check, the route heartbeat, the resends and the cursor writes
// (written once more when ctx ends). Redis failures are logged, counted and retried; they never end Run. Run fails at once if the
// hub is already running.
func (h *Hub) Run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("delivery: hub is already running")
	}
	defer h.running.Store(false)
	var wg sync.WaitGroup
	for range h.cfg.Readers {
		wg.Go(func() { h.readLoop(ctx) })
	}
	wg.Go(func() { h.subscribeLoop(ctx) })
	wg.Go(func() { h.pollLoop(ctx) })
	wg.Go(func() { h.refreshLoop(ctx) })
	wg.Go(func() { h.resendLoop(ctx) })
	wg.Go(func() { h.ackLoop(ctx) })
	wg.Wait()
	return nil
}

// Devices returns the number of devices attached to the hub.
func (h *Hub) Devices() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.count
}

// register adds d to the attached devices and returns the attachment of the
// same device it replaces, if any.
func (h *Hub) register(d *Device) (old *Device) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.users[d.user]
	for i, o := range list {
		if o.id == d.id {
			list[i] = d
			return o
		}
	}
	h.users[d.user] = append(list, d)
	h.count++
	h.m.devices.Inc()
	return nil
}

// unregister removes d from the attached devices; false if it was not
// there (detached before, or replaced).
func (h *Hub) unregister(d *Device) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.users[d.user]
	for i, o := range list {
		if o != d {
			continue
		}
		list[i] = list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if len(list) == 0 {
			delete(h.users, d.user)
		} else {
			h.users[d.user] = list
		}
		h.count--
		h.m.devices.Dec()
		return true
	}
	return false
}

// attached reports whether a device of user with id is attached.
func (h *Hub) attached(user domain.UserID, id domain.DeviceID) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, d := range h.users[user] {
		if d.id == id {
			return true
		}
	}
	return false
}

// devicesOf returns a copy of user's attached devices.
func (h *Hub) devicesOf(user domain.UserID) []*Device {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return append([]*Device(nil), h.users[user]...)
}

// snapshot returns every attached device.
func (h *Hub) snapshot() []*Device {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Device, 0, h.count)
	for _, list := range h.users {
		out = append(out, list...)
	}
	return out
}

// wakeUser queues user's devices whose position is before last (zero:
// every device).
func (h *Hub) wakeUser(user domain.UserID, last streamid.ID) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, d := range h.users[user] {
		h.wake(d, last)
	}
}

// wake queues d for a read if it may find an entry up to last (zero:
// unknown) that it has not read.
func (h *Hub) wake(d *Device, last streamid.ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached || d.paused || !last.IsZero() && !last.After(d.pos) {
		return false
	}
	return h.wakeLocked(d)
}

// wakeLocked queues d for a read, or for a read again if a reader holds
// it; false if it was queued already. The caller holds d.mu.
func (h *Hub) wakeLocked(d *Device) bool {
	if d.queued {
		if d.reading {
			d.again = true
		}
		return false
	}
	d.queued = true
	h.queue.push(d)
	return true
}

// checkNow asks the poll loop for a position check of every device.
func (h *Hub) checkNow() {
	select {
	case h.pollNow <- struct{}{}:
	default:
	}
}

// sleep waits for d or the end of ctx; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff doubles a wait from min to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
