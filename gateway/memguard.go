package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// codeOverloaded is the error of a request refused because Redis is short of
// memory (see memoryGuard).
const codeOverloaded domain.Code = "overloaded"

// memoryGuard keeps Redis from reaching maxmemory through this gateway: it
// reads INFO memory every interval and, while used_memory is at or above
// fraction × maxmemory (on a Redis Cluster: on any master, as every master
// takes a share of the writes), refuses the requests that add content (register,
// send, edit, createGroup, addMember, joinGroup, requestFriend,
// updateProfile) with "overloaded". Everything else (reads, acks, login,
// leaving, blocking, marking read) still works, so clients keep their view
// and the backlog drains. Redis must run with maxmemory-policy noeviction:
// the log and inboxes must never be evicted, and noeviction makes Redis
// refuse writes at maxmemory instead, for everyone; the guard's margin keeps
// that from happening. With maxmemory 0 (no limit) it never refuses. A
// failed INFO keeps the last verdict (Redis down fails the requests anyway);
// a server that answers INFO memory with an error (the embedded stand-in)
// turns the guard off.
//
// Every gateway runs its own guard against the same Redis, so they agree
// within an interval. It is safe for concurrent use.
type memoryGuard struct {
	rdb      redis.UniversalClient
	fraction float64
	interval time.Duration
	log      *slog.Logger
	ratio    prometheus.Gauge

	over      atomic.Bool
	warnedErr atomic.Bool
}

// refuses returns an "overloaded" error if f adds content while Redis is
// short of memory, else nil.
func (g *memoryGuard) refuses(f *mpimv1.ClientFrame) error {
	if !g.over.Load() {
		return nil
	}
	switch f.GetRequest().(type) {
	case *mpimv1.ClientFrame_Register, *mpimv1.ClientFrame_Send, *mpimv1.ClientFrame_Edit,
		*mpimv1.ClientFrame_CreateGroup, *mpimv1.ClientFrame_AddMember, *mpimv1.ClientFrame_JoinGroup,
		*mpimv1.ClientFrame_RequestFriend, *mpimv1.ClientFrame_UpdateProfile:
		err := domain.Errorf(codeOverloaded, "gateway: the service is short of storage; new messages and registrations are refused for now, reading works")
		err.RetryAfter = max(g.interval, time.Second)
		return err
	}
	return nil
}

// run checks every interval until ctx ends.
func (g *memoryGuard) run(ctx context.Context) {
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		if !g.check(ctx) {
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// check reads INFO memory once (of every master on a cluster) and updates
// the verdict from the fullest server. It returns false if the server does
// not report memory, so checking is pointless.
func (g *memoryGuard) check(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, max(g.interval, time.Second))
	defer cancel()
	m, err := fullestNode(ctx, g.rdb)
	var rerr redis.Error
	switch {
	case errors.As(err, &rerr):
		g.log.Info("gateway: Redis does not report its memory; the memory guard is off", "err", err)
		return false
	case err != nil:
		if ctx.Err() == nil && !g.warnedErr.Swap(true) {
			g.log.Warn("gateway: reading Redis INFO memory; keeping the last verdict", "err", err)
		}
		return true
	}
	g.warnedErr.Store(false)
	used, limit, node := m.used, m.limit, m.node
	if limit <= 0 {
		g.ratio.Set(0)
		g.over.Store(false)
		return true
	}
	r := float64(used) / float64(limit)
	g.ratio.Set(r)
	over := r >= g.fraction
	if was := g.over.Swap(over); was != over {
		if over {
			g.log.Warn("gateway: Redis memory above the limit; refusing new content", "used_bytes", used, "maxmemory_bytes", limit, "fraction", g.fraction, "node", node)
		} else {
			g.log.Info("gateway: Redis memory below the limit again; accepting new content", "used_bytes", used, "maxmemory_bytes", limit, "node", node)
		}
	}
	return true
}

// nodeMemory is used_memory and maxmemory of one Redis server, as INFO
// memory reports them; node is its address ("" for the one server).
type nodeMemory struct {
	node        string
	used, limit int64
}

// fullestNode reads INFO memory of the one server, or of every master of a
// cluster, and returns the fullest: the highest used_memory / maxmemory of
// the masters with a maxmemory, or, if none has one, a master with limit 0.
// An error of any master is returned.
func fullestNode(ctx context.Context, rdb redis.UniversalClient) (nodeMemory, error) {
	read := func(ctx context.Context, c redis.Cmdable, node string) (nodeMemory, error) {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return nodeMemory{}, err
		}
		return nodeMemory{node: node, used: infoField(info, "used_memory"), limit: infoField(info, "maxmemory")}, nil
	}
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return read(ctx, rdb, "")
	}
	var mu sync.Mutex
	var fullest nodeMemory
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		m, err := read(ctx, c, c.Options().Addr)
		if err != nil {
			return fmt.Errorf("master %s: %w", c.Options().Addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if fullest.node == "" || fuller(m, fullest) {
			fullest = m
		}
		return nil
	})
	return fullest, err
}

// fuller reports whether a is closer to its maxmemory than b; a server
// without maxmemory is never fuller than one with it.
func fuller(a, b nodeMemory) bool {
	switch {
	case a.limit <= 0:
		return false
	case b.limit <= 0:
		return true
	}
	return float64(a.used)/float64(a.limit) > float64(b.used)/float64(b.limit)
}

// infoField returns the integer value of "name:<value>" in an INFO answer,
// or -1 if it is missing or not an integer.
func infoField(info, name string) int64 {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if ok && k == name {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
