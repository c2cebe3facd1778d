package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/internal/replwait"
	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster WAIT counts the replicas that acknowledged the writes
// of the connection it is sent on, so it must follow the append on the same
// node connection: a WAIT routed by the cluster client to another master
// would confirm nothing about the append. runOnMasters sends each master's
// calls and one WAIT in one pipeline on that master's client.

// errNoMaster reports a redirect to a node that is not a known master.
var errNoMaster = errors.New("eventstore: redirected to a node that is not a known master")

// nodeCalls are the calls sent to one node, ASKING before each when the
// node was named by an ASK redirect (the slot is migrating to it).
type nodeCalls struct {
	node   *redis.Client
	calls  []*call
	asking bool
	tries  int // TRYAGAIN answers so far
}

// A call answered TRYAGAIN (its slot is migrating and only some of its
// keys have moved yet) wrote nothing; it is sent again to the same node
// after a backoff from tryAgainFirst, doubling up to tryAgainMax, at most
// maxTryAgain times (about 3 s in all), before it fails unavailable as any
// other error does. A resharding moves a partition's few keys in
// milliseconds.
const (
	maxTryAgain   = 10
	tryAgainFirst = 10 * time.Millisecond
	tryAgainMax   = 500 * time.Millisecond
)

// runOnMasters groups calls by the master of their partition and runs
// each group on its master, every group at the same time. Every outcome
// (including a refused WAIT) is set on the call's cmd; it never returns an
// error of its own.
func (s *Store) runOnMasters(ctx context.Context, cc *redis.ClusterClient, calls []*call) {
	var groups []nodeCalls
	for _, c := range calls {
		node, err := cc.MasterForKey(ctx, c.keys[0])
		if err != nil {
			c.fail(ctx, err)
			continue
		}
		groups = addCall(groups, node, c, false)
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runOnNode(ctx, cc, g, 1)
		}()
	}
	wg.Wait()
}

// addCall appends c to the group of node, creating it when missing.
func addCall(groups []nodeCalls, node *redis.Client, c *call, asking bool) []nodeCalls {
	for i := range groups { // a handful of masters: no map
		if groups[i].node == node && groups[i].asking == asking {
			groups[i].calls = append(groups[i].calls, c)
			return groups
		}
	}
	return append(groups, nodeCalls{node: node, calls: []*call{c}, asking: asking})
}

// runOnNode sends g's calls and WAIT in one pipeline on g.node. A call
// refused with NOSCRIPT (the node lost its script cache) or redirected by
// MOVED or ASK wrote nothing; with retries left it is sent again, after
// SCRIPT LOAD on the node or to the node the redirect names (WAIT then
// runs there), else it fails. A call answered TRYAGAIN is sent again
// after a backoff (see maxTryAgain). The calls that ran fail when WAIT counts
// fewer replicas than Durability.WaitReplicas.
func (s *Store) runOnNode(ctx context.Context, cc *redis.ClusterClient, g nodeCalls, retries int) {
	d := s.cfg.Durability
	var wait *redis.Cmd
	_, err := g.node.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, c := range g.calls {
			if g.asking {
				pipe.Do(ctx, "ASKING")
			}
			c.cmd = s.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		wait = pipe.Do(ctx, "WAIT", d.WaitReplicas, d.WaitTimeout.Milliseconds())
		return nil
	})
	var ran, noscript, again []*call
	var moved []nodeCalls
	for _, c := range g.calls {
		cerr := c.cmd.Err()
		switch {
		case cerr == nil:
			ran = append(ran, c)
		case g.tries < maxTryAgain && redis.HasErrorPrefix(cerr, "TRYAGAIN"):
			again = append(again, c)
		case retries > 0 && redis.HasErrorPrefix(cerr, "NOSCRIPT"):
			noscript = append(noscript, c)
		case retries > 0 && (redis.HasErrorPrefix(cerr, "MOVED") || redis.HasErrorPrefix(cerr, "ASK")):
			node, asking, rerr := redirectTarget(ctx, cc, cerr)
			if rerr != nil {
				c.fail(ctx, rerr)
				continue
			}
			moved = addCall(moved, node, c, asking)
		}
	}
	if err == nil || len(ran) > 0 {
		if n, _ := wait.Int64(); wait.Err() != nil || n < int64(d.WaitReplicas) {
			werr := fmt.Errorf("committed on %s but confirmed by %d of %d replicas within %s", g.node.Options().Addr, n, d.WaitReplicas, d.WaitTimeout)
			if wait.Err() != nil {
				werr = fmt.Errorf("committed on %s but WAIT failed: %w", g.node.Options().Addr, wait.Err())
			}
			for _, c := range ran {
				c.fail(ctx, werr)
			}
		}
	}
	if len(noscript) > 0 {
		if lerr := s.script.Load(ctx, g.node).Err(); lerr != nil {
			for _, c := range noscript {
				c.fail(ctx, lerr)
			}
		} else {
			s.runOnNode(ctx, cc, nodeCalls{node: g.node, calls: noscript, asking: g.asking}, retries-1)
		}
	}
	for _, m := range moved {
		s.runOnNode(ctx, cc, m, retries-1)
	}
	if len(again) > 0 {
		t := time.NewTimer(min(tryAgainFirst<<g.tries, tryAgainMax))
		select {
		case <-t.C:
			s.runOnNode(ctx, cc, nodeCalls{node: g.node, calls: again, asking: g.asking, tries: g.tries + 1}, retries)
		case <-ctx.Done():
			t.Stop()
			for _, c := range again {
				c.fail(ctx, ctx.Err())
			}
		}
	}
}

// redirectTarget returns the master a MOVED or ASK error names and whether
// it was an ASK. A MOVED also makes the cluster client reload its slot map.
func redirectTarget(ctx context.Context, cc *redis.ClusterClient, err error) (*redis.Client, bool, error) {
	f := strings.Fields(err.Error()) // "MOVED 3999 127.0.0.1:6381"
	if len(f) != 3 {
		return nil, false, fmt.Errorf("eventstore: malformed redirect %q", err)
	}
	asking := f[0] == "ASK"
	if !asking {
		cc.ReloadState(ctx)
	}
	found, ferr := replwait.MasterAt(ctx, cc, f[2])
	if ferr != nil {
		return nil, false, ferr
	}
	if found == nil {
		return nil, false, fmt.Errorf("%w: %s", errNoMaster, f[2])
	}
	return found, asking, nil
}

// fail replaces the call's outcome with err.
func (c *call) fail(ctx context.Context, err error) {
	c.cmd = redis.NewCmd(ctx)
	c.cmd.SetErr(err)
}
