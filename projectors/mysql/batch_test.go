package mysql

import (
	"context"
	"math/bits"
	"slices"
	"strings"
	"testing"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

func TestLadderSendsOneStatementPerBinaryDigit(t *testing.T) {
	for n := 1; n <= 1200; n++ {
		var steps []int
		for left := n; left > 0; left -= steps[len(steps)-1] {
			s := ladderStep(left)
			if s < 1 || s > left || !slices.Contains(ladder[:], s) {
				t.Fatalf("%d rows: step %d for %d rows left is not a ladder count that fits", n, s, left)
			}
			steps = append(steps, s)
		}
		if !slices.IsSortedFunc(steps, func(a, b int) int { return b - a }) {
			t.Errorf("%d rows: steps %v are not largest first", n, steps)
		}
		if n < 2*ladder[0] && len(steps) != bits.OnesCount(uint(n)) {
			t.Errorf("%d rows sent as %d statements %v, want one per binary digit set (%d)", n, len(steps), steps, bits.OnesCount(uint(n)))
		}
	}
}

// A batch of many messages to one conversation writes one conversations row
// and one user_conversations row per member, and ends with the rows that
// applying the events one batch each gives.
func TestBatchOfMessagesToOneConversationWritesEachRowOnce(t *testing.T) {
	ctx := context.Background()
	const n = 50
	w := newMsgWorkload(func(string) int { return 0 }, 2, 1, 0, 0, 0)
	recs := make([]eventstore.Recorded, n)
	for i := range recs {
		recs[i] = eventstore.Recorded{Position: eventstore.Position{Ms: uint64(i + 1)}, Event: w.message().env}
	}
	apply := func(rm *ReadModel, per int) {
		t.Helper()
		if _, err := rm.Claim(ctx, 0, 1); err != nil {
			t.Fatal(err)
		}
		var after eventstore.Position
		for lo := 0; lo < n; lo += per {
			evs := recs[lo:min(lo+per, n)]
			to := evs[len(evs)-1].Position
			if err := rm.Apply(ctx, &projectors.Batch{Token: 1, After: after, To: to, Events: evs}); err != nil {
				t.Fatal(err)
			}
			after = to
		}
	}
	batched, single := openTestDB(t), openTestDB(t)
	rm := testReadModel(t, batched, Config{})
	apply(rm, n)
	apply(testReadModel(t, single, Config{}), 1)
	sameModel(t, batched, single)

	// The unread counts are those of the log: each member has read up to
	// the last message they sent.
	lastSent := map[string]uint64{}
	for _, r := range recs {
		lastSent[string(r.Event.GetActor().GetUserId())] = r.Event.GetSeq()
	}
	rows, err := batched.Query("SELECT user_id, last_seq, read_seq, unread_count FROM user_conversations")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	members := 0
	for rows.Next() {
		var user string
		var last, read, unread uint64
		if err := rows.Scan(&user, &last, &read, &unread); err != nil {
			t.Fatal(err)
		}
		members++
		if last != n || read != lastSent[user] || unread != n-lastSent[user] {
			t.Errorf("%s: last_seq %d read_seq %d unread %d, want %d %d %d", user, last, read, unread, n, lastSent[user], n-lastSent[user])
		}
	}
	if err := rows.Err(); err != nil || members != 2 {
		t.Fatalf("%d user_conversations rows (%v), want 2", members, err)
	}

	// The statements the batch prepared: one row for the conversation, two
	// for the members' lists, the 50 messages as 32 + 16 + 2.
	prepared := map[string][]int{}
	rm.stmts.mu.Lock()
	for k := range rm.stmts.stmts {
		for _, table := range []string{"conversations", "user_conversations", "messages"} {
			if strings.HasPrefix(k.head, "INSERT INTO "+table+" ") {
				prepared[table] = append(prepared[table], k.rows)
			}
		}
	}
	rm.stmts.mu.Unlock()
	for table, want := range map[string][]int{"conversations": {1}, "user_conversations": {2}, "messages": {2, 16, 32}} {
		got := prepared[table]
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("statements prepared for %s: row counts %v, want %v", table, got, want)
		}
	}
}
