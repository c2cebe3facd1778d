package eventstore_test

import (
	"sync"
	"testing"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
)

// TestDomainDecodesOnceForEveryCopy checks that the copies of a Recorded
// read from the log share one decode: after the first Domain call, a copy
// whose envelope was since replaced still returns the first decode, and
// concurrent callers (-race) agree.
func TestDomainDecodesOnceForEveryCopy(t *testing.T) {
	h := newHarness(t, eventstore.Config{Partitions: 1})
	h.appendMessages(t, "d/a.b", 1)
	recs := h.readAll(t, 0, eventstore.Position{}, 10)
	if len(recs) != 1 {
		t.Fatalf("%d entries", len(recs))
	}
	copies := make([]eventstore.Recorded, 8)
	for i := range copies {
		copies[i] = recs[0]
	}
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() {
			if _, ev, err := copies[i].Domain(); err != nil {
				t.Errorf("copy %d: %v", i, err)
			} else if _, ok := ev.(domain.MessageSent); !ok {
				t.Errorf("copy %d: decoded %T", i, ev)
			}
		})
	}
	wg.Wait()
	late := recs[0]
	late.Event = nil // decoding this would fail: the decode is not repeated
	if _, _, err := late.Domain(); err != nil {
		t.Fatalf("a copy decoded again: %v", err)
	}
	if _, _, err := (&eventstore.Recorded{}).Domain(); err == nil {
		t.Fatal("a Recorded without an envelope decoded")
	}
}
