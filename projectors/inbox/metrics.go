package inbox

import (
	"github.com/mpim/mpim/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	entries        prometheus.Counter
	notifications  prometheus.Counter
	quotaTrims     prometheus.Counter
	headsOnly      prometheus.Counter
	routeHits      prometheus.Counter
	routeLookups   prometheus.Counter
	routeResets    prometheus.Counter
	routeEvictions prometheus.Counter
	claims         prometheus.Counter
	refusedClaims  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		entries: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_entries_written_total",
			Help: "Inbox entries appended (a retried batch counts its entries again)."}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_notifications_published_total",
			Help: "Gateway notifications published (at most one per gateway per batch)."}),
		quotaTrims: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_quota_trims_total",
			Help: "Inboxes trimmed back under their byte quota (--inbox-quota-bytes)."}),
		headsOnly: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_notification_heads_only_total",
			Help: "Users notified by head only because their entries did not fit the notification's byte bound."}),
		routeHits: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_route_cache_hits_total",
			Help: "Recipients whose gateways the route cache knew (no presence lookup)."}),
		routeLookups: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_route_lookups_total",
			Help: "Presence lookups (HGETALL) of recipients the route cache did not know or could not vouch for."}),
		routeResets: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_route_cache_resets_total",
			Help: "Times the route cache started over because route changes were missed."}),
		routeEvictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_route_cache_evictions_total",
			Help: "Route cache entries evicted by its bounds (--inbox-route-cache-*)."}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_prev_claims_total",
			Help: "Recipients whose notification Prev was proven by appending after the remembered last id, without reading the inbox."}),
		refusedClaims: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpim_inbox_prev_claims_refused_total",
			Help: "Claims Redis refused (an entry was added since, or the inbox is gone): the entry was appended again after a read of the inbox's last id."}),
	}
	if err := promreg.Register(reg, "inbox: metrics", m.entries, m.notifications, m.quotaTrims, m.headsOnly,
		m.routeHits, m.routeLookups, m.routeResets, m.routeEvictions, m.claims, m.refusedClaims); err != nil {
		return nil, err
	}
	return m, nil
}
