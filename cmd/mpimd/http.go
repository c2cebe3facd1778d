package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// probe is a readiness check: nil when the dependency answers.
type probe func(ctx context.Context) error

// opsServer serves /metrics, /healthz (the process runs), /readyz (every
// probe answers and start-up finished) and, only when withPprof is set
// (--pprof, off by default), /debug/pprof/: a profile or trace costs CPU
// while it runs and the heap and goroutine dumps show internals, so they are
// answered 404 unless an operator asks for them, even on the ops address,
// which defaults to loopback. /debug/pprof/cmdline is never served: a command
// line may hold a secret.
type opsServer struct {
	srv    *http.Server
	ln     net.Listener
	ready  atomic.Bool
	probes map[string]probe
}

// httpLimits bound the HTTP connections of a listener (the gateway's and
// the ops endpoints').
type httpLimits struct {
	readHeaderTimeout, idleTimeout time.Duration
	maxHeaderBytes, connsPerAddr   int
}

func (c *Config) httpLimits() httpLimits {
	return httpLimits{readHeaderTimeout: c.HTTPReadHeaderTimeout, idleTimeout: c.HTTPIdleTimeout,
		maxHeaderBytes: c.HTTPMaxHeaderBytes, connsPerAddr: c.MaxConnsPerAddr}
}

// newHTTPServer returns a server of h with the limits: request headers
// must arrive within readHeaderTimeout and fit maxHeaderBytes (larger
// ones are answered 431), and a keep-alive connection idle for idleTimeout
// is closed. Serve it on listen's listener.
func newHTTPServer(h http.Handler, lim httpLimits, lg *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: lim.readHeaderTimeout, IdleTimeout: lim.idleTimeout,
		MaxHeaderBytes: lim.maxHeaderBytes, ErrorLog: slog.NewLogLogger(lg.Handler(), slog.LevelWarn)}
}

// listen listens on addr, closing at once the connections of a client
// address (IPv6: its /64) beyond lim.connsPerAddr open ones; it counts them
// in mpim_http_refused_connections_total{listener=name} on reg.
func listen(addr, name string, lim httpLimits, reg prometheus.Registerer) (net.Listener, error) {
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_http_refused_connections_total",
		Help:        "TCP connections closed at once because their client address had --max-conns-per-address open ones.",
		ConstLabels: prometheus.Labels{"listener": name}})
	if err := reg.Register(refused); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return gateway.LimitListener(ln, lim.connsPerAddr, refused.Inc), nil
}

func newOpsServer(addr string, lim httpLimits, reg *prometheus.Registry, probes map[string]probe, withPprof bool, lg *slog.Logger) (*opsServer, error) {
	ln, err := listen(addr, "ops", lim, reg)
	if err != nil {
		return nil, err
	}
	o := &opsServer{ln: ln, probes: probes}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", o.readyz)
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	o.srv = newHTTPServer(mux, lim, lg)
	go func() {
		if err := o.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			lg.Error("ops server stopped", "err", err)
		}
	}()
	return o, nil
}

// Addr is the address the server listens on.
func (o *opsServer) Addr() string { return o.ln.Addr().String() }

func (o *opsServer) readyz(w http.ResponseWriter, r *http.Request) {
	if !o.ready.Load() {
		http.Error(w, "starting\n", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for name, p := range o.probes {
		if err := p(ctx); err != nil {
			http.Error(w, name+": "+err.Error()+"\n", http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ready\n"))
}

func (o *opsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return o.srv.Shutdown(ctx)
}
