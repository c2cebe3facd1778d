package eventstore_test

import (
	"context"
	"testing"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// appendMessages appends n messages to conv, one at a time, and returns
// their positions.
func (h *harness) appendMessages(tb testing.TB, conv string, n int) []eventstore.Position {
	tb.Helper()
	var pos []eventstore.Position
	for i := range n {
		res, err := h.store.Append(context.Background(), eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
			Aggregate: conv, Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(conv, string(rune('a'+i%26)))}}}})
		if err != nil {
			tb.Fatal(err)
		}
		pos = append(pos, res.Events[0].Position)
	}
	return pos
}

// TestReadPartitionStateTellsLostEntries appends 10 events, trims and
// deletes, and checks what each read's state proves after each position.
func TestReadPartitionStateTellsLostEntries(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	ctx := context.Background()
	pos := h.appendMessages(t, "d/X.Y", 10)
	key := h.prefix + "{p0}:log"
	state := func(after eventstore.Position) eventstore.StreamState {
		recs, st, err := h.store.ReadPartitionState(ctx, 0, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 && !recs[0].Position.After(after) {
			t.Fatalf("read after %s returned %s", after, recs[0].Position)
		}
		return st
	}
	type check struct {
		after eventstore.Position
		ord   int64
		holds bool
		miss  int64
	}
	expect := func(when string, checks ...check) {
		t.Helper()
		for _, c := range checks {
			st := state(c.after)
			if got, miss := st.Holds(c.after, c.ord), st.MissingAfter(c.after, c.ord); got != c.holds || (!got && miss != c.miss) {
				t.Errorf("%s: after %s (ord %d): holds %v, missing %d; want %v, %d (state %+v)", when, c.after, c.ord, got, miss, c.holds, c.miss, st)
			}
		}
	}
	var zero eventstore.Position
	expect("untouched", check{zero, 0, true, 0}, check{pos[4], -1, true, 0})
	if err := h.rdb.XTrimMinID(ctx, key, pos[3].String()).Err(); err != nil { // removes pos[0..2]
		t.Fatal(err)
	}
	expect("trimmed below pos[3]",
		check{zero, 0, false, 3}, check{pos[0], 1, false, 2}, check{pos[0], -1, false, -1},
		check{pos[2], 3, true, 0}, check{pos[2], -1, false, -1}, check{pos[3], -1, true, 0})
	if err := h.rdb.XDel(ctx, key, pos[6].String()).Err(); err != nil {
		t.Fatal(err)
	}
	expect("pos[6] deleted", check{pos[4], 5, false, -1}, check{pos[6], -1, true, 0}, check{pos[8], -1, true, 0})
	if err := h.rdb.XTrimMinID(ctx, key, "99999999999999-0").Err(); err != nil { // empties the stream
		t.Fatal(err)
	}
	expect("emptied", check{pos[9], 10, true, 0}, check{pos[8], 9, false, 1}, check{pos[9], -1, false, -1})
}
