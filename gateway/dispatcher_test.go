package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/internal/coord"
	"github.com/mpim/mpim/proto/frame"
)

type directory struct {
	gws []coord.GatewayInfo
	err error
}

func (d directory) Gateways(context.Context) ([]coord.GatewayInfo, error) { return d.gws, d.err }

func TestDispatcherHandsOutTheLeastLoadedGateway(t *testing.T) {
	get := func(dir directory, method string) (int, map[string]string) {
		rec := httptest.NewRecorder()
		gateway.NewDispatcher(dir, nil).ServeHTTP(rec, httptest.NewRequest(method, "/dispatch", nil))
		var body map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &body) // a body that is not JSON stays empty, which the assertions report
		return rec.Code, body
	}
	code, body := get(directory{gws: []coord.GatewayInfo{{ID: "gw-1", Addr: "ws://a/ws", Load: 10}, {ID: "gw-2", Addr: "ws://b/ws", Load: 3}}}, http.MethodGet)
	if code != http.StatusOK || body["addr"] != "ws://b/ws" || body["id"] != "gw-2" {
		t.Fatalf("%d %v", code, body)
	}
	if code, body := get(directory{}, http.MethodGet); code != http.StatusServiceUnavailable || body["error"] == "" {
		t.Fatalf("no gateways: %d %v", code, body)
	}
	if code, _ := get(directory{err: errors.New("zk down")}, http.MethodGet); code != http.StatusServiceUnavailable {
		t.Fatalf("directory down: %d", code)
	}
	if code, _ := get(directory{}, http.MethodPost); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", code)
	}
}

// A gateway that was killed stays registered until its session expires; the
// dispatcher finds that its address refuses connections and hands out the
// live one, over real TCP.
func TestDispatcherSkipsAKilledGateway(t *testing.T) {
	live, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	d := gateway.NewDispatcher(directory{gws: []coord.GatewayInfo{{ID: "killed", Addr: deadAddr, Load: 0}, {ID: "live", Addr: live.Addr().String(), Load: 50}}}, nil)
	for range 5 {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dispatch", nil))
		var body map[string]string
		_ = json.Unmarshal(rec.Body.Bytes(), &body) // a body that is not JSON stays empty, which the assertions report
		if rec.Code != http.StatusOK || body["id"] != "live" {
			t.Fatalf("dispatch: %d %v, want the live gateway", rec.Code, body)
		}
	}
}

// loads records the loads a server reports.
type loads struct {
	mu   sync.Mutex
	seen []int
}

func (l *loads) Update(load int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, load)
	return nil
}

func (l *loads) last() (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.seen) == 0 {
		return -1, 0
	}
	return l.seen[len(l.seen)-1], len(l.seen)
}

func TestServerReportsItsLoadUntilShutdown(t *testing.T) {
	l := &loads{}
	e := gatewaytest.New(t, func(c *gateway.Config, d *gateway.Deps) { c.LoadInterval = 10 * time.Millisecond; d.Load = l })
	e.Dial(t, frame.Proto)
	e.Dial(t, frame.JSON)
	gatewaytest.Eventually(t, "a load of 2", func() bool { n, _ := l.last(); return n == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.Server.Shutdown(ctx)
	_, n := l.last()
	// The reporter stopped: its goroutine ends (waiting for that, rather
	// than for reports that do not come, needs no guess at how long a
	// loaded machine takes to tick), and the reports stay as they were.
	gatewaytest.Eventually(t, "the load reporter's goroutine ended", func() bool { return !goroutineRuns("gateway.(*Server).reportLoad(") })
	if _, m := l.last(); m != n {
		t.Fatalf("load reported after shutdown (%d reports, then %d)", n, m)
	}
}

// goroutineRuns reports whether a goroutine's stack holds fn.
func goroutineRuns(fn string) bool {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), fn)
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestMetricsAreRegistered(t *testing.T) {
	e := gatewaytest.New(t)
	u := e.Login(t, frame.JSON, "olga")
	gatewaytest.Ping(t, u.Conn)
	fams, err := e.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	for _, want := range []string{"mpim_gateway_connections", "mpim_gateway_sessions", "mpim_gateway_frames_in_total",
		"mpim_gateway_frames_out_total", "mpim_gateway_request_duration_seconds", "mpim_gateway_push_ack_latency_seconds",
		"mpim_gateway_queue_dropped_frames_total", "mpim_gateway_slow_client_disconnects_total"} {
		if !names[want] {
			t.Errorf("gatewaytest.Metric %s is missing (have %v)", want, names)
		}
	}
	if v := gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_frames_in_total", "type", "ping"); v != 1 {
		t.Errorf("frames_in{type=ping} = %v", v)
	}
	if v := gatewaytest.Metric(t, e.Registry, "mpim_gateway_sessions", "", "").GetGauge().GetValue(); v != 1 {
		t.Errorf("sessions = %v", v)
	}
}

func TestNewRejectsMissingDependencies(t *testing.T) {
	_, err := gateway.New(gateway.Config{GatewayID: "gw"}, gateway.Deps{})
	if err == nil {
		t.Fatal("New without dependencies succeeded")
	}
	for _, want := range []string{"public address", "Commands", "DB", "Redis", "Hub"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
