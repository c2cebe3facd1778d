package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mpim/mpim/proto/frame"
)

// scenarios are the workloads mpim-bench knows.
var scenarios = []string{"pairs", "groups", "fanout", "idle", "storm", "push"}

// codecs are the encodings --codec names.
var codecs = map[string]frame.Encoding{"proto": frame.Proto, "json": frame.JSON}

// Config is mpim-bench's configuration.
type Config struct {
	Scenario    string
	Codec       string   // "proto" or "json": the WebSocket subprotocol
	Gateways    []string // ws:// URLs of gateways' /ws
	Dispatch    string   // http:// URL of a dispatcher's /dispatch
	Users       int      // connections (one user, one device each)
	GroupSize   int      // groups: members per group
	Senders     int      // fanout: how many members send; storm: sender connections
	Window      int      // messages in flight per sender (closed loop)
	Rate        float64  // total offered sends/s (open loop); 0: closed loop
	Duration    time.Duration
	Warmup      time.Duration
	Messages    int // cap on sends (0: none)
	TextBytes   int
	AckInterval time.Duration // how often the latest push is acknowledged (0: every push)
	AckEvery    int           // acknowledge the latest push after this many pushes
	Drain       time.Duration // how long to wait for outstanding deliveries
	Setup       int           // concurrent registrations
	Pids        []int         // gateway processes: CPU and RSS
	Metrics     []string      // gateways' /metrics URLs (idle: heap per connection)
	JSON        string
	Progress    time.Duration
	Password    string

	Missed         int           // storm: messages each client misses while offline
	Reconnects     int           // storm: reconnects in flight at once
	CatchupTimeout time.Duration // storm: how long the catch-up may take
	Plot           string        // PNG of the latency percentiles over time
	PlotInterval   time.Duration // the plot's (and the JSON timeline's) interval
	CPUProfile     string        // pprof CPU profile of mpim-bench itself

	PushListen     string // push: loopback host:port of the webhook receiver
	PushSecretFile string // push: the webhook's HMAC secret, as given to mpimd
	pushSecret     []byte // read from PushSecretFile by Validate
}

func (c *Config) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Scenario, "scenario", "pairs", "workload: "+strings.Join(scenarios, ", "))
	fs.StringVar(&c.Codec, "codec", "proto", "protocol encoding of every client: proto (binary mpim.v1.proto) or json (text mpim.v1.json)")
	fs.Func("gateways", "comma-separated gateway WebSocket URLs (ws://127.0.0.1:8080/ws,...); clients are spread round-robin", func(s string) error {
		c.Gateways = splitList(s)
		return nil
	})
	fs.StringVar(&c.Dispatch, "dispatch", "", "dispatcher URL (http://127.0.0.1:8080/dispatch), asked once per client")
	fs.IntVar(&c.Users, "users", 200, "connections, one fresh user each (pairs: users/2 senders; groups: users/group-size groups; fanout, idle: all)")
	fs.IntVar(&c.GroupSize, "group-size", 10, "groups: members per group")
	fs.IntVar(&c.Senders, "senders", 2, "fanout: members that send; storm: extra sender connections (users of their own) that send the missed messages")
	fs.IntVar(&c.Window, "window", 1, "messages in flight per sender")
	fs.Float64Var(&c.Rate, "rate", 0, "total offered sends/s spread over the senders (open loop, latency from the intended send time); 0: closed loop")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time after the warm-up (storm: time limit of the offline sending)")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "sending time before measuring")
	fs.IntVar(&c.Messages, "messages", 0, "stop after this many sends in all (0: no cap; not storm)")
	fs.IntVar(&c.TextBytes, "text-bytes", 100, "message text size")
	fs.DurationVar(&c.AckInterval, "ack-interval", time.Second, "how often each client acknowledges its latest push if no ack covers it (0: every push at once); acks are cumulative and count against the gateway's rate limit; keep it under the gateway's ack timeout (5s)")
	fs.IntVar(&c.AckEvery, "ack-every", 100, "each client also acknowledges its latest push as soon as this many pushes arrived since its last ack; keep it under half the gateway's max in flight (500)")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "how long to wait for outstanding acks and deliveries after sending stops")
	fs.IntVar(&c.Setup, "setup-concurrency", 8, "concurrent registrations and logins")
	fs.Func("pid", "comma-separated gateway process ids: CPU over the measured time, and RSS (idle: per connection)", func(s string) error {
		for _, p := range splitList(s) {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 {
				return fmt.Errorf("bad pid %q", p)
			}
			c.Pids = append(c.Pids, n)
		}
		return nil
	})
	fs.Func("metrics", "comma-separated gateway /metrics URLs (idle: Go heap and stack per connection)", func(s string) error {
		c.Metrics = splitList(s)
		return nil
	})
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON to this file")
	fs.DurationVar(&c.Progress, "progress", 2*time.Second, "progress line interval on stderr")
	fs.StringVar(&c.Password, "password", "bench-password", "password of the users created")
	fs.IntVar(&c.Missed, "missed", 20, "storm: messages sent to each client while it is offline")
	fs.IntVar(&c.Reconnects, "reconnect-concurrency", 1000, "storm: reconnects (dial and resume) in flight at once")
	fs.DurationVar(&c.CatchupTimeout, "catchup-timeout", time.Minute, "storm: how long the reconnected clients may take to catch up")
	fs.StringVar(&c.Plot, "plot", "", "write a PNG of send->ack and send->delivery p50/p99/p99.9 over time to this file")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write a CPU profile (pprof) of mpim-bench itself over the whole run to this file")
	fs.StringVar(&c.PushListen, "push-listen", "", "push: loopback host:port where mpim-bench serves the webhook that mpimd's --push-webhook-url names")
	fs.StringVar(&c.PushSecretFile, "push-secret-file", "", "push: file of the webhook secret, the one of mpimd's --push-webhook-secret-file")
	fs.DurationVar(&c.PlotInterval, "plot-interval", time.Second, "interval of the latency timeline (--plot and the JSON)")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseConfig parses args; errors name every bad flag at once.
func parseConfig(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("mpim-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	known := false
	for _, s := range scenarios {
		known = known || s == c.Scenario
	}
	if !known {
		bad("scenario %q: want one of %s", c.Scenario, strings.Join(scenarios, ", "))
	}
	if _, ok := codecs[c.Codec]; !ok {
		bad("codec %q: want proto or json", c.Codec)
	}
	switch {
	case len(c.Gateways) == 0 && c.Dispatch == "":
		bad("give --gateways or --dispatch")
	case len(c.Gateways) > 0 && c.Dispatch != "":
		bad("give --gateways or --dispatch, not both")
	}
	for _, g := range c.Gateways {
		if err := loopbackURL(g, "ws"); err != nil {
			bad("gateway %v", err)
		}
	}
	if c.Dispatch != "" {
		if err := loopbackURL(c.Dispatch, "http"); err != nil {
			bad("dispatch %v", err)
		}
	}
	for _, m := range c.Metrics {
		if err := loopbackURL(m, "http"); err != nil {
			bad("metrics %v", err)
		}
	}
	if c.Users < 2 || c.Users > 200_000 {
		bad("users must be 2..200000, got %d", c.Users)
	}
	switch c.Scenario {
	case "pairs":
		if c.Users%2 != 0 {
			bad("pairs: users must be even, got %d", c.Users)
		}
	case "groups":
		if c.GroupSize < 2 || c.GroupSize > c.Users {
			bad("groups: group-size must be 2..users, got %d", c.GroupSize)
		} else if c.Users%c.GroupSize != 0 {
			bad("groups: users (%d) must be a multiple of group-size (%d)", c.Users, c.GroupSize)
		}
	case "fanout":
		if c.Senders < 1 || c.Senders > c.Users {
			bad("fanout: senders must be 1..users, got %d", c.Senders)
		}
	case "storm":
		if c.Users%2 != 0 {
			bad("storm: users must be even (they are primed in pairs), got %d", c.Users)
		}
		if c.Senders < 1 || c.Senders > c.Users {
			bad("storm: senders must be 1..users, got %d", c.Senders)
		}
		if c.Missed < 1 || c.Missed > 100_000 {
			bad("storm: missed must be 1..100000, got %d", c.Missed)
		} else if int64(c.Missed)*int64(c.Users) > 10_000_000 {
			bad("storm: users x missed must be at most 10000000, got %d", int64(c.Missed)*int64(c.Users))
		}
		if c.Reconnects < 1 || c.Reconnects > 100_000 {
			bad("storm: reconnect-concurrency must be 1..100000, got %d", c.Reconnects)
		}
		if c.CatchupTimeout <= 0 || c.CatchupTimeout > time.Hour {
			bad("storm: catchup-timeout must be in (0, 1h], got %s", c.CatchupTimeout)
		}
		if c.Rate > 0 {
			bad("storm: sends closed loop; --rate is not supported")
		}
	case "push":
		if c.Users%2 != 0 {
			bad("push: users must be even (senders and offline receivers in pairs), got %d", c.Users)
		}
		c.validatePush(bad)
	}
	if c.Scenario != "push" && (c.PushListen != "" || c.PushSecretFile != "") {
		bad("push-listen and push-secret-file are for the push scenario only")
	}
	if c.Window < 1 || c.Window > 10_000 {
		bad("window must be 1..10000, got %d", c.Window)
	}
	if c.Rate < 0 {
		bad("rate must not be negative, got %g", c.Rate)
	}
	if c.Duration <= 0 || c.Duration > time.Hour {
		bad("duration must be in (0, 1h], got %s", c.Duration)
	}
	if c.Warmup < 0 {
		bad("warmup must not be negative, got %s", c.Warmup)
	}
	if c.Messages < 0 {
		bad("messages must not be negative, got %d", c.Messages)
	}
	if c.TextBytes < 1 || c.TextBytes > 16<<10 {
		bad("text-bytes must be 1..16384, got %d", c.TextBytes)
	}
	if c.AckEvery < 1 || c.AckEvery > 10_000 {
		bad("ack-every must be 1..10000, got %d", c.AckEvery)
	}
	if c.AckInterval < 0 || c.Drain < 0 || c.Progress <= 0 {
		bad("ack-interval and drain must not be negative, progress must be positive")
	}
	if c.PlotInterval < 10*time.Millisecond || c.PlotInterval > time.Hour {
		bad("plot-interval must be 10ms..1h, got %s", c.PlotInterval)
	}
	if c.Setup < 1 || c.Setup > 1000 {
		bad("setup-concurrency must be 1..1000, got %d", c.Setup)
	}
	if len(c.Password) < 8 {
		bad("password must have at least 8 bytes")
	}
	return errors.Join(errs...)
}

// validatePush checks the push scenario's webhook flags and reads the
// secret.
func (c *Config) validatePush(bad func(format string, a ...any)) {
	if c.PushListen == "" {
		bad("push: give --push-listen, the host:port of mpimd's --push-webhook-url")
	} else if host, port, err := net.SplitHostPort(c.PushListen); err != nil || !isLoopback(host) || port == "" {
		bad("push-listen %q: want a loopback host:port, such as 127.0.0.1:9900", c.PushListen)
	}
	if c.PushSecretFile == "" {
		bad("push: give --push-secret-file, the file of mpimd's --push-webhook-secret-file")
		return
	}
	secret, err := readPushSecret(c.PushSecretFile)
	if err != nil {
		bad("push-secret-file: %v", err)
	}
	c.pushSecret = secret
}

// connections is how many users (and connections) the scenario needs.
func (c *Config) connections() int {
	if c.Scenario == "storm" {
		return c.Users + c.Senders
	}
	return c.Users
}

// loopbackURL checks that raw is a URL of the given scheme family (ws/wss or
// http/https) whose host is a loopback address: mpim-bench is a load
// generator and refuses to aim at other machines.
func loopbackURL(raw, family string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != family && u.Scheme != family+"s" {
		return fmt.Errorf("%q: scheme must be %s or %ss", raw, family, family)
	}
	if !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: only loopback targets are allowed", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
