package inbox

import (
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	entries       prometheus.Counter
	notifications prometheus.Counter
	quotaTrims    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		entries: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_entries_written_total",
			Help: "Inbox entries appended (a retried batch counts its entries again)."}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_notifications_published_total",
			Help: "Gateway notifications published (at most one per gateway per batch)."}),
		quotaTrims: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_quota_trims_total",
			Help: "Inboxes trimmed back under their byte quota (--inbox-quota-bytes)."}),
	}
	if err := promreg.Register(reg, "inbox: metrics", m.entries, m.notifications, m.quotaTrims); err != nil {
		return nil, err
	}
	return m, nil
}
