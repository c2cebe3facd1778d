package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/eventstore"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// BenchmarkAppendMessages appends b.N message events from 64 concurrent
// appenders, each sending to a conversation of its own (spread over the
// partitions) or all to one conversation, and reports events/s. Mode
// "send" appends as command.Send does for a 1:1 message with a client
// message id: a guard on the pair, an idempotency key and a cell.
func BenchmarkAppendMessages(b *testing.B) {
	for _, mode := range []string{"spread", "one-conversation", "send"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b, eventstore.Config{})
			const appenders = 64
			convs := make([]string, appenders)
			for i := range convs {
				convs[i] = fmt.Sprintf("d/bench-%02d.x", i)
				if mode == "one-conversation" {
					convs[i] = "d/bench.one"
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for w := range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
						req := eventstore.AppendRequest{Streams: []eventstore.StreamAppend{{
							Aggregate: convs[w], Expected: eventstore.Any, Events: []*mpimv1.Event{messageEvent(convs[w], "benchmark message of ordinary size, ok")}}}}
						if mode == "send" {
							req.IdempotencyKey = eventstore.IdempotencyKey(fmt.Sprintf("send:u/bench-%02d:%d", w, n))
							req.Guards = []eventstore.Guard{{Aggregate: "r/" + convs[w][2:]}}
							req.Streams[0].Cells = []*eventstore.Cell{{Value: []byte("cell-of-a-message")}}
						}
						_, err := h.store.Append(ctx, req)
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
