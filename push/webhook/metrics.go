package webhook

import (
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	calls        prometheus.Counter
	failures     *prometheus.CounterVec
	latency      prometheus.Histogram
	collapsed    prometheus.Counter
	deadLettered prometheus.Counter
	held         prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, held func() float64) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_webhook_requests_total",
			Help: "Webhook requests sent (every attempt of every call, re-sent dead letters included)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_webhook_failures_total",
			Help: "Failed webhook requests by class: network, timeout, server (5xx), throttled (429), rejected (other non-2xx)."},
			[]string{"class"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mpim_webhook_request_duration_seconds",
			Help: "Time from sending a webhook request to its answer or failure.", Buckets: prometheus.DefBuckets}),
		collapsed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_webhook_collapsed_total",
			Help: "Notifications merged into a call already collapsing for their user."}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_webhook_dead_lettered_total",
			Help: "Calls moved to the dead-letter stream."}),
		held: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mpim_webhook_held_calls",
			Help: "Calls collapsing, queued, in flight or waiting to retry."}, held),
	}
	for _, class := range []string{classNetwork, classTimeout, classServer, classThrottled, classRejected} {
		m.failures.WithLabelValues(class)
	}
	if err := promreg.Register(reg, "webhook: metrics", m.calls, m.failures, m.latency, m.collapsed, m.deadLettered, m.held); err != nil {
		return nil, err
	}
	return m, nil
}
