package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/coord"
)

func TestEveryDomainCodeHasAStableClientCode(t *testing.T) {
	for _, c := range []domain.Code{domain.EInvalid, domain.ENotFound, domain.EConflict, domain.EExists, domain.EForbidden,
		domain.ENotMember, domain.EMuted, domain.EBlocked, domain.EWindowPassed, domain.EDissolved, domain.ENoRequest,
		domain.ETooLarge, domain.EUnauthorized, domain.ERateLimited, domain.EUnavailable, domain.EInternal} {
		e, _ := clientError(fmt.Errorf("wrapped: %w", domain.Errorf(c, "x")))
		if e.Code == "" || (e.Code == "internal") != (c == domain.EInternal) {
			t.Errorf("%s -> %q", c, e.Code)
		}
	}
	if e, fault := clientError(errors.New("boom")); e.Code != "internal" || !fault || strings.Contains(e.Message, "boom") {
		t.Errorf("a plain error -> %v, %v", e, fault)
	}
	if e, _ := clientError(fmt.Errorf("x: %w", context.DeadlineExceeded)); e.Code != "unavailable" {
		t.Errorf("a timeout -> %v", e)
	}
	if e, _ := clientError(domain.Errorf("brand_new", "x")); e.Code != "internal" {
		t.Errorf("an unmapped code -> %v", e)
	}
	if e, _ := clientError(rateLimited(newUserLimits(2, 1, 1).acquire("u").lim)); e.Code != "rate_limited" {
		t.Errorf("rate limit -> %v", e)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := Config{GatewayID: "bad id}", MaxFrameBytes: 10, SendQueue: -1, IdleTimeout: time.Second, HeartbeatInterval: time.Minute}
	c.setDefaults()
	err := c.Validate()
	for _, want := range []string{"gateway id", "public address", "max frame bytes", "send queue", "idle timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
	good := Config{GatewayID: "gw-1", PublicAddr: "gw1:8080"}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if good.IdleTimeout != 3*good.HeartbeatInterval || good.SendQueue != 1024 || good.MaxFrameBytes != 64<<10 {
		t.Fatalf("defaults %+v", good)
	}
}

func TestStreamIDs(t *testing.T) {
	for s, ok := range map[string]bool{"1-0": true, "1700000000000-12": true, "": false, "1": false, "-1": false, "1-": false,
		"a-1": false, "1-1-1": false, "99999999999999999999999-0": false} {
		if validInboxID(s) != ok {
			t.Errorf("validInboxID(%q) = %v", s, !ok)
		}
	}
}

type fakeDirectory struct {
	gws []coord.GatewayInfo
	err error
}

func (f fakeDirectory) Gateways(context.Context) ([]coord.GatewayInfo, error) { return f.gws, f.err }

// stubProbes answers probes from a set of dead addresses and counts them.
type stubProbes struct {
	mu    sync.Mutex
	dead  map[string]bool
	calls map[string]int
}

func (p *stubProbes) probe(_ context.Context, addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls[addr]++
	if p.dead[addr] {
		return errors.New("connection refused")
	}
	return nil
}

func (p *stubProbes) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[addr]
}

func newPickTest(dead ...string) (*Dispatcher, *stubProbes) {
	p := &stubProbes{dead: map[string]bool{}, calls: map[string]int{}}
	for _, a := range dead {
		p.dead[a] = true
	}
	d := NewDispatcher(fakeDirectory{}, nil)
	d.probe = p.probe
	return d, p
}

func TestDispatcherPicksTheLeastLoadedLiveGateway(t *testing.T) {
	ctx := context.Background()
	d, p := newPickTest()
	g, ok := d.pick(ctx, []coord.GatewayInfo{{ID: "a", Addr: "a:1", Load: 5}, {ID: "b", Addr: "", Load: 0}, {ID: "c", Addr: "c:1", Load: 2}})
	if !ok || g.ID != "c" {
		t.Fatalf("picked %v %v", g, ok)
	}
	// A fresh successful probe is trusted: no second probe within a second.
	d.pick(ctx, []coord.GatewayInfo{{ID: "c", Addr: "c:1", Load: 2}})
	if n := p.count("c:1"); n != 1 {
		t.Fatalf("c probed %d times, want 1", n)
	}
	seen := map[string]bool{}
	for range 200 {
		g, _ := d.pick(ctx, []coord.GatewayInfo{{ID: "a", Addr: "a:1", Load: 1}, {ID: "b", Addr: "b:1", Load: 1}, {ID: "c", Addr: "c:1", Load: 3}})
		seen[g.ID] = true
	}
	if !seen["a"] || !seen["b"] || seen["c"] {
		t.Fatalf("ties picked %v; want both tied gateways and never the loaded one", seen)
	}
	if _, ok := d.pick(ctx, nil); ok {
		t.Fatal("picked a gateway from none")
	}
}

func TestDispatcherSkipsAGatewayThatDoesNotAcceptConnections(t *testing.T) {
	ctx := context.Background()
	d, p := newPickTest("dead:1")
	gws := []coord.GatewayInfo{{ID: "dead", Addr: "dead:1", Load: 0}, {ID: "live", Addr: "live:1", Load: 9}}
	for range 20 {
		if g, ok := d.pick(ctx, gws); !ok || g.ID != "live" {
			t.Fatalf("picked %v %v, want the live gateway", g, ok)
		}
	}
	// The dead one was probed once and then skipped while it is known down.
	if n := p.count("dead:1"); n != 1 {
		t.Fatalf("dead gateway probed %d times, want 1", n)
	}
	// Re-registered at another address (a restart): probed again.
	gws[0].Addr = "dead:2"
	if g, _ := d.pick(ctx, gws); g.ID != "dead" {
		t.Fatalf("restarted gateway at a new address not picked: %v", g)
	}
	// Nothing answers: the least loaded is handed out anyway.
	d, _ = newPickTest("x:1", "y:1")
	if g, ok := d.pick(ctx, []coord.GatewayInfo{{ID: "x", Addr: "x:1", Load: 4}, {ID: "y", Addr: "y:1", Load: 1}}); !ok || g.ID != "y" {
		t.Fatalf("all down: picked %v %v, want the least loaded", g, ok)
	}
}

func TestDispatchAddressForms(t *testing.T) {
	for in, want := range map[string]string{"gw:8080": "gw:8080", "ws://gw/ws": "gw:80", "wss://gw/ws": "gw:443",
		"ws://gw:9000/ws": "gw:9000", "https://[::1]/x": "[::1]:443"} {
		if got, err := dialAddr(in); err != nil || got != want {
			t.Errorf("dialAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "gw", "::"} {
		if got, err := dialAddr(bad); err == nil {
			t.Errorf("dialAddr(%q) = %q, want an error", bad, got)
		}
	}
}

// A client address gets at most perAddr open connections; closing one lets
// the next in.
func TestLimitListenerCapsConnectionsPerAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int64
	ln := LimitListener(inner, 2, func() { refused.Add(1) })
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
	}
	dial()
	dial()
	first := <-accepted
	<-accepted
	if third := dial(); !closedByServer(third) {
		t.Fatal("the third connection from one address was not closed")
	}
	// The listener counts a refusal after it closed the connection: the
	// client may see the close first.
	for deadline := time.Now().Add(time.Minute); refused.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if refused.Load() != 1 {
		t.Fatalf("refused %d", refused.Load())
	}
	first.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(time.Minute): // a hang detector, not a bound on speed
		t.Fatal("a connection after a close was not accepted")
	}
}
