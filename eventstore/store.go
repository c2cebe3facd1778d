package eventstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
)

//go:embed append.lua
var appendLua string

// ErrClosed is returned by appends after Close.
var ErrClosed = domain.Errorf(domain.EUnavailable, "eventstore: store closed")

// ErrPartitionMismatch is returned by Open when the configured partition
// count differs from the one recorded when the deployment was created.
var ErrPartitionMismatch = errors.New("eventstore: partition count mismatch")

// ErrPartitionHash is returned by Open when the deployment records a
// partition hash this version does not know.
var ErrPartitionHash = errors.New("eventstore: unknown partition hash")

// ErrLayout is returned by Open when the deployment records a key layout
// this version does not know.
var ErrLayout = errors.New("eventstore: unknown key layout")

// Store is the Redis Streams event store. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	cfg    Config
	keys   keys
	script *redis.Script

	queue  chan *pending // served by the committers
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
}

// pending is an append waiting for its group commit.
type pending struct {
	ctx  context.Context
	p    *prepared
	done chan outcome
}

type outcome struct {
	res AppendResult
	err error
}

// Open checks the deployment's recorded partition count (recording it on
// first use) and the durability settings, and starts the group committers.
// With Config.ReadOnly it writes nothing (no meta hash, no SCRIPT LOAD, no
// committers) and fails with ErrNoDeployment when the deployment does not
// exist. The caller keeps ownership of rdb.
func Open(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		rdb:    rdb,
		cfg:    cfg,
		keys:   keys{prefix: cfg.Prefix, partitions: cfg.Partitions},
		script: redis.NewScript(appendLua),
		stop:   make(chan struct{}),
	}
	if err := s.checkPartitions(ctx); err != nil {
		return nil, err
	}
	if cfg.ReadOnly {
		return s, nil // no SCRIPT LOAD, no committers
	}
	if err := s.checkDurability(ctx); err != nil {
		return nil, err
	}
	if err := s.script.Load(ctx, rdb).Err(); err != nil {
		return nil, fmt.Errorf("eventstore: loading append script: %w", err)
	}
	s.queue = make(chan *pending, 4*cfg.MaxBatchEvents)
	for range cfg.Committers {
		s.wg.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// metaHash is the meta hash field that names the deployment's PartitionHash.
const metaHash = "hash"

// createMeta records the partition count and, only when it creates the
// deployment (the count was not recorded yet), the partition hash and the
// key layout, in one step: a process opening the deployment at the same
// moment never sees the count without the hash, and a deployment created
// before a field existed never gets it (it keeps FNV-1a, and its heads are
// migrated by Open). ARGV: count, hash, the hash's field, layout, the
// layout's field.
var createMeta = redis.NewScript(`
if redis.call('HSETNX', KEYS[1], 'partitions', ARGV[1]) == 1 then
	redis.call('HSET', KEYS[1], ARGV[3], ARGV[2], ARGV[5], ARGV[4])
end
return 0`)

func (s *Store) checkPartitions(ctx context.Context) error {
	if !s.cfg.ReadOnly {
		if err := createMeta.Run(ctx, s.rdb, []string{s.keys.meta()}, s.cfg.Partitions, string(HashFNV1aFmix32), metaHash,
			LayoutHeadsHash, metaLayout).Err(); err != nil {
			return fmt.Errorf("eventstore: recording partition count: %w", err)
		}
	}
	got, hash, layout, err := s.recordedMeta(ctx)
	if err != nil {
		return err
	}
	if got != s.cfg.Partitions {
		return fmt.Errorf("%w: the deployment was created with %d partitions, configured %d", ErrPartitionMismatch, got, s.cfg.Partitions)
	}
	if s.keys.hash, err = parsePartitionHash(hash); err != nil {
		return err
	}
	switch layout {
	case LayoutHeadsHash:
	case "":
		s.keys.oldHeads = true
		if !s.cfg.ReadOnly {
			return s.migrateLayout(ctx)
		}
	default:
		return fmt.Errorf("%w: the deployment records key layout %q; this version knows %q", ErrLayout, layout, LayoutHeadsHash)
	}
	return nil
}

// checkDurability fails unless every server that takes appends (the one
// server, or every master of a cluster) runs with appendonly yes and
// appendfsync always, when the configuration requires it. Every master
// that does not is named in the error.
func (s *Store) checkDurability(ctx context.Context) error {
	if !s.cfg.Durability.RequireFsyncAlways {
		return nil
	}
	var mu sync.Mutex
	var errs []error
	check := func(ctx context.Context, c redis.Cmdable, name string) error {
		conf, err := c.ConfigGet(ctx, "append*").Result()
		if err != nil {
			return fmt.Errorf("eventstore: reading redis persistence settings%s: %w", name, err)
		}
		if conf["appendonly"] != "yes" || conf["appendfsync"] != "always" {
			mu.Lock()
			errs = append(errs, fmt.Errorf("eventstore: durability requires appendonly yes and appendfsync always; server%s has appendonly %s, appendfsync %s",
				name, conf["appendonly"], conf["appendfsync"]))
			mu.Unlock()
		}
		return nil
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return check(ctx, c, " "+c.Options().Addr) })
	} else {
		err = check(ctx, s.rdb, "")
	}
	if err != nil {
		return err
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// Close stops the committers. Appends queued but not yet committed fail with
// ErrClosed; Close waits for commits in flight. It does not close the client.
func (s *Store) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		s.wg.Wait()
		for {
			select {
			case pd := <-s.queue:
				pd.done <- outcome{err: ErrClosed}
				continue
			default:
			}
			break
		}
	})
	return nil
}

// Partitions returns the partition count.
func (s *Store) Partitions() int { return s.cfg.Partitions }

// PartitionHash returns the deployment's partition hash.
func (s *Store) PartitionHash() PartitionHash { return s.keys.hash }

// PartitionOf returns the partition of a partition key.
func (s *Store) PartitionOf(partitionKey string) int { return s.keys.partitionOf(partitionKey) }

// Append validates req and appends it atomically, group-committed with the
// appends that arrive concurrently for the same partition. It returns an
// EInvalid or ETooLarge domain error for bad input (nothing written), an
// EConflict error when a version, guard or cell condition fails (nothing
// written), an EUnavailable error when Redis fails (the outcome is unknown:
// retry with the same idempotency key), or ctx's error.
func (s *Store) Append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	if err := s.writable(); err != nil {
		return AppendResult{}, err
	}
	p, err := s.prepare(&req)
	if err != nil {
		return AppendResult{}, err
	}
	pd := &pending{ctx: ctx, p: p, done: make(chan outcome, 1)}
	select {
	case <-s.stop:
		return AppendResult{}, ErrClosed
	default:
	}
	select {
	case s.queue <- pd:
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	case <-s.stop:
		return AppendResult{}, ErrClosed
	}
	select {
	case o := <-pd.done:
		return o.res, o.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

// commitLoop serves the queue: it takes every append waiting (up to
// MaxBatchEvents), groups them by partition and sends one script call per
// partition, all in one pipeline.
func (s *Store) commitLoop() {
	defer s.wg.Done()
	batch := make([]*pending, 0, 256)
	for {
		batch = batch[:0]
		select {
		case pd := <-s.queue:
			batch = append(batch, pd)
		case <-s.stop:
			return
		}
		n := batch[0].p.nevents
	drain:
		for n < s.cfg.MaxBatchEvents {
			select {
			case pd := <-s.queue:
				batch = append(batch, pd)
				n += pd.p.nevents
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// call is the script call of one partition within a group commit.
type call struct {
	partition int
	txs       []*pending
	keys      []string
	args      []any
	cmd       *redis.Cmd
}

// build encodes the call: the log and heads keys, then the aggregates whose
// heads the script reads (each once), then every transaction.
func (c *call) build(k keys, ttl int64) {
	nkeys, nargs, nheads := 2, 3, 0
	for _, pd := range c.txs {
		nkeys += len(pd.p.keys)
		nargs += len(pd.p.args)
		nheads += len(pd.p.heads)
	}
	c.keys = make([]string, 0, nkeys)
	c.args = make([]any, 0, nargs+nheads)
	c.keys = append(c.keys, k.log(c.partition), k.heads(c.partition))
	c.args = append(c.args, ttl, len(c.txs), 0)
	seen := make(map[string]struct{}, nheads)
	for _, pd := range c.txs {
		for _, h := range pd.p.heads {
			if _, ok := seen[h]; !ok {
				seen[h] = struct{}{}
				c.args = append(c.args, h)
			}
		}
	}
	c.args[2] = len(seen)
	for _, pd := range c.txs {
		c.keys = append(c.keys, pd.p.keys...)
		c.args = append(c.args, pd.p.args...)
	}
}

// commit runs one group commit and answers every append of the batch.
func (s *Store) commit(batch []*pending) {
	calls := make([]*call, 0, 4)
	for _, pd := range batch {
		if err := pd.ctx.Err(); err != nil {
			pd.done <- outcome{err: err}
			continue
		}
		var c *call
		for _, x := range calls { // a handful of partitions: no map
			if x.partition == pd.p.partition {
				c = x
				break
			}
		}
		if c == nil {
			c = &call{partition: pd.p.partition}
			calls = append(calls, c)
		}
		c.txs = append(c.txs, pd)
	}
	if len(calls) == 0 {
		return
	}
	ttl := int64(s.cfg.IdempotencyTTL / time.Second)
	for _, c := range calls {
		c.build(s.keys, ttl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.run(ctx, calls)
	for _, c := range calls {
		replies, cerr := c.cmd.Slice()
		if err != nil {
			cerr = err
		}
		if cerr == nil && len(replies) != len(c.txs) {
			cerr = fmt.Errorf("append script returned %d results for %d transactions", len(replies), len(c.txs))
		}
		if cerr != nil {
			cerr = domain.Errorf(domain.EUnavailable, "eventstore: append to partition %d: %w", c.partition, cerr)
			for _, pd := range c.txs {
				pd.done <- outcome{err: cerr}
			}
			continue
		}
		for i, pd := range c.txs {
			res, err := parseReply(replies[i], pd.p)
			if err == nil && res.Duplicate && len(res.Events) > 0 {
				// A duplicate wrote nothing, so the WAIT after it counted
				// the replicas of its connection's earlier write, not of
				// the first execution (whose WAIT may have failed): confirm
				// those events themselves before answering.
				if werr := s.confirmReplicated(ctx, c.partition, res.Events[len(res.Events)-1].Position); werr != nil {
					res, err = AppendResult{}, werr
				}
			}
			pd.done <- outcome{res: res, err: err}
		}
	}
}

// run sends every call in one pipeline, followed by WAIT when durability
// asks for it (on a cluster, one pipeline per master: see runOnMasters). A NOSCRIPT reply (the server lost its script cache) reloads
// the script and retries once: a call that failed with NOSCRIPT wrote nothing.
func (s *Store) run(ctx context.Context, calls []*call) error {
	d := s.cfg.Durability
	if cc, ok := s.rdb.(*redis.ClusterClient); ok && d.WaitReplicas > 0 {
		s.runOnMasters(ctx, cc, calls)
		return nil
	}
	for attempt := 0; ; attempt++ {
		var wait *redis.Cmd
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, c := range calls {
				c.cmd = s.script.EvalSha(ctx, pipe, c.keys, c.args...)
			}
			if d.WaitReplicas > 0 {
				wait = pipe.Do(ctx, "WAIT", d.WaitReplicas, d.WaitTimeout.Milliseconds())
			}
			return nil
		})
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
			if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if wait != nil {
			if n, _ := wait.Int64(); n < int64(d.WaitReplicas) {
				return fmt.Errorf("committed but confirmed by %d of %d replicas within %s", n, d.WaitReplicas, d.WaitTimeout)
			}
		}
		return nil
	}
}

// parseReply turns one transaction's script result into a result or error.
func parseReply(reply any, p *prepared) (AppendResult, error) {
	str, _ := reply.(string)
	res := AppendResult{Partition: p.partition}
	kind, rest, _ := strings.Cut(str, ";")
	switch kind {
	case "O", "D":
		res.Duplicate = kind == "D"
		if kind == "O" {
			res.Events = make([]Appended, 0, p.nevents)
		}
		i := 0
		for part := range strings.SplitSeq(rest, ";") {
			var a Appended
			var err error
			if kind == "O" {
				a, err = parseNew(part, p, i)
			} else {
				a, err = parseAppended(part)
			}
			if err != nil {
				return AppendResult{}, domain.Errorf(domain.EInternal, "eventstore: bad script result %q: %w", str, err)
			}
			res.Events = append(res.Events, a)
			i++
		}
		if kind == "O" && i != p.nevents {
			return AppendResult{}, domain.Errorf(domain.EInternal, "eventstore: script result %q has %d events, want %d", str, i, p.nevents)
		}
		return res, nil
	case "V", "G", "C":
		idx, have, _ := strings.Cut(rest, ";")
		i, _ := strconv.Atoi(idx)
		switch {
		case kind == "V" && i >= 1 && i <= len(p.req.Streams):
			st := p.req.Streams[i-1]
			return res, fmt.Errorf("eventstore: version conflict on %s: expected %s, have version %s: %w", st.Aggregate, st.Expected, have, domain.ErrConflict)
		case kind == "G" && i >= 1 && i <= len(p.req.Guards):
			g := p.req.Guards[i-1]
			return res, fmt.Errorf("eventstore: guard conflict on %s: expected version %d, have %s: %w", g.Aggregate, g.Version, have, domain.ErrConflict)
		case kind == "C" && i >= 1 && i <= len(p.req.Streams):
			return res, fmt.Errorf("eventstore: cell conflict on %s event %s: %w", p.req.Streams[i-1].Aggregate, have, domain.ErrConflict)
		}
	}
	return AppendResult{}, domain.Errorf(domain.EInternal, "eventstore: bad script result %q", str)
}

// parseAppended parses "id:version:seq:position" (a stored idempotency
// record's event).
func parseAppended(s string) (Appended, error) {
	idStr, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Appended{}, errors.New("want id:version:seq:position")
	}
	id, err := ulid.ParseStrict(idStr)
	if err != nil {
		return Appended{}, err
	}
	a, err := parseVSP(rest)
	a.ID = id
	return a, err
}

// parseNew parses "version:seq:position" of the i-th event of p, whose id
// the request carries.
func parseNew(s string, p *prepared, i int) (Appended, error) {
	ev := eventAt(p.req, i)
	if ev == nil {
		return Appended{}, fmt.Errorf("more events than the request's %d", p.nevents)
	}
	a, err := parseVSP(s)
	copy(a.ID[:], ev.GetId())
	return a, err
}

func parseVSP(s string) (Appended, error) {
	f := strings.SplitN(s, ":", 3)
	if len(f) != 3 {
		return Appended{}, errors.New("want version:seq:position")
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return Appended{}, err
	}
	seq, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return Appended{}, err
	}
	pos, err := ParsePosition(f[2])
	if err != nil {
		return Appended{}, err
	}
	return Appended{Version: v, Seq: seq, Position: pos}, nil
}

func ulidString(b []byte) string {
	var id ulid.ULID
	copy(id[:], b)
	return id.String()
}
