package gateway

import (
	"time"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Heavy queries: history and conversations read pages of up to MaxPage
// rows from MySQL and answer with up to a page of them, so one of them
// costs the gateway and the database what many pings do. They take tokens
// in proportion to their page (requestCost), and one user has at most
// Config.HeavyInFlightPerUser of them being answered at once on a gateway
// (userLimit.beginHeavy).

// heavyRetryAfter is the wait advised to a user over the bound of heavy
// queries in flight: about what one takes.
const heavyRetryAfter = 200 * time.Millisecond

// requestCost returns the tokens f takes from the token buckets and
// whether it is a heavy query: a history or conversations request costs
// HeavyQueryCost at the largest page and proportionally less for a smaller
// one (at least 1); any other request costs 1.
func (c *Config) requestCost(f *mpimv1.ClientFrame) (cost int, heavy bool) {
	var limit uint32
	switch q := f.GetRequest().(type) {
	case *mpimv1.ClientFrame_History:
		limit = q.History.GetLimit()
	case *mpimv1.ClientFrame_Conversations:
		limit = q.Conversations.GetLimit()
	default:
		return 1, false
	}
	page, err := domain.CheckPage(limit)
	if err != nil {
		page = domain.MaxPage // answered invalid, at the cost of the largest page
	}
	return max(1, (c.HeavyQueryCost*page+domain.MaxPage-1)/domain.MaxPage), true
}
