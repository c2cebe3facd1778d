package gateway

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus metrics (mpim_gateway_*).
type metrics struct {
	connections     prometheus.Gauge
	sessions        prometheus.Gauge
	framesIn        *prometheus.CounterVec
	framesOut       *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	ackLatency      prometheus.Histogram
	queueDrops      prometheus.Counter
	slowDisconnects prometheus.Counter
	errors          *prometheus.CounterVec
	disconnects     *prometheus.CounterVec
	passwordHashes  *prometheus.CounterVec
	refusedConns    *prometheus.CounterVec
	tokensPruned    prometheus.Counter
	redisMemory     prometheus.Gauge
	outboxBytes     prometheus.Gauge
	outboxPeakBytes prometheus.GaugeFunc
	readPauses      prometheus.Counter
	heavyInFlight   prometheus.Gauge

	peak atomic.Int64 // the most bytes one connection had queued

	// Children bound at start for every request and frame type, so the
	// per-frame path does no label hashing.
	byRequest map[string]requestMetrics
	byFrame   map[string]prometheus.Counter
}

type requestMetrics struct {
	in       prometheus.Counter
	duration prometheus.Observer
}

// request returns the metrics of a request type (see requestType).
func (m *metrics) request(typ string) requestMetrics {
	if r, ok := m.byRequest[typ]; ok {
		return r
	}
	return m.byRequest["unknown"]
}

// outboxPeak records that a connection has n bytes queued.
func (m *metrics) outboxPeak(n int) {
	for {
		p := m.peak.Load()
		if int64(n) <= p || m.peak.CompareAndSwap(p, int64(n)) {
			return
		}
	}
}

// frameOut counts a written frame of a type (see serverFrameType).
func (m *metrics) frameOut(typ string) {
	if c, ok := m.byFrame[typ]; ok {
		c.Inc()
		return
	}
	m.framesOut.WithLabelValues(typ).Inc()
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		redisMemory: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mpim_gateway_redis_memory_used_ratio", Help: "Redis used_memory / maxmemory as last read, of the fullest master on a cluster (0: no maxmemory); new content is refused at --redis-memory-limit."}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mpim_gateway_connections", Help: "Open WebSocket connections."}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mpim_gateway_sessions", Help: "Authenticated connections (attached devices)."}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_frames_in_total", Help: "Client frames received, by request type (bad_frame: undecodable)."}, []string{"type"}),
		framesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_frames_out_total", Help: "Server frames written, by frame type."}, []string{"type"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mpim_gateway_request_duration_seconds", Help: "Time to handle a request, by request type.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2.5, 12)}, []string{"type"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mpim_gateway_push_ack_latency_seconds", Help: "Time from pushing a delivery to the connection to the client's acknowledgement of it (resends do not restart it).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		queueDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mpim_gateway_queue_dropped_frames_total", Help: "Frames dropped because a connection's send queue was full."}),
		slowDisconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mpim_gateway_slow_client_disconnects_total", Help: "Connections closed because their send queue filled up."}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_errors_total", Help: "Error responses, by protocol error code."}, []string{"code"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_disconnects_total", Help: "Closed connections, by reason."}, []string{"reason"}),
		passwordHashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_password_hashes_total", Help: "argon2id computations, by operation (hash: registration, verify: login)."}, []string{"op"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpim_gateway_refused_connections_total", Help: "WebSocket connections refused before the handshake, by limit."}, []string{"limit"}),
		tokensPruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mpim_gateway_tokens_pruned_total", Help: "Expired login tokens deleted from auth_tokens."}),
	}
	m.outboxBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mpim_gateway_outbox_bytes", Help: "Estimated bytes queued for clients and not written yet, over all connections."})
	m.outboxPeakBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mpim_gateway_outbox_peak_bytes", Help: "The most bytes one connection had queued since the gateway started."},
		func() float64 { return float64(m.peak.Load()) })
	m.readPauses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mpim_gateway_read_pauses_total", Help: "Times a connection's requests waited because its send queue was over the byte budget."})
	m.heavyInFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mpim_gateway_heavy_queries_in_flight", Help: "History and conversations requests being answered."})
	var errs []error
	for _, c := range []prometheus.Collector{m.connections, m.sessions, m.framesIn, m.framesOut, m.requestSeconds,
		m.ackLatency, m.queueDrops, m.slowDisconnects, m.errors, m.disconnects, m.passwordHashes, m.refusedConns, m.tokensPruned, m.redisMemory,
		m.outboxBytes, m.outboxPeakBytes, m.readPauses, m.heavyInFlight} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.byRequest = make(map[string]requestMetrics)
	fields := requestOneof.Fields()
	types := []string{"bad_frame", "unknown"}
	for i := range fields.Len() {
		types = append(types, string(fields.Get(i).Name()))
	}
	for _, t := range types {
		m.byRequest[t] = requestMetrics{in: m.framesIn.WithLabelValues(t), duration: m.requestSeconds.WithLabelValues(t)}
	}
	m.byFrame = make(map[string]prometheus.Counter)
	for _, t := range []string{"response", "push", "signal", "sync_required", "goaway"} {
		m.byFrame[t] = m.framesOut.WithLabelValues(t)
	}
	return m, nil
}
