// Command mpim-bench drives real WebSocket clients against running mpim
// gateways and audits what they get: every run measures throughput and
// latency and checks that every acknowledged message reached every member
// device once, in order and under one event id, that every send was
// answered without an error and that no connection dropped. A non-zero
// audit counter makes it exit with status 1; bad flags or a failed setup
// exit with status 2.
//
//	mpim-bench --gateways ws://127.0.0.1:8080/ws --scenario pairs --users 200 --duration 10s
//
// Scenarios: pairs (users/2 senders, each to its own peer), groups (groups of
// --group-size, every member sending), fanout (one group of all users,
// --senders sending), idle (connected, authenticated, heartbeating clients;
// memory per connection with --pid/--metrics) and storm (all users
// disconnect, --senders other connections send --missed messages to each,
// all reconnect at once and catch up; catch-up time per client and in
// total) and push (the pairs of pairs, the receivers offline with push
// tokens: mpim-bench serves the webhook of mpimd's push projector on
// --push-listen, checks each call's signature and measures send ->
// webhook latency; a push lost fails the audit). Closed loop by default (--window messages in flight per sender);
// --rate makes it open loop with latency measured from the intended send
// time. --codec json makes every client speak the JSON subprotocol
// (mpim.v1.json) instead of binary protobuf, with the same audit. --plot
// writes a PNG of the latency percentiles over time; --cpuprofile a pprof
// CPU profile of mpim-bench itself. The report gives mpim-bench's own CPU
// per acked send over the measured window, beside the servers' (--pid).
// Only loopback targets are accepted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpim-bench:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode is the process status for run's error: 0 for none, 1 for a
// failed audit (the report was written), 2 for anything else.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errAuditFailed):
		return 1
	default:
		return 2
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	r := newRunner(cfg, stderr)
	defer r.closeAll()
	var rep *Report
	switch cfg.Scenario {
	case "idle":
		rep, err = r.runIdle(ctx)
	case "storm":
		rep, err = r.runStorm(ctx)
	default:
		rep, err = r.runTraffic(ctx)
	}
	if err != nil {
		return err
	}
	if cfg.Plot != "" && rep.Timeline != nil {
		if err := writePlot(cfg.Plot, rep.plotText(), *rep.Timeline); err != nil {
			return err
		}
		rep.Plot = cfg.Plot
	}
	rep.print(stdout)
	if cfg.JSON != "" {
		if err := rep.writeJSON(cfg.JSON); err != nil {
			return err
		}
	}
	if !rep.Audit.Clean() {
		return fmt.Errorf("%w: %+v", errAuditFailed, rep.Audit)
	}
	return nil
}

// runTraffic runs pairs, groups or fanout.
func (r *runner) runTraffic(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	setPhase, stopProgress := r.startProgress(ctx)
	defer stopProgress()

	setupStart := time.Now()
	if err := r.setup(ctx, true); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	targets, err := r.topology(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	var ps *pushScenario
	if cfg.Scenario == "push" {
		if ps, err = r.startPush(ctx, targets); err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		defer ps.close()
	}
	setupTime := time.Since(setupStart)
	kctx, stopKeepalive := context.WithCancel(ctx)
	var kwg sync.WaitGroup
	online := slices.DeleteFunc(slices.Clone(r.clients), func(cl *client) bool { return cl.c == nil })
	kwg.Go(func() { r.keepaliveAll(kctx, online) })

	setPhase("warmup")
	start := time.Now()
	r.start.Store(start.UnixNano())
	r.from.Store(start.Add(cfg.Warmup).UnixNano())
	r.to.Store(start.Add(cfg.Warmup + cfg.Duration).UnixNano())
	perSender := 0.0
	if cfg.Rate > 0 {
		perSender = cfg.Rate / float64(len(targets))
	}
	var swg sync.WaitGroup
	if perSender > 0 {
		swg.Go(func() { r.pace(ctx, targets, perSender, rand.Int64N) })
	} else {
		for i, tg := range targets {
			swg.Go(func() { r.sender(ctx, r.clients[i], tg) })
		}
	}
	cpu := newCPUSampler(cfg.Pids)
	time.Sleep(time.Until(time.Unix(0, r.from.Load())))
	setPhase("measure")
	cpu.begin()
	for time.Now().UnixNano() < r.to.Load() && !r.stopSending.Load() && ctx.Err() == nil {
		time.Sleep(min(50*time.Millisecond, time.Until(time.Unix(0, r.to.Load()))))
	}
	cpu.end()
	r.stopSenders()
	measured := cfg.Duration
	if at := r.cappedAt.Load(); at > r.from.Load() && at < r.to.Load() {
		measured = time.Duration(at - r.from.Load()) // --messages ended sending early
	}
	setPhase("drain")
	swg.Wait()
	drainStart := time.Now()
	answered := waitFor(ctx, cfg.Drain, func() bool { return r.inflight() <= 0 })
	deliveredAll := waitFor(ctx, cfg.Drain-time.Since(drainStart), func() bool { return r.delivered.Load() >= r.expected.Load() })
	var pushRep *PushReport
	if ps != nil {
		pushRep = r.finishPush(ctx, ps, cfg.Drain-time.Since(drainStart), measured)
	}
	stopKeepalive()
	kwg.Wait()
	// The last acks: each client's covers its latest push.
	ackedAll := r.flushAcks(ctx, max(cfg.Drain-time.Since(drainStart), 2*time.Second))
	drainTime := time.Since(drainStart)
	rss := rssOf(cfg.Pids)
	stopProgress()
	audit := r.closeAndAudit()

	rep := r.report(len(targets), measured)
	rep.SetupSeconds = setupTime.Seconds()
	rep.DrainSeconds = drainTime.Seconds()
	rep.AllAnswered, rep.AllDelivered, rep.AllAcked = answered, deliveredAll, ackedAll
	if pushRep != nil {
		rep.Push = pushRep
		audit.PushesLost, audit.BadWebhookCalls = int(pushRep.Lost), int(pushRep.BadCalls)
	}
	rep.setAudit(audit)
	rep.ServerCPUSeconds = cpu.seconds()
	if rep.ServerCPUSeconds > 0 && rep.SendsAcked > 0 {
		rep.ServerCPUPerMessageUs = rep.ServerCPUSeconds * 1e6 / float64(rep.SendsAcked)
	}
	rep.ServerRSSBytes = rss
	rep.BenchCPUSeconds = cpu.self()
	if rep.SendsAcked > 0 {
		rep.BenchCPUPerMessageUs = rep.BenchCPUSeconds * 1e6 / float64(rep.SendsAcked)
	}
	return rep, nil
}
