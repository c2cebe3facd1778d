package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency summarises a histogram of microseconds, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1e3 }
	return Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// Report is the outcome of one run.
type Report struct {
	Scenario  string   `json:"scenario"`
	Codec     string   `json:"codec,omitempty"`
	Gateways  []string `json:"gateways,omitempty"`
	Dispatch  string   `json:"dispatch,omitempty"`
	Users     int      `json:"users"`
	Senders   int      `json:"senders"`
	GroupSize int      `json:"group_size,omitempty"`
	Window    int      `json:"window"`
	Rate      float64  `json:"offered_rate"`
	Warmup    float64  `json:"warmup_s"`
	Measured  float64  `json:"measured_s"`

	SendsAcked       int64   `json:"sends_acked"`
	SendsAckedPerSec float64 `json:"sends_acked_per_s"`
	Deliveries       int64   `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	SendAck          Latency `json:"send_ack"`
	SendDelivery     Latency `json:"send_delivery"`

	TotalSends  int64 `json:"total_sends"`
	TotalAcked  int64 `json:"total_acked"`
	RateLimited int64 `json:"rate_limited"`
	// Unoffered: open loop, sends skipped because their sender had 10,000
	// unanswered.
	Unoffered    int64  `json:"unoffered,omitempty"`
	SendErrors   int64  `json:"send_errors"`
	FirstError   string `json:"first_error,omitempty"`
	AllAnswered  bool   `json:"all_answered"`
	AllDelivered bool   `json:"all_delivered"`
	// AllAcked: at the end the server confirmed, for every connection, an
	// ack that covers its latest push.
	AllAcked bool `json:"all_acked"`

	SetupSeconds   float64 `json:"setup_s"`
	ConnectSeconds float64 `json:"connect_s,omitempty"`
	DrainSeconds   float64 `json:"drain_s,omitempty"`

	ServerCPUSeconds      float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerMessageUs float64 `json:"server_cpu_per_message_us,omitempty"`
	ServerRSSBytes        int64   `json:"server_rss_bytes,omitempty"`
	// mpim-bench's own CPU over the measured window (user + system).
	BenchCPUSeconds      float64 `json:"bench_cpu_s,omitempty"`
	BenchCPUPerMessageUs float64 `json:"bench_cpu_per_message_us,omitempty"`
	OpenConnections      int     `json:"open_connections,omitempty"`
	RSSPerConnBytes      float64 `json:"rss_per_connection_bytes,omitempty"`
	HeapPerConnBytes     float64 `json:"heap_per_connection_bytes,omitempty"`
	// GCForced: idle memory was sampled after each gateway collected its
	// garbage; MemorySettled: and after its RSS stopped moving.
	GCForced      bool `json:"gc_forced,omitempty"`
	MemorySettled bool `json:"memory_settled,omitempty"`

	Storm    *StormReport `json:"storm,omitempty"`
	Push     *PushReport  `json:"push,omitempty"`
	Timeline *Timeline    `json:"timeline,omitempty"`
	Plot     string       `json:"plot,omitempty"`

	Audit      AuditResult `json:"audit"`
	AuditClean bool        `json:"audit_clean"`
}

func (r *runner) report(senders int, measured time.Duration) *Report {
	c := r.cfg
	rep := &Report{Scenario: c.Scenario, Codec: c.Codec, Gateways: c.Gateways, Dispatch: c.Dispatch, Users: c.Users, Senders: senders,
		Window: c.Window, Rate: c.Rate, Warmup: c.Warmup.Seconds(), Measured: measured.Seconds(),
		SendsAcked: r.ackedIn.Load(), Deliveries: r.deliveredIn.Load(),
		TotalSends: r.issued.Load(), TotalAcked: r.acked.Load(), RateLimited: r.rateLimited.Load(), SendErrors: r.sendErrors.Load(),
		Unoffered: r.unoffered.Load()}
	if c.Scenario == "groups" {
		rep.GroupSize = c.GroupSize
	}
	if c.Scenario != "idle" {
		tl := r.timeline.report()
		rep.Timeline = &tl
	}
	if c.Rate > 0 {
		rep.Window = 0
	}
	if s := measured.Seconds(); s > 0 {
		rep.SendsAckedPerSec = float64(rep.SendsAcked) / s
		rep.DeliveriesPerSec = float64(rep.Deliveries) / s
	}
	r.histMu.Lock()
	rep.SendAck, rep.SendDelivery = latencyOf(r.ackHist), latencyOf(r.delHist)
	r.histMu.Unlock()
	if e := r.firstErr.Load(); e != nil {
		rep.FirstError = *e
	}
	return rep
}

// setAudit records the audit's result and its verdict.
func (rep *Report) setAudit(a AuditResult) {
	rep.Audit, rep.AuditClean = a, a.Clean()
}

func (rep *Report) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	mode := fmt.Sprintf("closed loop, window %d", rep.Window)
	if rep.Rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f sends/s offered", rep.Rate)
	}
	row("scenario", "%s: %d users, %d senders, %s, %s clients", rep.Scenario, rep.Users, rep.Senders, mode, cmp.Or(rep.Codec, "proto"))
	if rep.Storm != nil {
		row("setup", "%.1fs", rep.SetupSeconds)
	} else {
		row("measured", "%.1fs after %.1fs warm-up (setup %.1fs)", rep.Measured, rep.Warmup, rep.SetupSeconds)
	}
	if rep.Scenario == "idle" {
		row("connections", "%d open after %.1fs (connected in %.1fs)", rep.OpenConnections, rep.Measured, rep.ConnectSeconds)
		row("gateway RSS per connection", "%s", bytesOrSkip(rep.RSSPerConnBytes, rep.ServerRSSBytes > 0))
		row("gateway heap+stack per connection", "%s", bytesOrSkip(rep.HeapPerConnBytes, rep.HeapPerConnBytes != 0))
		row("memory sampled", "after a forced GC: %v, RSS settled: %v", rep.GCForced, rep.MemorySettled)
		rep.printAudit(row)
		tw.Flush()
		return
	}
	lat := func(l Latency) string {
		return fmt.Sprintf("p50 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%d)", l.P50, l.P99, l.P999, l.Max, l.Count)
	}
	if st := rep.Storm; st != nil {
		row("offline sends", "%d acked of %d (%d clients x %d missed) in %.1fs (%.0f/s) by %d sender connections, window %d",
			st.MissedAcked, st.MissedSent, st.Clients, st.MissedPerClient, st.OfflineSeconds, st.OfflineSendsPerSec, st.SenderConns, rep.Window)
		row("send -> ack (offline)", "%s", lat(rep.SendAck))
		row("projected before reconnect", "%v", st.ProjectedBeforeReconnect)
		row("reconnect", "%d clients resumed in %.2fs (%d at a time, %d retries)", st.Clients, st.ReconnectSeconds, st.ReconnectConcurrency, st.ReconnectRetries)
		if st.FirstReconnectError != "" {
			row("first retried reconnect error", "%s", st.FirstReconnectError)
		}
		row("CATCH-UP", "median %.0f ms, p99 %.0f ms, total %.0f ms (per client, from the reconnect start)", st.CatchupP50Ms, st.CatchupP99Ms, st.CatchupTotalMs)
		row("catch-up from own resume", "median %.0f ms, p99 %.0f ms", st.CatchupFromResumeP50Ms, st.CatchupFromResumeP99Ms)
		row("catch-up deliveries", "%d (%.0f/s)", st.CatchupDeliveries, st.CatchupDeliveriesPerSec)
		row("caught up", "%d of %d clients (timeout %.0fs)", st.CaughtUp, st.Clients, st.CatchupTimeoutSeconds)
		if st.CatchupServerCPUSeconds > 0 {
			row("server CPU in catch-up (--pid)", "%.2fs (%.1f µs per delivery)", st.CatchupServerCPUSeconds, rep.ServerCPUPerMessageUs)
		}
	} else if pu := rep.Push; pu != nil {
		row("sends acked", "%d (%.0f/s) to %d offline receivers (primed in %.1fs)", rep.SendsAcked, rep.SendsAckedPerSec, pu.Receivers, pu.PrimeSeconds)
		row("send -> ack", "%s", lat(rep.SendAck))
		row("WEBHOOK CALLS", "%d (%.0f/s in the measured window), %d notifications, %d collapsed, %d repeated keys, %d foreign, %d bad",
			pu.Calls, pu.CallsPerSec, pu.Notifications, pu.Collapsed, pu.Repeated, pu.Foreign, pu.BadCalls)
		row("send -> webhook", "%s", lat(pu.SendWebhook))
		row("pushed", "%d of %d acked messages arrived, %d lost (waited %.1fs)", pu.Arrived, pu.Messages, pu.Lost, pu.WaitSeconds)
		if pu.FirstBadCall != "" {
			row("first bad call", "%s", pu.FirstBadCall)
		}
	} else {
		row("sends acked", "%d (%.0f/s)", rep.SendsAcked, rep.SendsAckedPerSec)
		row("deliveries", "%d (%.0f/s)", rep.Deliveries, rep.DeliveriesPerSec)
		row("send -> ack", "%s", lat(rep.SendAck))
		row("send -> delivery", "%s", lat(rep.SendDelivery))
	}
	row("totals", "%d sent, %d acked, %d rate-limited retries, %d errors, %d not offered (window full)", rep.TotalSends, rep.TotalAcked, rep.RateLimited, rep.SendErrors, rep.Unoffered)
	if rep.FirstError != "" {
		row("first error", "%s", rep.FirstError)
	}
	if rep.ServerCPUSeconds > 0 && rep.Storm == nil {
		row("server CPU (--pid)", "%.2fs (%.1f µs per acked send)", rep.ServerCPUSeconds, rep.ServerCPUPerMessageUs)
	}
	if rep.BenchCPUSeconds > 0 && rep.Storm == nil {
		row("mpim-bench CPU", "%.2fs (%.1f µs per acked send)", rep.BenchCPUSeconds, rep.BenchCPUPerMessageUs)
	}
	if rep.ServerRSSBytes > 0 {
		row("server RSS (--pid)", "%.1f MiB", float64(rep.ServerRSSBytes)/(1<<20))
	}
	if rep.Plot != "" {
		row("plot", "%s", rep.Plot)
	}
	row("drain", "%.1fs (all answered: %v, all delivered: %v, all acked: %v)", rep.DrainSeconds, rep.AllAnswered, rep.AllDelivered, rep.AllAcked)
	rep.printAudit(row)
	tw.Flush()
}

// printAudit prints the audit's verdict and counters as a row.
func (rep *Report) printAudit(row func(k, format string, a ...any)) {
	a := rep.Audit
	verdict := "CLEAN"
	if !rep.AuditClean {
		verdict = "FAILED"
	}
	row("AUDIT", "%s: acked-not-delivered %d, duplicates %d, reappended %d, out-of-order %d, echoes %d, delivered-not-acked %d, malformed %d, "+
		"send errors %d, unanswered %d, dropped connections %d, pushes lost %d, bad webhook calls %d",
		verdict, a.AckedNotDelivered, a.Duplicates, a.Reappended, a.OutOfOrder, a.Echoes, a.DeliveredNotAcked, a.MalformedInboxIDs,
		a.SendErrors, a.Unanswered, a.DroppedConnections, a.PushesLost, a.BadWebhookCalls)
}

// plotText is the plot's title (a one-line description of the run) and
// its notes.
func (rep *Report) plotText() plotText {
	mode := fmt.Sprintf("closed loop, window %d", rep.Window)
	if rep.Rate > 0 {
		mode = fmt.Sprintf("open loop, %.0f sends/s", rep.Rate)
	}
	switch rep.Scenario {
	case "groups":
		return plotText{Title: fmt.Sprintf("groups of %d: %d users, %s", rep.GroupSize, rep.Users, mode)}
	case "storm":
		t := plotText{Title: fmt.Sprintf("storm, offline sending: %d clients x %d, %d senders, window %d",
			rep.Users, rep.Storm.MissedPerClient, rep.Senders, rep.Window)}
		t.Empty[seriesDelivery] = "none: the receivers are offline (see catch-up)"
		return t
	case "push":
		return plotText{Title: fmt.Sprintf("offline push: %d senders, %s; delivery = the webhook call", rep.Senders, mode)}
	}
	return plotText{Title: fmt.Sprintf("%s: %d users, %d senders, %s", rep.Scenario, rep.Users, rep.Senders, mode)}
}

func bytesOrSkip(v float64, ok bool) string {
	if !ok {
		return "skipped (no --pid / --metrics)"
	}
	return fmt.Sprintf("%.1f KiB", v/1024)
}

func (rep *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// cpuSampler measures the CPU time of processes, and of mpim-bench itself,
// between begin and end.
type cpuSampler struct {
	pids             []int
	from, to         float64
	selfFrom, selfTo float64
}

func newCPUSampler(pids []int) *cpuSampler { return &cpuSampler{pids: pids} }
func (s *cpuSampler) begin()               { s.from, s.selfFrom = cpuOf(s.pids), selfCPU() }
func (s *cpuSampler) end()                 { s.to, s.selfTo = cpuOf(s.pids), selfCPU() }
func (s *cpuSampler) seconds() float64     { return s.to - s.from }
func (s *cpuSampler) self() float64        { return s.selfTo - s.selfFrom }

// selfCPU is this process's user + system CPU time so far, in seconds
// (getrusage: microseconds, finer than /proc's ticks).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// cpuOf sums utime+stime of the processes, in seconds (USER_HZ = 100).
func cpuOf(pids []int) float64 {
	var total float64
	for _, p := range pids {
		s, ok := procFile(p, "stat")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(s, ')') // the command name may hold spaces
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		k, _ := strconv.ParseFloat(f[12], 64)
		total += (u + k) / 100
	}
	return total
}

// rssOf sums the resident set sizes of the processes, in bytes.
func rssOf(pids []int) int64 {
	var total int64
	for _, p := range pids {
		s, _ := procFile(p, "status")
		for line := range strings.Lines(s) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// procFile returns the text of /proc/<pid>/<name>; false if it cannot be
// read (the process is gone).
func procFile(pid int, name string) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	return string(b), err == nil
}
