package push_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/projectors/push"
)

// batch runs the cache projector to the head of the log, claims the
// partition of key for p under token and returns the batch of every entry
// after its checkpoint.
func (e *env) batch(tb testing.TB, p *push.Projector, key string, token uint64) *projectors.Batch {
	tb.Helper()
	projectorstest.RunToHead(tb, e.w.Store, e.cache, e.cache, 100)
	part := e.w.Store.PartitionOf(key)
	after, err := p.Claim(e.ctx, part, token)
	if err != nil {
		tb.Fatal(err)
	}
	recs, err := e.w.Store.Tail(e.ctx, part, after, 1000, 0)
	if err != nil || len(recs) == 0 {
		tb.Fatalf("tail of partition %d: %d entries, %v", part, len(recs), err)
	}
	return &projectors.Batch{Partition: part, Token: token, After: after, To: recs[len(recs)-1].Position, Events: recs}
}

// TestBatchLookupsDoNotGrowWithRecipients: a batch of three messages to a
// group of 1 or of 50 offline members with a token, beside a member online
// on the device with the token, one who muted the group and one without a
// token, reads the directory and presence in the same round trips (the
// members, the tokens, the presence of those with a token, their mutes and
// the sender's name: one each) and tells exactly the offline members, each
// of the three messages. A batch that tells nobody reads the tokens once
// and runs one checkpoint script, the advancer's write (Apply returns
// before it: the scripts are counted once the checkpoint moved).
func TestBatchLookupsDoNotGrowWithRecipients(t *testing.T) {
	const lookupTrips = 5
	for _, n := range []int{1, 50} {
		t.Run(fmt.Sprintf("%d offline members", n), func(t *testing.T) {
			e := newEnv(t, nil)
			phone := []domain.DeviceID{"phone"}
			alice := e.user(t, "alice", "Alice", nil)
			var members []domain.UserID
			want := map[domain.UserID]int{}
			for i := range n {
				u := e.user(t, fmt.Sprintf("off%02d", i), "", phone, "phone")
				members = append(members, u.User)
				want[u.User] = 3
			}
			online := e.user(t, "online", "", phone, "phone")
			muted := e.user(t, "muted", "", phone, "phone")
			tokenless := e.user(t, "tokenless", "", phone)
			members = append(members, online.User, muted.User, tokenless.User)
			g, _, err := e.w.Svc.CreateGroup(e.ctx, alice, "g", members, false)
			if err != nil {
				t.Fatal(err)
			}
			conv := domain.GroupConversation(g)
			e.must(t)(e.w.Svc.MuteConversation(e.ctx, muted, conv, time.Time{}, true))
			e.online(t, online.User, "phone")
			p, trips := e.countedProjector(t, push.StartHead)
			e.run(t, p) // starts at the head: the set-up above is not pushed

			for range 3 {
				e.send(t, alice, conv, "hi all")
			}
			b := e.batch(t, p, conv.PartitionKey(), 1<<40)
			trips.take()
			if err := p.Apply(e.ctx, b); err != nil {
				t.Fatal(err)
			}
			if lookups, _ := trips.take(); lookups != lookupTrips {
				t.Errorf("a batch of 3 messages to %d recipients took %d lookup round trips, want %d", n+3, lookups, lookupTrips)
			}
			e.waitCheckpointOf(t, p, b.Partition, b.To)
			got := map[domain.UserID]int{}
			for _, c := range e.recv.taken() {
				checkSigned(t, c)
				if c.p.Conversation != conv || c.p.Sender != alice.User || c.p.Preview != "Alice" || len(c.p.Devices) != 1 || c.p.Devices[0].ID != "phone" {
					t.Errorf("call %+v", c.p)
				}
				got[c.p.User] += c.p.Count
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("notifications per user %v, want %v", got, want)
			}

			calls := len(e.recv.taken())
			e.send(t, alice, domain.DirectConversation(alice.User, tokenless.User), "nobody to push to")
			b = e.batch(t, p, domain.DirectConversation(alice.User, tokenless.User).PartitionKey(), 1<<40+1)
			trips.take()
			if err := p.Apply(e.ctx, b); err != nil {
				t.Fatal(err)
			}
			lookups, scripts := trips.take()
			e.waitCheckpointOf(t, p, b.Partition, b.To)
			_, written := trips.take() // the reads of the wait are not the batch's
			if scripts += written; lookups != 1 || scripts != 1 {
				t.Errorf("a batch that tells nobody took %d lookup round trips and %d checkpoint scripts, want 1 and 1", lookups, scripts)
			}
			if n := len(e.recv.taken()); n != calls {
				t.Errorf("%d calls after a batch that tells nobody, want %d", n, calls)
			}
		})
	}
}
