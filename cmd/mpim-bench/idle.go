package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The idle scenario: every user connects, authenticates and heartbeats;
// the report is the gateways' memory per connection.
//
// Memory is sampled twice, before the connections are opened and after
// they were held, each time after every gateway collected its garbage
// (GET /debug/pprof/heap?gc=1 on its ops address: mpimd --pprof) and its
// RSS stopped moving. Without that the difference measured the garbage
// collector, not the connections: a gateway that just served a busy
// scenario holds tens of MiB of garbage and of freed pages, and a
// collection or the runtime's background return of freed pages to the
// kernel between the two samples made the figure negative (-340 to -965
// KiB per connection, 20-58 MiB in all, in the --short reports of
// 2026-12-05 with 60 connections).

// runIdle connects every user, holds the connections for the duration and
// reports the gateways' memory per connection. A connection that ends
// before the run closes it fails the audit.
func (r *runner) runIdle(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	setPhase, stopProgress := r.startProgress(ctx)
	defer stopProgress()

	// Register and log in over short-lived connections first, so that the
	// password hashing is over before the baseline is taken.
	setupTime, err := r.timedSetup(ctx)
	if err != nil {
		return nil, err
	}
	setPhase("settle")
	before := r.settledMemory(ctx)
	setPhase("connect")
	connStart := time.Now()
	if err := r.resumeAll(ctx); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	connTime := time.Since(connStart)
	kctx, stopKeepalive := context.WithCancel(ctx)
	var kwg sync.WaitGroup
	defer kwg.Wait()
	defer stopKeepalive()
	kwg.Go(func() { r.keepaliveAll(kctx, r.clients) })
	setPhase("hold")
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	setPhase("settle")
	after := r.settledMemory(ctx)
	stopKeepalive()
	kwg.Wait()
	stopProgress()
	audit := r.closeAndAudit()

	rep := r.report(0, cfg.Duration)
	rep.SetupSeconds = setupTime.Seconds()
	rep.ConnectSeconds = connTime.Seconds()
	rep.OpenConnections = len(r.clients) - audit.DroppedConnections
	rep.ServerRSSBytes = after.rss
	rep.GCForced = before.gcForced && after.gcForced
	rep.MemorySettled = before.settled && after.settled
	n := float64(len(r.clients))
	if len(cfg.Pids) > 0 && before.rss > 0 {
		rep.RSSPerConnBytes = float64(after.rss-before.rss) / n
	}
	if len(cfg.Metrics) > 0 && before.heap >= 0 && after.heap >= 0 {
		rep.HeapPerConnBytes = float64(after.heap-before.heap) / n
	}
	rep.setAudit(audit)
	return rep, nil
}

// memSample is the gateways' memory at one moment.
type memSample struct {
	rss      int64 // VmRSS summed over --pid, bytes; 0 without --pid
	heap     int64 // Go heap in use plus goroutine stacks summed over --metrics; -1 if one could not be read
	gcForced bool  // every --metrics gateway collected its garbage first
	settled  bool  // the RSS stopped moving before the time limit
}

// Settling: the RSS is read every settleEvery and has settled when the last
// settleSamples readings lie within settleTolerance of each other; after
// settleLimit the last reading is taken as it is.
const (
	settleEvery   = 250 * time.Millisecond
	settleSamples = 8
	settleLimit   = 30 * time.Second
)

// settleTolerance is how far apart settled readings of rss may lie: 0.5%,
// at least 256 KiB (a few pages come and go in an idle Go process).
func settleTolerance(rss int64) int64 { return max(rss/200, 256<<10) }

// settledMemory has every gateway collect its garbage, waits for their RSS
// to settle and samples their memory.
func (r *runner) settledMemory(ctx context.Context) memSample {
	s := memSample{gcForced: len(r.cfg.Metrics) > 0}
	for _, u := range r.cfg.Metrics {
		if err := forceGC(ctx, u); err != nil {
			s.gcForced = false
			fmt.Fprintf(r.stderr, "mpim-bench: memory measured without a forced GC: %v\n", err)
		}
	}
	s.settled = true
	if len(r.cfg.Pids) > 0 {
		s.rss, s.settled = settle(ctx, func() int64 { return rssOf(r.cfg.Pids) }, settleEvery, settleLimit)
	}
	s.heap = heapOf(ctx, r.cfg.Metrics)
	return s
}

// settle reads sample every `every` until its last settleSamples readings
// lie within settleTolerance of each other or limit passes; it returns the
// last reading and whether it settled.
func settle(ctx context.Context, sample func() int64, every, limit time.Duration) (int64, bool) {
	deadline := time.Now().Add(limit)
	var last []int64
	for {
		v := sample()
		last = append(last, v)
		if len(last) > settleSamples {
			last = last[1:]
		}
		if len(last) == settleSamples {
			lo, hi := last[0], last[0]
			for _, x := range last {
				lo, hi = min(lo, x), max(hi, x)
			}
			if hi-lo <= settleTolerance(v) {
				return v, true
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return v, false
		}
		time.Sleep(every)
	}
}

// forceGC asks the gateway whose /metrics URL is metricsURL to run a
// garbage collection, through the heap profile on the same address
// (mpimd --pprof): the handler collects before it answers.
func forceGC(ctx context.Context, metricsURL string) error {
	u, err := url.Parse(metricsURL)
	if err != nil {
		return err
	}
	u.Path, u.RawQuery = "/debug/pprof/heap", "gc=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // the profile itself is not wanted
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s (is the gateway run with --pprof?)", u, resp.Status)
	}
	return nil
}

// heapOf sums go_memstats_heap_inuse_bytes and go_memstats_stack_inuse_bytes
// over the /metrics URLs; -1 if one cannot be read.
func heapOf(ctx context.Context, urls []string) int64 {
	var total int64
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return -1
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return -1
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
				if v, ok := strings.CutPrefix(line, name); ok {
					f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					total += int64(f)
				}
			}
		}
		resp.Body.Close()
	}
	return total
}
