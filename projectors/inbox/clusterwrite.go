package inbox

import (
	"context"
	"errors"
	"sync"

	"github.com/mpim/mpim/domain"
	"github.com/redis/go-redis/v9"
)

// batchWrite holds the commands of one batch's inbox write. On one server
// they are one transaction (every inbox's previous head read and its new
// entries with nothing of another partition between them, the route read
// after the entries). A Redis Cluster runs no transaction over slots, and
// the inboxes of a batch's users hash to many: there each inbox gets a
// transaction of its own (the same guarantee, per inbox), all of them at
// once, and the route reads and quarantine writes run after every one of
// them ended, in one pipeline.
type batchWrite struct {
	rdb    redis.UniversalClient
	single redis.Pipeliner                   // one server: every command
	inbox  map[domain.UserID]redis.Pipeliner // cluster: each inbox's transaction
	after  redis.Pipeliner                   // cluster: route reads, quarantine
}

func newBatchWrite(rdb redis.UniversalClient) *batchWrite {
	if _, ok := rdb.(*redis.ClusterClient); ok {
		return &batchWrite{rdb: rdb, inbox: map[domain.UserID]redis.Pipeliner{}, after: rdb.Pipeline()}
	}
	return &batchWrite{rdb: rdb, single: rdb.TxPipeline()}
}

// forInbox returns the pipeline of the commands on user's inbox keys.
func (w *batchWrite) forInbox(user domain.UserID) redis.Pipeliner {
	if w.single != nil {
		return w.single
	}
	p, ok := w.inbox[user]
	if !ok {
		p = w.rdb.TxPipeline()
		w.inbox[user] = p
	}
	return p
}

// rest returns the pipeline of the commands that follow the inbox writes.
func (w *batchWrite) rest() redis.Pipeliner {
	if w.single != nil {
		return w.single
	}
	return w.after
}

// exec runs the write and returns the first error of a command for which
// skip is false (see execIgnoring). On a cluster skip is called from
// several goroutines at once.
func (w *batchWrite) exec(ctx context.Context, skip func(redis.Cmder) bool) error {
	if w.single != nil {
		return execIgnoring(ctx, w.single, skip)
	}
	var wg sync.WaitGroup
	errs := make([]error, 0, len(w.inbox))
	var mu sync.Mutex
	for _, p := range w.inbox {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := execIgnoring(ctx, p, skip); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return execIgnoring(ctx, w.after, skip)
}
