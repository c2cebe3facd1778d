package gateway

import (
	"time"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
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

// pageBudget caps the bytes of a history page as its rows are read
// (nearest to the starting point first): it takes messages while they fit
// in max, at least one so a page always moves on; once one does not fit
// the page is full, and that message and the rest are left to the next
// page.
type pageBudget struct {
	max, bytes, n int
	full          bool
}

// take reports whether m goes into the page.
func (p *pageBudget) take(m *mpimv1.ChatMessage) bool {
	if p.full {
		return false
	}
	size := proto.Size(m)
	if p.n > 0 && p.bytes+size > p.max {
		p.full = true
		return false
	}
	p.n++
	p.bytes += size
	return true
}
