package projectors

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// SharedLogConfig configures a SharedLog.
type SharedLogConfig struct {
	// MaxEntries bounds the entries kept per partition (default 4096,
	// 1..1000000).
	MaxEntries int
	// MaxBytes bounds the stored envelope bytes (Recorded.Raw) kept per
	// partition (default 4 MiB, 1 KiB..1 GiB); the decoded form kept beside
	// them takes a few times that.
	MaxBytes int64
	// Registerer receives the shared log's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *SharedLogConfig) setDefaults() {
	if c.MaxEntries == 0 {
		c.MaxEntries = 4096
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 4 << 20
	}
}

// Validate returns every problem of the configuration at once.
func (c *SharedLogConfig) Validate() error {
	var errs []error
	if c.MaxEntries < 1 || c.MaxEntries > 1_000_000 {
		errs = append(errs, fmt.Errorf("projectors: shared log max entries must be 1..1000000, got %d", c.MaxEntries))
	}
	if c.MaxBytes < 1<<10 || c.MaxBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("projectors: shared log max bytes must be 1KiB..1GiB, got %d", c.MaxBytes))
	}
	return errors.Join(errs...)
}

// SharedLog is the Log of the runners of one process: it lets them share
// their reads of a partition, so that the archive, mysql, cache and inbox
// runners cost one XREAD and one decode per batch of a partition instead of
// one each. It changes nothing else: each runner keeps its own ownership,
// checkpoint and fencing token, and gets the entries after its own
// checkpoint, in order, exactly as the wrapped log would give them.
//
// Per partition it keeps a ring of the entries read last, bounded by
// SharedLogConfig, that covers a range of positions (base, head]: every
// entry the log held in that range when it was read, undecodable ones
// included. A Tail after a position inside that range is served from the
// ring without a round trip. A Tail at the ring's head (a runner caught up)
// joins the one blocking read in flight from there, so N caught-up runners
// wait on one XREAD, and are all served from what it brings. Any other Tail
// (a runner behind the ring, or a read from elsewhere) reads the wrapped
// log itself; its result extends the ring when it starts inside the range
// or beyond its head, and is otherwise not kept. Positions are compared as
// stream ids, so the ring never serves entries that do not follow the
// reader's position contiguously: a trim or an eviction between two reads
// makes a reader go to Redis, never skip.
//
// Entries read through a SharedLog are shared by the runners: a projector
// must treat a batch's Recorded values (Event, Raw, Domain) as read-only.
// A SharedLog is safe for concurrent use.
type SharedLog struct {
	log   Log
	cfg   SharedLogConfig
	parts []*sharedPartition
	m     sharedLogMetrics
}

var _ Log = (*SharedLog)(nil)

// NewSharedLog returns a SharedLog reading log; it fails on an invalid
// configuration or a metrics registration conflict.
func NewSharedLog(log Log, cfg SharedLogConfig) (*SharedLog, error) {
	cfg.setDefaults()
	err := cfg.Validate()
	if log == nil {
		err = errors.Join(err, errors.New("projectors: shared log needs a log"))
	}
	if err != nil {
		return nil, err
	}
	m, err := newSharedLogMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &SharedLog{log: log, cfg: cfg, parts: make([]*sharedPartition, log.Partitions()), m: m}
	for i := range s.parts {
		s.parts[i] = &sharedPartition{}
	}
	return s, nil
}

// Partitions returns the wrapped log's partition count.
func (s *SharedLog) Partitions() int { return s.log.Partitions() }

// Info returns the wrapped log's Info.
func (s *SharedLog) Info(ctx context.Context, p int) (eventstore.PartitionInfo, error) {
	return s.log.Info(ctx, p)
}

// Tail returns up to limit entries of partition p after position after,
// waiting up to block (at least 1ms) when there are none yet, with the
// wrapped log's semantics: no entries and no error when the block time
// passes, and the entries before an undecodable one with its
// *eventstore.DecodeError.
func (s *SharedLog) Tail(ctx context.Context, p int, after eventstore.Position, limit int, block time.Duration) ([]eventstore.Recorded, error) {
	if p < 0 || p >= len(s.parts) || limit <= 0 {
		return s.log.Tail(ctx, p, after, limit, block) // the wrapped log says what is wrong
	}
	sp := s.parts[p]
	deadline := time.Now().Add(max(block, time.Millisecond))
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		sp.mu.Lock()
		if recs, err, ok := sp.serve(after, limit); ok {
			sp.mu.Unlock()
			s.m.ringReads.Inc()
			s.m.ringEntries.Add(float64(len(recs)))
			return recs, err
		}
		if sp.fetching && sp.from == after {
			// A caught-up runner: wait for the read in flight.
			changed := sp.changed
			sp.mu.Unlock()
			wait := time.Until(deadline)
			if wait <= 0 {
				return nil, nil
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-changed:
				continue // Reset discards a tick not taken (Go 1.23 timers)
			case <-timer.C:
				return nil, nil
			case <-ctx.Done():
				return nil, fmt.Errorf("projectors: tailing partition %d: %w", p, ctx.Err())
			}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			sp.mu.Unlock()
			return nil, nil
		}
		// Lead the blocking read at (or past) the head; a runner behind
		// the ring reads for itself.
		lead := !sp.fetching && (!sp.valid || after.Compare(sp.head) >= 0)
		if lead {
			sp.fetching, sp.from, sp.changed = true, after, make(chan struct{})
		}
		sp.mu.Unlock()
		recs, err := s.log.Tail(ctx, p, after, limit, wait)
		s.m.redisReads.Inc()
		s.m.redisEntries.Add(float64(len(recs)))
		sp.mu.Lock()
		sp.merge(after, recs, err, &s.cfg)
		if lead {
			sp.fetching = false
			close(sp.changed)
		}
		sp.mu.Unlock()
		return recs, err
	}
}

// sharedPartition is one partition's ring; mu guards every field.
type sharedPartition struct {
	mu sync.Mutex
	// valid: the ring covers (base, head], holding every entry the log held
	// in that range when it was read; head is the last entry's position,
	// or base when there is none.
	valid      bool
	base, head eventstore.Position
	entries    []ringEntry
	bytes      int64
	// fetching: a read from position from is in flight; changed is closed
	// when it ends.
	fetching bool
	from     eventstore.Position
	changed  chan struct{}
}

// ringEntry is an entry of the ring: a decoded event, or an undecodable
// entry (bad).
type ringEntry struct {
	rec eventstore.Recorded
	bad *eventstore.DecodeError
}

func (e *ringEntry) position() eventstore.Position {
	if e.bad != nil {
		return e.bad.Position
	}
	return e.rec.Position
}

func (e *ringEntry) size() int64 {
	if e.bad != nil {
		return int64(len(e.bad.Raw))
	}
	return int64(len(e.rec.Raw))
}

// serve returns the entries after after as the log would (ok), or ok false
// when the ring does not hold them.
func (sp *sharedPartition) serve(after eventstore.Position, limit int) (recs []eventstore.Recorded, err error, ok bool) {
	if !sp.valid || after.Compare(sp.base) < 0 || after.Compare(sp.head) >= 0 {
		return nil, nil, false
	}
	i := sort.Search(len(sp.entries), func(i int) bool { return sp.entries[i].position().Compare(after) > 0 })
	recs = make([]eventstore.Recorded, 0, min(limit, len(sp.entries)-i))
	for _, e := range sp.entries[i:] {
		if len(recs) == limit {
			break
		}
		if e.bad != nil {
			return recs, e.bad, true // an undecodable entry ends the read, as in the log
		}
		recs = append(recs, e.rec)
	}
	return recs, nil, true
}

// merge keeps the result of a read after after: it extends the ring when
// it starts inside the ring's range, replaces it when it starts past the
// head, and is dropped otherwise (a reader behind the ring). Then the
// oldest entries go until the ring is within its bounds.
func (sp *sharedPartition) merge(after eventstore.Position, recs []eventstore.Recorded, err error, cfg *SharedLogConfig) {
	var bad *eventstore.DecodeError
	if err != nil && (!errors.As(err, &bad) || bad.Position.IsZero()) {
		return // nothing conclusive about the range read
	}
	if len(recs) == 0 && bad == nil {
		return
	}
	switch {
	case !sp.valid || after.Compare(sp.head) > 0:
		sp.valid, sp.base, sp.head, sp.entries, sp.bytes = true, after, after, nil, 0
	case after.Compare(sp.base) < 0:
		return
	}
	for _, r := range recs {
		sp.add(ringEntry{rec: r})
	}
	if bad != nil {
		sp.add(ringEntry{bad: bad})
	}
	for len(sp.entries) > 0 && (len(sp.entries) > cfg.MaxEntries || sp.bytes > cfg.MaxBytes) {
		e := &sp.entries[0]
		sp.base, sp.bytes = e.position(), sp.bytes-e.size()
		sp.entries[0] = ringEntry{}
		sp.entries = sp.entries[1:]
	}
}

// add appends e if it is past the head.
func (sp *sharedPartition) add(e ringEntry) {
	if e.position().Compare(sp.head) <= 0 {
		return
	}
	sp.entries = append(sp.entries, e)
	sp.head, sp.bytes = e.position(), sp.bytes+e.size()
}

type sharedLogMetrics struct {
	redisReads, ringReads     prometheus.Counter
	redisEntries, ringEntries prometheus.Counter
}

func newSharedLogMetrics(reg prometheus.Registerer) (sharedLogMetrics, error) {
	reads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_projector_log_reads_total",
		Help: "Reads of the log by the runners of the process, by source: redis (a round trip) or ring (served from the shared log)."}, []string{"source"})
	entries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_projector_log_entries_total",
		Help: "Entries the runners of the process read, by source: redis (read and decoded) or ring (shared)."}, []string{"source"})
	m := sharedLogMetrics{redisReads: reads.WithLabelValues("redis"), ringReads: reads.WithLabelValues("ring"),
		redisEntries: entries.WithLabelValues("redis"), ringEntries: entries.WithLabelValues("ring")}
	return m, promreg.Register(reg, "projectors: shared log metrics", reads, entries)
}
