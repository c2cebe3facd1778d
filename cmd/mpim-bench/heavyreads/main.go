// Command heavyreads runs two memory attacks of heavy reads against a
// running mpim gateway and reports what they cost it and everybody else:
// the growth of the gateway process's resident memory (VmRSS of --pid) and
// the p50/p99 of another user's conversations query, idle and under each
// attack.
//
//   - never-reading: one connection logs in, sends --requests history
//     requests for the largest page of a conversation of big messages, and
//     never reads an answer;
//
//   - reading: four connections of two users ask for such pages in a loop
//     and read the answers, as fast as the rate limits allow (a rate_limited
//     answer is waited out), for --duration.
//
//     heavyreads --gateway ws://127.0.0.1:8080/ws --pid $(pgrep -n mpimd)
//
// Every phase is bounded in count and time (--timeout for the whole run).
// Only loopback targets are accepted. Exits 2 on a failed setup.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mpim/mpim/client"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

type config struct {
	gateway  string
	pid      int
	messages int
	size     int
	requests int
	duration time.Duration
	probes   int
	timeout  time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "heavyreads:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var c config
	fs := flag.NewFlagSet("heavyreads", flag.ContinueOnError)
	fs.StringVar(&c.gateway, "gateway", "ws://127.0.0.1:8080/ws", "the gateway's WebSocket URL (loopback only)")
	fs.IntVar(&c.pid, "pid", 0, "the gateway process, whose VmRSS is sampled (0: not sampled)")
	fs.IntVar(&c.messages, "messages", 200, "messages in the attacked conversation (1..1000)")
	fs.IntVar(&c.size, "size", 15<<10, "bytes of text of each message (1..16000)")
	fs.IntVar(&c.requests, "requests", 100, "history requests of the never-reading connection (1..10000)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of the reading attack (1s..5m)")
	fs.IntVar(&c.probes, "probes", 200, "conversations queries of the bystander per phase (10..10000)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "bound of the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var errs []error
	if u, err := url.Parse(c.gateway); err != nil || (u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost" && u.Hostname() != "::1") {
		errs = append(errs, fmt.Errorf("gateway %q: a loopback ws:// URL is required", c.gateway))
	}
	if c.messages < 1 || c.messages > 1000 || c.size < 1 || c.size > 16000 || c.requests < 1 || c.requests > 10000 ||
		c.duration < time.Second || c.duration > 5*time.Minute || c.probes < 10 || c.probes > 10000 || c.timeout <= 0 {
		errs = append(errs, errors.New("messages 1..1000, size 1..16000, requests 1..10000, duration 1s..5m, probes 10..10000, timeout > 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return (&bench{cfg: c, out: out, tag: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}).run(ctx)
}

type bench struct {
	cfg config
	out io.Writer
	tag string // makes the usernames of this run unique
}

// user is a registered user with its password.
type user struct{ id, name, password string }

func (b *bench) register(ctx context.Context, name string) (user, error) {
	c, err := client.Dial(ctx, b.cfg.gateway, nil)
	if err != nil {
		return user{}, err
	}
	defer c.Close()
	u := user{name: name + b.tag, password: "password-" + name + b.tag}
	r, err := call(ctx, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: u.name, Password: u.password}})
	if err != nil {
		return user{}, err
	}
	u.id = r.GetRegister().GetUserId()
	return u, nil
}

// login connects as u's device; pushes are read and dropped.
func (b *bench) login(ctx context.Context, u user, device string) (*client.Conn, error) {
	c, err := client.Dial(ctx, b.cfg.gateway, nil)
	if err != nil {
		return nil, err
	}
	if _, err := call(ctx, c, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: u.name, Password: u.password, DeviceId: device}}); err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		for {
			if _, err := c.Next(context.Background()); err != nil {
				return
			}
		}
	}()
	return c, nil
}

// call sends a request, waits out rate_limited answers and returns the
// response, or its error.
func call(ctx context.Context, c *client.Conn, req any) (*mpimv1.Response, error) {
	for {
		r, err := c.Call(ctx, req)
		if err != nil {
			return nil, err
		}
		e := r.GetError()
		if e == nil {
			return r, nil
		}
		if e.GetCode() != "rate_limited" {
			return nil, fmt.Errorf("%T: %s: %s", req, e.GetCode(), e.GetMessage())
		}
		select {
		case <-time.After(time.Duration(max(e.GetRetryAfterMs(), 1)) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func history(conv string) *mpimv1.ClientFrame_History {
	return &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, Limit: 200}}
}

func (b *bench) run(ctx context.Context) error {
	a1, err := b.register(ctx, "atk1-")
	if err != nil {
		return err
	}
	a2, err := b.register(ctx, "atk2-")
	if err != nil {
		return err
	}
	by, err := b.register(ctx, "bystander-")
	if err != nil {
		return err
	}
	c1, err := b.login(ctx, a1, "seed")
	if err != nil {
		return err
	}
	defer c1.Close()
	c2, err := b.login(ctx, a2, "seed")
	if err != nil {
		return err
	}
	defer c2.Close()
	bc, err := b.login(ctx, by, "probe")
	if err != nil {
		return err
	}
	defer bc.Close()
	for _, req := range []struct {
		c   *client.Conn
		req any
	}{
		{c1, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: a2.id}}},
		{c2, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a1.id}}},
		{bc, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: a1.id}}},
		{c1, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: by.id}}},
		{bc, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: a1.id}, Text: "hello"}}},
	} {
		if _, err := call(ctx, req.c, req.req); err != nil {
			return err
		}
	}
	text := strings.Repeat("x", b.cfg.size)
	var conv string
	for i := range b.cfg.messages {
		r, err := call(ctx, c1, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: a2.id},
			Text: strconv.Itoa(i) + text[len(strconv.Itoa(i)):], ClientMsgId: "seed-" + strconv.Itoa(i)}})
		if err != nil {
			return err
		}
		conv = r.GetSend().GetConversationId()
	}
	// Wait for the read model (bounded by ctx).
	for {
		r, err := call(ctx, c1, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, Limit: 1}})
		if err != nil {
			return err
		}
		if m := r.GetHistory().GetMessages(); len(m) == 1 && m[0].GetSeq() >= uint64(b.cfg.messages) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(b.out, "heavyreads: %d messages of %d bytes; bystander probes: %d conversations queries per phase\n\n",
		b.cfg.messages, b.cfg.size, b.cfg.probes)
	fmt.Fprintln(b.out, "| phase | RSS before (MiB) | RSS peak (MiB) | growth (MiB) | RSS 2 s after (MiB) | bystander p50 (ms) | bystander p99 (ms) | attacker answers |")
	fmt.Fprintln(b.out, "|---|---|---|---|---|---|---|---|")

	phase := func(name string, attack func(ctx context.Context) (string, error)) error {
		before := rss(b.cfg.pid)
		pctx, stop := context.WithCancel(ctx)
		peak := make(chan int64, 1)
		go func() { peak <- sampleRSS(pctx, b.cfg.pid) }()
		var wg sync.WaitGroup
		var answers string
		var aerr error
		if attack != nil {
			wg.Add(1)
			go func() { defer wg.Done(); answers, aerr = attack(pctx) }()
		}
		lat, err := probe(pctx, bc, b.cfg.probes)
		wg.Wait()
		time.Sleep(2 * time.Second)
		stop()
		p := <-peak
		if err != nil {
			return fmt.Errorf("%s: bystander: %w", name, err)
		}
		if aerr != nil {
			return fmt.Errorf("%s: attacker: %w", name, aerr)
		}
		fmt.Fprintf(b.out, "| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %s |\n", name, mib(before), mib(p), mib(p-before), mib(rss(b.cfg.pid)),
			ms(pct(lat, 0.50)), ms(pct(lat, 0.99)), answers)
		return nil
	}
	if err := phase("idle", nil); err != nil {
		return err
	}
	if err := phase("never-reading: 1 connection, "+strconv.Itoa(b.cfg.requests)+" history requests", func(ctx context.Context) (string, error) {
		return b.neverReading(ctx, a1, conv)
	}); err != nil {
		return err
	}
	return phase("reading: 4 connections of 2 users, "+b.cfg.duration.String(), func(ctx context.Context) (string, error) {
		return b.reading(ctx, []user{a1, a1, a2, a2}, conv)
	})
}

// neverReading logs in, sends the history requests and reads nothing; it
// keeps the connection open for the duration, then closes it.
func (b *bench) neverReading(ctx context.Context, u user, conv string) (string, error) {
	c, err := client.Dial(ctx, b.cfg.gateway, &client.Options{Buffer: 1})
	if err != nil {
		return "", err
	}
	defer c.CloseNow()
	if _, err := call(ctx, c, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: u.name, Password: u.password, DeviceId: "never-reads"}}); err != nil {
		return "", err
	}
	sent := 0
	for i := range b.cfg.requests {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Send(wctx, &mpimv1.ClientFrame{Id: uint64(100 + i), Request: history(conv)})
		cancel()
		if err != nil {
			break
		}
		sent++
	}
	select {
	case <-c.Done():
	case <-time.After(b.cfg.duration):
	case <-ctx.Done():
	}
	code, _ := c.CloseStatus()
	status := "open"
	if code != -1 {
		status = "closed " + strconv.Itoa(int(code))
	}
	return fmt.Sprintf("%d sent, none read (%s)", sent, status), nil
}

// reading runs one reader per user in users for the duration.
func (b *bench) reading(ctx context.Context, users []user, conv string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.duration)
	defer cancel()
	var mu sync.Mutex
	pages, bytes := 0, 0
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i, u := range users {
		c, err := b.login(ctx, u, "reader-"+strconv.Itoa(i))
		if err != nil {
			return "", err
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r, err := call(ctx, c, history(conv))
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				mu.Lock()
				pages++
				for _, m := range r.GetHistory().GetMessages() {
					bytes += len(m.GetText())
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return "", err
	}
	return fmt.Sprintf("%d pages, %.0f MiB read", pages, mib(int64(bytes))), nil
}

// probe times n conversations queries, one after the other.
func probe(ctx context.Context, c *client.Conn, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for range n {
		t := time.Now()
		if _, err := call(ctx, c, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{Limit: 20}}); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
		time.Sleep(10 * time.Millisecond) // a user's pace, not a flood
	}
	return lat, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// sampleRSS returns the largest VmRSS of pid seen every 20 ms until ctx ends.
func sampleRSS(ctx context.Context, pid int) int64 {
	var peak int64
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		peak = max(peak, rss(pid))
		select {
		case <-t.C:
		case <-ctx.Done():
			return peak
		}
	}
}

// rss returns pid's VmRSS in bytes (0 if unknown).
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b int64) float64        { return float64(b) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
