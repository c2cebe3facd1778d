package inbox

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// The two ways a batch's inbox entries are written. Both give every
// recipient's entries of the batch contiguously in its inbox and the id of
// the entry just before the first (the Prev its notification carries), and
// count the bytes each inbox took (counts) for the quota.
//
// On one server (writeTx) every command of the batch is one transaction:
// each inbox's last entry read and its new entries with nothing of another
// partition between them, the route read after the entries, the
// quarantine records. A user with one entry whose inbox's last id this
// process remembers claims it instead of reading it (see lastIDs).
//
// A Redis Cluster runs no transaction over slots, and a batch's inboxes
// hash to many (writeScripted): each inbox's read, entries and byte count
// are one script call (append.lua), the calls of a batch one pipeline that
// the client splits by master, so a batch costs one round trip per master
// however many inboxes it writes. The route reads and quarantine records
// follow in a second pipeline.

// writeTx writes the batch on one server (see above) and returns the
// claims that held: the users whose Prev is their claimed id.
func (p *Projector) writeTx(ctx context.Context, partition int, entries []written, users []domain.UserID,
	before map[domain.UserID]*redis.XMessageSliceCmd, counts map[domain.UserID]*redis.IntCmd,
	routes *routeLookup, bad []quarantined, perUser map[domain.UserID]int, now time.Time) (map[domain.UserID]streamid.ID, error) {
	claims := p.last.claim(perUser, now)
	pipe := p.rdb.TxPipeline()
	for _, u := range users {
		if _, ok := claims[u]; !ok {
			before[u] = pipe.XRevRangeN(ctx, p.keys.Inbox(u), "+", "-", 1)
		}
	}
	added := make(map[domain.UserID]int64, len(users)) // bytes per inbox
	for i := range entries {
		w := &entries[i]
		a := *w.args
		a.Stream = p.keys.Inbox(w.user)
		if x, ok := claims[w.user]; ok {
			a.ID, a.NoMkStream = next(x).String(), true
		}
		w.cmd = pipe.XAdd(ctx, &a)
		added[w.user] += w.size
	}
	p.routes.queue(ctx, pipe, routes) // after the entries: see routeCache
	for _, u := range users {
		counts[u] = pipe.IncrBy(ctx, p.keys.InboxBytes(u), added[u]) // one per inbox and batch
	}
	p.quarantineRecords(ctx, pipe, bad)
	refused := make(map[domain.UserID]bool)
	err := execIgnoring(ctx, pipe, func(c redis.Cmder) bool {
		if c == routes.read {
			return true
		}
		if x, ok := c.(*redis.StringCmd); ok && refusedClaim(x.Err()) {
			for i := range entries { // a refused claim is its user's only entry
				if w := &entries[i]; w.cmd == x {
					if _, claimed := claims[w.user]; claimed {
						refused[w.user] = true
						return true
					}
					return false
				}
			}
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: writing entries of partition %d: %w", partition, err)
	}
	if err := p.appendAgain(ctx, entries, refused, before); err != nil {
		return nil, fmt.Errorf("inbox: writing entries of partition %d after refused claims: %w", partition, err)
	}
	for u := range refused {
		delete(claims, u)
	}
	p.m.claims.Add(float64(len(claims)))
	p.m.refusedClaims.Add(float64(len(refused)))
	return claims, nil
}

// writeScripted writes the batch on a Redis Cluster (see above). It fills
// before, each entry's cmd and counts with the scripts' answers, as writeTx
// does with its commands'.
func (p *Projector) writeScripted(ctx context.Context, partition int, entries []written, users []domain.UserID,
	before map[domain.UserID]*redis.XMessageSliceCmd, counts map[domain.UserID]*redis.IntCmd,
	routes *routeLookup, bad []quarantined) error {
	type call struct {
		keys []string
		args []any
		of   []int // indexes into entries, in order
		cmd  *redis.Cmd
	}
	calls := make(map[domain.UserID]*call, len(users))
	window := strconv.FormatInt(max(p.cfg.Window, 0), 10)
	for i := range entries {
		w := &entries[i]
		c := calls[w.user]
		if c == nil {
			c = &call{keys: []string{p.keys.Inbox(w.user), p.keys.InboxBytes(w.user)}, args: []any{window, int64(0)}}
			calls[w.user] = c
		}
		c.args[1] = c.args[1].(int64) + w.size
		c.args = append(c.args, len(w.args.Values.([]any)))
		c.args = append(c.args, w.args.Values.([]any)...)
		c.of = append(c.of, i)
	}
	pending := make([]*call, 0, len(calls))
	for _, u := range users {
		pending = append(pending, calls[u])
	}
	for attempt := 0; len(pending) > 0; attempt++ {
		pipe := p.rdb.Pipeline()
		for _, c := range pending {
			c.cmd = p.appendScript.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx) // each call's error is checked below
		var missing []*call
		for _, c := range pending {
			if err := c.cmd.Err(); err != nil {
				if redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
					missing = append(missing, c) // it ran nothing: run it again
					continue
				}
				return fmt.Errorf("inbox: writing entries of partition %d: %w", partition, err)
			}
		}
		if len(missing) > 0 {
			if err := p.appendScript.Load(ctx, p.rdb).Err(); err != nil {
				return fmt.Errorf("inbox: loading the append script: %w", err)
			}
		}
		pending = missing
	}
	for u, c := range calls {
		res, err := c.cmd.Slice()
		if err == nil && len(res) != len(c.of)+2 {
			err = fmt.Errorf("append script answered %d values for %d entries", len(res), len(c.of))
		}
		if err != nil {
			return fmt.Errorf("inbox: writing entries of partition %d: %w", partition, err)
		}
		var msgs []redis.XMessage
		if prev, _ := res[0].(string); prev != "" {
			msgs = []redis.XMessage{{ID: prev}}
		}
		before[u] = redis.NewXMessageSliceCmdResult(msgs, nil)
		for k, i := range c.of {
			id, _ := res[k+1].(string)
			entries[i].cmd = redis.NewStringResult(id, nil)
		}
		n, _ := res[len(res)-1].(int64)
		counts[u] = redis.NewIntResult(n, nil)
	}
	after := p.rdb.Pipeline()
	p.routes.queue(ctx, after, routes)
	p.quarantineRecords(ctx, after, bad)
	if err := execIgnoring(ctx, after, func(c redis.Cmder) bool { return c == routes.read }); err != nil {
		return fmt.Errorf("inbox: writing entries of partition %d: %w", partition, err)
	}
	return nil
}

// quarantineRecords queues the quarantine stream's records of bad.
func (p *Projector) quarantineRecords(ctx context.Context, pipe redis.Pipeliner, bad []quarantined) {
	for _, q := range bad {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: p.quarantineKey(), MaxLen: p.cfg.QuarantineLen, Approx: true, Values: []any{
			"partition", strconv.Itoa(q.partition), "position", q.position.String(), "reason", q.reason, "raw", q.raw,
		}})
	}
}
