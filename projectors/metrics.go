package projectors

import (
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type runnerMetrics struct {
	events       *prometheus.CounterVec
	quarantined  *prometheus.CounterVec
	errors       *prometheus.CounterVec
	owned        *prometheus.GaugeVec
	checkpoint   *prometheus.GaugeVec
	lagMs        *prometheus.GaugeVec
	batchSeconds prometheus.Observer
}

func newRunnerMetrics(reg prometheus.Registerer, projector string) (*runnerMetrics, error) {
	labels := prometheus.Labels{"projector": projector}
	m := &runnerMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_projector_events_total",
			Help: "Events applied, by partition.", ConstLabels: labels}, []string{"partition"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_projector_quarantined_total",
			Help: "Entries quarantined (undecodable, or failing to apply MaxAttempts times), by partition.", ConstLabels: labels}, []string{"partition"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_projector_errors_total",
			Help: "Failed steps (retried), by step.", ConstLabels: labels}, []string{"step"}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mpim_projector_partition_owned",
			Help: "1 while this process owns the partition.", ConstLabels: labels}, []string{"partition"}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mpim_projector_checkpoint_milliseconds",
			Help: "Redis time part of the partition's checkpoint position.", ConstLabels: labels}, []string{"partition"}),
		lagMs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mpim_projector_lag_milliseconds",
			Help: "Milliseconds between the checkpoint and the partition's last entry.", ConstLabels: labels}, []string{"partition"}),
	}
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mpim_projector_batch_seconds",
		Help: "Time to apply one batch.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.batchSeconds = hist
	if err := promreg.Register(reg, "projectors: metrics of projector "+projector,
		m.events, m.quarantined, m.errors, m.owned, m.checkpoint, m.lagMs, hist); err != nil {
		return nil, err
	}
	return m, nil
}

// partitionMetrics are one partition's metrics, looked up once per
// ownership instead of once per batch.
type partitionMetrics struct {
	events, quarantined      prometheus.Counter
	owned, checkpoint, lagMs prometheus.Gauge
}

func (m *runnerMetrics) partition(label string) partitionMetrics {
	return partitionMetrics{
		events: m.events.WithLabelValues(label), quarantined: m.quarantined.WithLabelValues(label),
		owned: m.owned.WithLabelValues(label), checkpoint: m.checkpoint.WithLabelValues(label), lagMs: m.lagMs.WithLabelValues(label),
	}
}
