package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/internal/streamid"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/redis/go-redis/v9"
)

// heads has alice say one message to the group, applies the batch and
// returns the heads notified on gw-1, by user.
func (r *routed) heads(t *testing.T) map[domain.UserID]delivery.Head {
	t.Helper()
	r.e.say(t, r.users[0], r.gid, "hello")
	b := r.e.batch(t, r.part, 7, r.after)
	if err := r.proj.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	r.after = b.To
	got := map[domain.UserID]delivery.Head{}
	for _, n := range drain(t, r.e, r.sub, r.channels)[r.channels[0]] {
		for _, h := range n.Users {
			got[h.User] = h
		}
	}
	return got
}

// online routes every user of r to gw-1 and runs a first batch, after which
// the projector remembers every user's last inbox id.
func online(t *testing.T, names ...string) *routed {
	t.Helper()
	r := newRouted(t, inbox.Config{}, names...)
	live := delivery.Route{Gateway: "gw-1", Expires: time.Now().Add(time.Hour)}
	for _, u := range r.users {
		r.announce(t, u, "phone", "gw-1", &live)
	}
	r.heads(t) // the group's creation and a message: several entries per user, read
	if n := r.proj.LastIDsSize(); n != len(r.users) {
		t.Fatalf("%d last ids remembered after the first batch, want %d", n, len(r.users))
	}
	r.lookups.inboxReads.Swap(0)
	return r
}

// wantCarried fails t unless h carries exactly u's inbox entries after prev.
func wantCarried(t *testing.T, r *routed, h delivery.Head, u command.Actor, prev string) {
	t.Helper()
	if h.Prev != prev {
		t.Errorf("%s: Prev %s, want %s", u.User, h.Prev, prev)
	}
	want := carriedHead(t, r.e, u.User, prev)
	if len(h.Entries) != len(want.Entries) || h.Last != want.Last {
		t.Fatalf("%s: carried %d entries up to %s, the inbox has %d after %s up to %s", u.User, len(h.Entries), h.Last, len(want.Entries), prev, want.Last)
	}
	for i := range want.Entries {
		if h.Entries[i].ID != want.Entries[i].ID || h.Entries[i].EventID != want.Entries[i].EventID {
			t.Errorf("%s: carried entry %d is %s, the inbox's is %s", u.User, i, h.Entries[i].ID, want.Entries[i].ID)
		}
	}
}

func TestPrevIsClaimedWithoutReadingTheInbox(t *testing.T) {
	r := online(t, "alice", "bob")
	prev := map[domain.UserID]string{}
	for _, u := range r.users {
		prev[u.User] = lastInboxID(t, r.e, u.User)
	}
	heads := r.heads(t)
	if n := r.lookups.inboxReads.Swap(0); n != 0 {
		t.Errorf("%d XREVRANGEs of inboxes for users with one entry each and known last ids, want 0", n)
	}
	for _, u := range r.users {
		wantCarried(t, r, heads[u.User], u, prev[u.User])
		p, _ := streamid.Parse(prev[u.User])
		if want := (streamid.ID{Ms: p.Ms, Seq: p.Seq + 1}).String(); heads[u.User].Last != want {
			t.Errorf("%s: the claimed entry has id %s, want %s (right after Prev)", u.User, heads[u.User].Last, want)
		}
	}
	if n := counter(t, r.reg, "mpim_inbox_prev_claims_total"); n != 2 {
		t.Errorf("claims metric %v, want 2", n)
	}
}

func TestRefusedClaimIsAppendedAfterTheOtherEntry(t *testing.T) {
	r := online(t, "alice", "bob", "carol")
	ctx := context.Background()
	alice, bob, carol := r.users[0], r.users[1], r.users[2]
	// Another partition's projector appends to bob's inbox after the
	// projector's last entry there, and carol's inbox is deleted.
	last, err := r.e.rdb.XRevRangeN(ctx, r.e.keys.Inbox(bob.User), "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatal(last, err)
	}
	other, err := r.e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: r.e.keys.Inbox(bob.User), Values: last[0].Values}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.e.rdb.Del(ctx, r.e.keys.Inbox(carol.User)).Err(); err != nil {
		t.Fatal(err)
	}
	alicePrev := lastInboxID(t, r.e, alice.User)
	before := len(r.e.inbox(t, bob.User))

	heads := r.heads(t)
	wantCarried(t, r, heads[alice.User], alice, alicePrev)
	wantCarried(t, r, heads[bob.User], bob, other) // not the id the projector remembered
	wantCarried(t, r, heads[carol.User], carol, "0-0")
	if got := r.e.inbox(t, bob.User); len(got) != before+1 || got[len(got)-2].id != other {
		t.Errorf("bob's inbox: %d entries, want %d, the new one right after %s", len(got), before+1, other)
	}
	if got := r.e.inbox(t, carol.User); len(got) != 1 {
		t.Errorf("carol's deleted inbox has %d entries after the batch, want the new one only", len(got))
	}
	if n := r.lookups.inboxReads.Swap(0); n != 2 {
		t.Errorf("%d XREVRANGEs of inboxes, want 2 (bob's and carol's, after their claims were refused)", n)
	}
	if n := counter(t, r.reg, "mpim_inbox_prev_claims_refused_total"); n != 2 {
		t.Errorf("refused claims metric %v, want 2", n)
	}
	if n := counter(t, r.reg, "mpim_inbox_prev_claims_total"); n != 1 {
		t.Errorf("claims metric %v, want 1", n)
	}
	// The next batch claims again, after the ids appended this time.
	prev := lastInboxID(t, r.e, bob.User)
	wantCarried(t, r, r.heads(t)[bob.User], bob, prev)
	if n := r.lookups.inboxReads.Swap(0); n != 0 {
		t.Errorf("%d XREVRANGEs of inboxes after the refused claims were appended again, want 0", n)
	}
}
