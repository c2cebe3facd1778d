package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
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
type Dispatcher struct {
	dir     GatewayDirectory
	log     *slog.Logger
	timeout time.Duration
}

// NewDispatcher returns a Dispatcher over dir; logger may be nil.
func NewDispatcher(dir GatewayDirectory, logger *slog.Logger) *Dispatcher {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Dispatcher{dir: dir, log: logger, timeout: 5 * time.Second}
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
	g, ok := leastLoaded(gws)
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "no gateway available"})
		return
	}
	writeJSON(w, http.StatusOK, dispatchAnswer{ID: g.ID, Addr: g.Addr})
}

// leastLoaded picks the gateway with the lowest load among those with an
// address, at random among ties.
func leastLoaded(gws []coord.GatewayInfo) (coord.GatewayInfo, bool) {
	var best coord.GatewayInfo
	n := 0
	for _, g := range gws {
		switch {
		case g.Addr == "":
		case n == 0 || g.Load < best.Load:
			best, n = g, 1
		case g.Load == best.Load:
			n++
			if rand.IntN(n) == 0 { // reservoir sampling among ties
				best = g
			}
		}
	}
	return best, n > 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
