package inbox

import (
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/redis/go-redis/v9"
)

// claimMaxLag bounds how far behind the clock a claimed entry's id may be.
// A claimed entry takes the id right after the inbox's last one, so its
// milliseconds are the last one's: while every append to an inbox is
// claimed, its ids stop following the clock. A last id older than this is
// not claimed: that append reads the inbox's last id and lets Redis
// assign the id, which brings the ids back to the clock.
const claimMaxLag = 10 * time.Second

// lastIDs remembers the id of the last entry this process appended to each
// recent recipient's inbox, so that the next batch writing a single entry
// to that inbox can claim that it is still the last instead of reading it
// (XREVRANGE): the entry is appended with the id right after it, NOMKSTREAM,
// which Redis accepts only if no entry was added to the inbox since (an
// explicit XADD id must be above the stream's last id) and the inbox
// exists. An accepted claim proves the Prev its notification carries; a
// refused one wrote nothing, and the batch appends the entry again after
// reading the inbox's last id, as for an unclaimed one.
//
// A remembered id is taken out while its claim is in flight, so two
// batches of this process never claim the same id (another process cannot
// claim it: only the process that appended an entry remembers its id). A
// stale id only makes a claim fail. Bounded by maxEntries (random
// eviction). It is safe for concurrent use.
type lastIDs struct {
	maxEntries int

	mu  sync.Mutex
	ids map[domain.UserID]streamid.ID // guarded by mu
}

func newLastIDs(maxEntries int) *lastIDs {
	return &lastIDs{maxEntries: maxEntries, ids: make(map[domain.UserID]streamid.ID)}
}

// claim takes the remembered last ids of the users that receive exactly one
// entry in the batch (count) and whose id is within claimMaxLag of now. A
// user with several entries is never claimed: a refused claim must leave
// nothing written, and only one XADD per inbox is refused as a whole.
func (c *lastIDs) claim(count map[domain.UserID]int, now time.Time) map[domain.UserID]streamid.ID {
	oldest := uint64(max(now.Add(-claimMaxLag).UnixMilli(), 0))
	claims := make(map[domain.UserID]streamid.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for u, n := range count {
		id, ok := c.ids[u]
		if !ok || n != 1 {
			continue
		}
		delete(c.ids, u) // in flight
		if id.Ms >= oldest && id.Seq < math.MaxUint64 {
			claims[u] = id
		}
	}
	return claims
}

// remember records id as the last entry appended to u's inbox.
func (c *lastIDs) remember(u domain.UserID, id streamid.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.ids[u]; !ok && len(c.ids) >= c.maxEntries {
		for evict := range c.ids { // map order: random enough
			delete(c.ids, evict)
			break
		}
	}
	c.ids[u] = id
}

// size returns the users remembered.
func (c *lastIDs) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

// next returns the id right after id (id.Seq below the maximum).
func next(id streamid.ID) streamid.ID { return streamid.ID{Ms: id.Ms, Seq: id.Seq + 1} }

// refusedClaim reports whether err is Redis refusing a claimed XADD: the
// inbox has an entry at or after the claimed id, or no longer exists
// (NOMKSTREAM replies nil).
func refusedClaim(err error) bool {
	return errors.Is(err, redis.Nil) || err != nil && strings.Contains(err.Error(), "equal or smaller than the target stream top item")
}
