package delivery

import (
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	deliveries    prometheus.Counter
	resends       prometheus.Counter
	catchUp       prometheus.Counter
	notifications prometheus.Counter
	badNotes      prometheus.Counter
	devices       prometheus.Gauge
	latency       prometheus.Histogram
	syncRequired  prometheus.Counter
	pollWakes     prometheus.Counter
	reconnects    prometheus.Counter
	sinkFailures  prometheus.Counter
	badEntries    prometheus.Counter
	carried       prometheus.Counter
	carriedMisses prometheus.Counter
	echoes        prometheus.Counter
	signalsOut    prometheus.Counter
	signalsIn     prometheus.Counter
	redisErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_deliveries_total",
			Help: "Inbox entries pushed to devices for the first time in their attachment (resends excluded)."}),
		resends: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_resends_total",
			Help: "Pushes sent again because the device did not acknowledge them within the ack timeout."}),
		catchUp: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_catchup_entries_total",
			Help: "Inbox entries pushed while a device was catching up after attaching (included in deliveries)."}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_notifications_received_total",
			Help: "Inbox notifications received on this gateway's channel."}),
		badNotes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_notifications_malformed_total",
			Help: "Notifications or signals received that could not be decoded (ignored; the position check covers them)."}),
		devices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mpim_gateway_attached_devices",
			Help: "Devices attached to this gateway's delivery hub."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mpim_gateway_delivery_latency_seconds",
			Help:    "Time from an event's occurred_at to its first live push (catch-up pushes excluded).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		syncRequired: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_sync_required_total",
			Help: "Devices told to sync history because entries after their position left the inbox window (or they had no cursor)."}),
		pollWakes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_position_check_wakes_total",
			Help: "Idle devices the periodic position check found behind their inbox (a notification lost or still in flight)."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_subscriber_reconnects_total",
			Help: "Times the notification subscriber lost its Redis connection and subscribed again."}),
		sinkFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_sink_failures_total",
			Help: "Devices detached because their connection refused a push or signal (full queue, closed)."}),
		badEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_malformed_entries_total",
			Help: "Inbox entries skipped because they could not be decoded."}),
		carried: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_carried_deliveries_total",
			Help: "Inbox entries pushed straight from a notification that carried them, without reading the inbox (included in deliveries)."}),
		carriedMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_carried_misses_total",
			Help: "Devices that could not take a notification's carried entries directly (being read, or their position was not the entries' predecessor) and read their inbox instead."}),
		echoes: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_echoes_skipped_total",
			Help: "Inbox entries not pushed to a device because it sent the message itself (the send response confirmed it); its position and cursor move past them."}),
		signalsOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_signals_published_total",
			Help: "Ephemeral signal messages published, one per receiving gateway per signal."}),
		signalsIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_gateway_signals_received_total",
			Help: "Ephemeral signal messages received on this gateway's channel (or handed over locally)."}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpim_gateway_redis_errors_total",
			Help: "Failed Redis round trips, by operation (each is retried or repaired)."}, []string{"op"}),
	}
	if err := promreg.Register(reg, "delivery: metrics", m.deliveries, m.resends, m.catchUp, m.notifications, m.badNotes, m.devices,
		m.latency, m.syncRequired, m.pollWakes, m.reconnects, m.sinkFailures, m.badEntries, m.carried, m.carriedMisses, m.echoes, m.signalsOut, m.signalsIn, m.redisErrors); err != nil {
		return nil, err
	}
	return m, nil
}
