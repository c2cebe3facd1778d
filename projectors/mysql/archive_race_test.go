package mysql

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/projectors"
)

// TestArchiveReadSeesEverythingBelowItsHead reads the archive while the
// archiver applies small batches: every read that starts after the reader
// saw the archive's head returns every entry up to that head, in order and
// once. This is what trimming relies on: the log is trimmed below the head
// the trim read, and a reader of the archive then the stream (replay,
// export) must find the trimmed entries in the archive.
func TestArchiveReadSeesEverythingBelowItsHead(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 1)
	newScenario(ctx, t, env.svc, 6, 1).run(ctx, t, 1, 80, 7)
	var full []eventstore.Recorded
	for _, e := range readAll(t, 0, func(after eventstore.Position, limit int) ([]eventstore.Recorded, error) {
		return env.store.ReadPartition(ctx, 0, after, limit)
	}) {
		full = append(full, *e.rec)
	}
	db := openTestDB(t)
	arch := testArchiver(t, db, ArchiverConfig{SegmentEvents: 5})
	token := uint64(time.Now().UnixNano())
	head, err := arch.Claim(ctx, 0, token)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the archiver: batches of 1..7 entries
		defer wg.Done()
		defer close(done)
		for i := 0; i < len(full); {
			n := min(1+i%7, len(full)-i)
			b := &projectors.Batch{Partition: 0, Token: token, After: head, To: full[i+n-1].Position, Events: full[i : i+n]}
			if err := arch.Apply(ctx, b); err != nil {
				t.Error(err)
				return
			}
			head, i = b.To, i+n
		}
	}()
	reads := 0
	for running := true; running; reads++ {
		select {
		case <-done:
			running = false
		default:
		}
		seen, err := ArchiveHead(ctx, db, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []eventstore.Recorded
		var after eventstore.Position
		for {
			recs, err := ReadArchive(ctx, db, 0, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				break
			}
			got = append(got, recs...)
			after = recs[len(recs)-1].Position
		}
		for i, r := range got {
			if r.Position != full[i].Position {
				t.Fatalf("read %d: entry %d is %s, want %s", reads, i, r.Position, full[i].Position)
			}
		}
		if !seen.IsZero() && (len(got) == 0 || got[len(got)-1].Position.Compare(seen) < 0) {
			t.Fatalf("read %d: the archive head was %s before the read, the read ended at %d entries", reads, seen, len(got))
		}
	}
	wg.Wait()
	t.Logf("%d entries archived in small batches, %d reads", len(full), reads)
}
