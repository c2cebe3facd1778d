package inbox

import (
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/streamid"
)

func TestClaimsOnlyRecentSingleEntriesOnce(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	recent := streamid.ID{Ms: uint64(now.Add(-time.Second).UnixMilli()), Seq: 3}
	old := streamid.ID{Ms: uint64(now.Add(-claimMaxLag - time.Millisecond).UnixMilli())}
	c := newLastIDs(10)
	c.remember("u/one", recent)
	c.remember("u/two", recent)
	c.remember("u/old", old)
	got := c.claim(map[domain.UserID]int{"u/one": 1, "u/two": 2, "u/old": 1, "u/new": 1}, now)
	if len(got) != 1 || got["u/one"] != recent {
		t.Fatalf("claimed %v, want u/one at %s only (u/two has two entries, u/old's id is too old, u/new unknown)", got, recent)
	}
	if got := c.claim(map[domain.UserID]int{"u/one": 1}, now); len(got) != 0 {
		t.Fatalf("an id in flight was claimed again: %v", got)
	}
	if c.size() != 1 {
		t.Fatalf("%d ids remembered, want u/two's only (claimed and too old ones are taken out)", c.size())
	}
	if next(recent) != (streamid.ID{Ms: recent.Ms, Seq: 4}) {
		t.Fatalf("next(%s) = %s", recent, next(recent))
	}
}

func TestLastIDsAreBounded(t *testing.T) {
	c := newLastIDs(3)
	for i := range 10 {
		c.remember(domain.UserID(string(rune('a'+i))), streamid.ID{Ms: uint64(i)})
		if c.size() > 3 {
			t.Fatalf("%d ids remembered, bound 3", c.size())
		}
	}
}
