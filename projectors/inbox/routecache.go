package inbox

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// changesPerRead bounds the route changes one batch reads. A batch that
// reads this many may have left some unread, so it looks its cached users
// up instead of trusting the cache.
const changesPerRead = 1024

// routeCache holds the presence routes of recent recipients, so that a batch
// looks up (HGETALL) only the recipients it does not know, instead of every
// recipient. It follows the route change stream (internal/inbox: Route
// changes): every batch reads the changes after the last one applied in the
// same pipeline as, and after, its inbox writes. So every route written
// before an entry was appended is known before the batch picks the
// gateways to notify: a device that attached before the append either
// reads the entry in its catch-up or is notified of it.
//
// An entry is trusted while every route in it is live and it is younger
// than maxAge (inbox.RouteTTL): a heartbeat's new deadline is not announced,
// so a route reaching its cached deadline is looked up again. Changes are
// numbered: a number that does not follow the last one applied (changes
// trimmed before they were read, or the counter reset) empties the cache.
// It is safe for concurrent use by the batches of different partitions.
type routeCache struct {
	keys       delivery.Keys
	log        *slog.Logger
	m          *metrics
	maxEntries int
	maxBytes   int64
	maxAge     time.Duration

	mu    sync.Mutex
	users map[domain.UserID]*cachedRoutes // guarded by mu
	bytes int64                           // guarded by mu: the entries' estimated size
	pos   string                          // guarded by mu: id of the last change applied; "" unknown
	seq   uint64                          // guarded by mu: its number; 0 unknown
}

// cachedRoutes is a user's routes that were live when last looked up,
// updated by the changes applied since.
type cachedRoutes struct {
	routes []deviceRoute
	filled time.Time
	size   int64
}

type deviceRoute struct {
	device domain.DeviceID
	route  delivery.Route
}

func newRouteCache(keys delivery.Keys, cfg *Config, m *metrics) *routeCache {
	return &routeCache{keys: keys, log: cfg.Logger, m: m, maxEntries: cfg.RouteCacheEntries, maxBytes: cfg.RouteCacheBytes,
		maxAge: delivery.RouteTTL, users: make(map[domain.UserID]*cachedRoutes)}
}

// routeLookup is one batch's use of the cache: the recipients it found,
// the lookups and the change read it added to the batch's pipeline.
type routeLookup struct {
	now    time.Time
	hits   []domain.UserID
	misses map[domain.UserID]*redis.MapStringStringCmd
	read   *redis.XMessageSliceCmd
	tail   bool   // read is the stream's last change: the cache's position is unknown
	from   uint64 // the number of the change read reads after
}

// plan splits users into the cached and the rest. The caller adds the
// batch's inbox writes to its pipeline, then queue.
func (c *routeCache) plan(users []domain.UserID, now time.Time) *routeLookup {
	lk := &routeLookup{now: now, misses: make(map[domain.UserID]*redis.MapStringStringCmd)}
	c.mu.Lock()
	defer c.mu.Unlock()
	lk.tail = c.pos == ""
	for _, u := range users {
		if e := c.users[u]; e != nil && !lk.tail && e.valid(now, c.maxAge) {
			lk.hits = append(lk.hits, u)
		} else {
			lk.misses[u] = nil
		}
	}
	return lk
}

// valid reports whether the entry may be trusted at now.
func (e *cachedRoutes) valid(now time.Time, maxAge time.Duration) bool {
	if now.Sub(e.filled) >= maxAge {
		return false
	}
	for _, r := range e.routes {
		if !r.route.Live(now) {
			return false
		}
	}
	return true
}

// queue adds to p the read of the route changes (after the batch's inbox
// writes: see routeCache) and the lookups of the users not cached. A batch
// without recipients reads nothing.
func (c *routeCache) queue(ctx context.Context, p redis.Pipeliner, lk *routeLookup) {
	if len(lk.hits) == 0 && len(lk.misses) == 0 {
		return
	}
	if lk.tail {
		lk.read = p.XRevRangeN(ctx, c.keys.RouteChanges(), "+", "-", 1)
	} else {
		c.mu.Lock()
		from := c.pos
		lk.from = c.seq
		c.mu.Unlock()
		lk.read = p.XRangeN(ctx, c.keys.RouteChanges(), "("+from, "+", changesPerRead)
	}
	for u := range lk.misses {
		lk.misses[u] = p.HGetAll(ctx, c.keys.Presence(u))
	}
}

// resolve applies the batch's change read and returns the gateways of each
// user with a live route. A cached user is looked up after all (one more
// round trip) when the read failed, was cut at changesPerRead, or its entry
// went (a gap emptied the cache, or eviction). A failed lookup leaves its
// user without notification, logged: the gateways' position checks repair
// it. The pipeline must have run.
func (c *routeCache) resolve(ctx context.Context, rdb redis.UniversalClient, lk *routeLookup) map[domain.UserID][]string {
	out := make(map[domain.UserID][]string, len(lk.hits)+len(lk.misses))
	if lk.read == nil {
		return out
	}
	c.mu.Lock()
	complete, readSeq := c.applyRead(lk)
	var again []domain.UserID
	for _, u := range lk.hits {
		if e := c.users[u]; e != nil && complete {
			out[u] = gatewaysOf(e.routes, lk.now)
			continue
		}
		again = append(again, u)
	}
	c.m.routeHits.Add(float64(len(lk.hits) - len(again)))
	for u, cmd := range lk.misses {
		if out[u] = c.fill(u, cmd, readSeq, lk.now); cmd.Err() != nil {
			delete(out, u)
			c.log.Warn("presence routes not read; the gateways' position checks deliver", "user", u, "err", cmd.Err())
		}
	}
	readSeq = c.seq // what the lookups below see at least
	known := c.pos != ""
	c.mu.Unlock()
	c.m.routeLookups.Add(float64(len(lk.misses) + len(again)))
	if len(again) == 0 {
		return out
	}
	pipe := rdb.Pipeline()
	cmds := make(map[domain.UserID]*redis.MapStringStringCmd, len(again))
	for _, u := range again {
		cmds[u] = pipe.HGetAll(ctx, c.keys.Presence(u))
	}
	_, _ = pipe.Exec(ctx) // each command's error is checked in fill
	c.mu.Lock()
	defer c.mu.Unlock()
	if !known {
		readSeq = 0
	}
	for u, cmd := range cmds {
		if out[u] = c.fill(u, cmd, readSeq, lk.now); cmd.Err() != nil {
			delete(out, u)
			c.log.Warn("presence routes not read; the gateways' position checks deliver", "user", u, "err", cmd.Err())
		}
	}
	return out
}

// applyRead applies the changes lk read. It reports whether the cache now
// holds every change made before the read, and the number of the last
// change the read saw (the lookups in the same pipeline see every change up
// to it; 0 when unknown). The caller holds c.mu.
func (c *routeCache) applyRead(lk *routeLookup) (complete bool, readSeq uint64) {
	msgs, err := lk.read.Result()
	if err != nil {
		c.log.Warn("route changes not read; looking every recipient up", "err", err)
		return false, lk.from
	}
	if lk.tail {
		var last delivery.RouteChange
		if len(msgs) > 0 {
			if last, err = delivery.DecodeRouteChange(msgs[0].Values); err != nil {
				c.log.Warn("ignoring a malformed route change", "id", msgs[0].ID, "err", err)
				return false, 0
			}
		}
		if c.pos == "" {
			c.pos, c.seq = "0-0", last.Seq
			if len(msgs) > 0 {
				c.pos = msgs[0].ID
			}
		}
		return false, last.Seq
	}
	readSeq = lk.from
	pos, _ := streamid.Parse(c.pos)
	for _, m := range msgs {
		ch, err := delivery.DecodeRouteChange(m.Values)
		if err == nil {
			readSeq = ch.Seq
		}
		id, perr := streamid.Parse(m.ID)
		if perr != nil || !id.After(pos) {
			continue // applied by a concurrent batch
		}
		pos = id
		c.pos = m.ID
		if err != nil {
			c.log.Warn("ignoring a malformed route change", "id", m.ID, "err", err)
			continue // its number is lost: the next change resets the cache
		}
		if c.seq != 0 && ch.Seq != c.seq+1 {
			c.log.Info("route changes missed; starting the route cache over", "after", c.seq, "next", ch.Seq)
			c.reset()
		}
		c.seq = ch.Seq
		c.change(ch)
	}
	return len(msgs) < changesPerRead, readSeq
}

// reset empties the cache. The caller holds c.mu.
func (c *routeCache) reset() {
	clear(c.users)
	c.bytes = 0
	c.m.routeResets.Inc()
}

// change applies one route change to the cached entry of its user, if any.
// The caller holds c.mu.
func (c *routeCache) change(ch delivery.RouteChange) {
	e := c.users[ch.User]
	if e == nil {
		return
	}
	i := slices.IndexFunc(e.routes, func(r deviceRoute) bool { return r.device == ch.Device })
	switch {
	case ch.Deleted && i >= 0 && e.routes[i].route.Gateway == ch.Gateway:
		e.routes = slices.Delete(e.routes, i, i+1)
	case ch.Deleted:
		return // the device's route names another gateway now, or none
	case i >= 0:
		e.routes[i].route = ch.Route
	default:
		e.routes = append(e.routes, deviceRoute{device: ch.Device, route: ch.Route})
	}
	c.resize(ch.User, e)
}

// fill caches u's routes from its lookup cmd and returns its live gateways
// at now. The entry is kept only if no change after readSeq, the last
// change the lookup is known to see, was applied already (it would be
// missing from the entry). The caller holds c.mu.
func (c *routeCache) fill(u domain.UserID, cmd *redis.MapStringStringCmd, readSeq uint64, now time.Time) []string {
	if cmd.Err() != nil {
		return nil
	}
	e := &cachedRoutes{filled: now}
	for device, v := range cmd.Val() {
		r, err := delivery.DecodeRoute(v)
		if err != nil {
			c.log.Warn("ignoring a malformed presence route", "user", u, "device", device, "err", err)
			continue
		}
		if r.Live(now) {
			e.routes = append(e.routes, deviceRoute{device: domain.DeviceID(device), route: r})
		}
	}
	if c.pos != "" && c.seq <= readSeq {
		if old := c.users[u]; old != nil {
			c.bytes -= old.size
		}
		c.users[u] = e
		c.resize(u, e)
	}
	return gatewaysOf(e.routes, now)
}

// resize recomputes e's estimated size and evicts entries other than u's
// while the cache is over a bound. The caller holds c.mu.
func (c *routeCache) resize(u domain.UserID, e *cachedRoutes) {
	size := int64(64 + len(u))
	for _, r := range e.routes {
		size += int64(48 + len(r.device) + len(r.route.Gateway))
	}
	c.bytes += size - e.size
	e.size = size
	for v, old := range c.users { // map order: a random victim
		if len(c.users) <= c.maxEntries && c.bytes <= c.maxBytes {
			break
		}
		if v != u {
			delete(c.users, v)
			c.bytes -= old.size
			c.m.routeEvictions.Inc()
		}
	}
}

// gatewaysOf returns the gateways of the routes live at now, each once.
func gatewaysOf(routes []deviceRoute, now time.Time) []string {
	var gws []string
	for _, r := range routes {
		if r.route.Live(now) && !slices.Contains(gws, r.route.Gateway) {
			gws = append(gws, r.route.Gateway)
		}
	}
	return gws
}

// size returns the cached users and their estimated bytes.
func (c *routeCache) size() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.users), c.bytes
}
