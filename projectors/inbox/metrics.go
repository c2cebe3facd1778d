package inbox

import (
	"errors"

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
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.entries, m.notifications, m.quotaTrims} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("inbox: metrics already registered")
			}
			return nil, err
		}
	}
	return m, nil
}
