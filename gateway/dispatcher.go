package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/internal/coord"
)

// GatewayDirectory lists the registered gateways; *coord.ZooKeeper
// implements it.
type GatewayDirectory interface {
	Gateways(ctx context.Context) ([]coord.GatewayInfo, error)
}

// Dispatcher is the HTTP handler that hands clients a gateway: GET (mount it
// at /dispatch) answers {"id": ..., "addr": ...} of the least-loaded
// registered gateway, picking at random among equally loaded ones, or 503
// when none is registered. It is safe for concurrent use.
//
// A gateway that was killed stays registered until its ZooKeeper session
// expires, so the Dispatcher checks that the gateway it is about to hand out
// accepts TCP connections (at most once a second per gateway) and skips one
// that does not for a few seconds. When no candidate answers (for instance
// the public addresses are not reachable from where the dispatcher runs) it
// hands out the least-loaded one anyway: never worse than not checking.
type Dispatcher struct {
	dir     GatewayDirectory
	log     *slog.Logger
	timeout time.Duration
	// Probe reports whether a gateway's address accepts connections
	// (default: a TCP dial within ProbeTimeout).
	probe        func(ctx context.Context, addr string) error
	probeTimeout time.Duration

	mu     sync.Mutex
	health map[string]probed // by gateway id
}

// probed is the outcome of a gateway's last probe.
type probed struct {
	addr string
	ok   bool
	at   time.Time
}

const (
	// probeFresh is how long a successful probe is trusted.
	probeFresh = time.Second
	// probeDown is how long a gateway that failed its probe is skipped.
	probeDown = 3 * time.Second
	// maxProbes bounds the probes of one dispatch request.
	maxProbes = 3
)

// NewDispatcher returns a Dispatcher over dir; logger may be nil.
func NewDispatcher(dir GatewayDirectory, logger *slog.Logger) *Dispatcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{dir: dir, log: logger, timeout: 5 * time.Second, probeTimeout: 300 * time.Millisecond, health: map[string]probed{}}
	d.probe = d.dial
	return d
}

// dial connects to addr ("host:port", or a ws/wss/http/https URL) and
// hangs up.
func (d *Dispatcher) dial(ctx context.Context, addr string) error {
	hostport, err := dialAddr(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.probeTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	return c.Close()
}

// dialAddr turns a registered gateway address into host:port.
func dialAddr(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("gateway address %q is neither host:port nor a URL", addr)
		}
		return addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("gateway address %q is neither host:port nor a URL", addr)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "wss" || u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// pick returns the gateway to hand out: the least loaded (random among
// ties) of those not known to be down, checked with a probe.
func (d *Dispatcher) pick(ctx context.Context, gws []coord.GatewayInfo) (coord.GatewayInfo, bool) {
	cands := make([]coord.GatewayInfo, 0, len(gws))
	for _, g := range gws {
		if g.Addr != "" {
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		return coord.GatewayInfo{}, false
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	slices.SortStableFunc(cands, func(a, b coord.GatewayInfo) int { return cmp.Compare(a.Load, b.Load) })
	probes := 0
	for _, g := range cands {
		now := time.Now()
		d.mu.Lock()
		h, seen := d.health[g.ID]
		d.mu.Unlock()
		if seen && h.addr == g.Addr {
			if h.ok && now.Sub(h.at) < probeFresh {
				return g, true
			}
			if !h.ok && now.Sub(h.at) < probeDown {
				continue
			}
		}
		if probes == maxProbes {
			break
		}
		probes++
		err := d.probe(ctx, g.Addr)
		d.mu.Lock()
		d.health[g.ID] = probed{addr: g.Addr, ok: err == nil, at: time.Now()}
		d.forgetLocked(gws)
		d.mu.Unlock()
		if err == nil {
			return g, true
		}
		d.log.Warn("gateway: dispatcher skips a registered gateway that does not accept connections", "gateway", g.ID, "addr", g.Addr, "err", err)
	}
	return cands[0], true
}

// forgetLocked drops the health of gateways no longer registered.
func (d *Dispatcher) forgetLocked(gws []coord.GatewayInfo) {
	if len(d.health) <= 2*len(gws)+16 {
		return
	}
	keep := make(map[string]bool, len(gws))
	for _, g := range gws {
		keep[g.ID] = true
	}
	for id := range d.health {
		if !keep[id] {
			delete(d.health, id)
		}
	}
}

// dispatchAnswer is the body of a successful dispatch.
type dispatchAnswer struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

// ServeHTTP answers a dispatch request.
func (d *Dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.timeout)
	defer cancel()
	gws, err := d.dir.Gateways(ctx)
	if err != nil {
		d.log.Warn("gateway: dispatcher cannot list gateways", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "gateway directory unavailable"})
		return
	}
	g, ok := d.pick(ctx, gws)
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no gateway available"})
		return
	}
	writeJSON(w, http.StatusOK, dispatchAnswer{ID: g.ID, Addr: g.Addr})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the answers always encode; a failed write means the client went away
}
