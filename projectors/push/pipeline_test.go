package push_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/projectors"
	"github.com/mpim/mpim/projectors/projectorstest"
	"github.com/mpim/mpim/projectors/push"
	"github.com/mpim/mpim/projectors/redisckpt"
	"github.com/mpim/mpim/push/webhook"
	"github.com/redis/go-redis/v9"
)

// pipe is a push projector whose receiver holds every call until release
// is called, so that nothing settles meanwhile, over a direct conversation
// of alice (no device) and bob (an offline phone with a token).
type pipe struct {
	*env
	p            *push.Projector
	sender       *webhook.Sender
	release      func()
	alice, bob   command.Actor
	part         int
	token        uint64
	start        eventstore.Position // the claimed checkpoint
	conversation domain.ConversationID
}

func newPipe(t *testing.T, maxPending int) *pipe {
	t.Helper()
	hold := make(chan struct{})
	e := newEnv(t, hold)
	// A sender of its own whose calls never time out while held.
	sender, err := webhook.New(e.w.RDB, webhook.Config{URL: e.recv.srv.URL, Secret: secret, Window: webhook.MinWindow,
		DeadLetterKey: e.w.Prefix + "push:dead:pipe", Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := sender.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	p, err := push.New(e.w.RDB, e.dir, sender, e.w.Store, push.Config{Prefix: e.w.Prefix, MaxPending: maxPending, Now: func() time.Time { return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	x := &pipe{env: e, p: p, sender: sender, release: release, token: 7}
	x.alice = e.user(t, "alice", "Alice", nil)
	x.bob = e.user(t, "bob", "Bob", []domain.DeviceID{"phone"}, "phone")
	x.conversation = domain.DirectConversation(x.alice.User, x.bob.User)
	x.part = e.w.Store.PartitionOf(x.conversation.PartitionKey())
	projectorstest.RunToHead(t, e.w.Store, e.cache, e.cache, 100)
	if x.start, err = p.Claim(e.ctx, x.part, x.token); err != nil {
		t.Fatal(err)
	}
	return x
}

// batches sends the messages (from alice to bob when toBob, else from bob
// to alice, which tells nobody) and returns one batch per entry after
// after, under token.
func (x *pipe) batches(t *testing.T, after eventstore.Position, toBob ...bool) []*projectors.Batch {
	t.Helper()
	for _, b := range toBob {
		from := x.bob
		if b {
			from = x.alice
		}
		x.send(t, from, x.conversation, "hi")
	}
	projectorstest.RunToHead(t, x.w.Store, x.cache, x.cache, 100)
	recs, err := x.w.Store.Tail(x.ctx, x.part, after, 1000, 0)
	if err != nil || len(recs) != len(toBob) {
		t.Fatalf("tail: %d entries, %v; want %d", len(recs), err, len(toBob))
	}
	out := make([]*projectors.Batch, len(recs))
	for i, r := range recs {
		out[i] = &projectors.Batch{Partition: x.part, Token: x.token, After: after, To: r.Position, Events: recs[i : i+1]}
		after = r.Position
	}
	return out
}

func (x *pipe) checkpoint(t *testing.T) eventstore.Position {
	t.Helper()
	pos, err := x.p.Checkpoint(x.ctx, x.part)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// waitCheckpoint waits until the stored checkpoint is want.
func (x *pipe) waitCheckpoint(t *testing.T, want eventstore.Position) {
	t.Helper()
	x.waitCheckpointOf(t, x.p, x.part, want)
}

// applyHeld applies bs and waits until the receiver holds a call.
func (x *pipe) applyHeld(t *testing.T, bs []*projectors.Batch) {
	t.Helper()
	for i, b := range bs {
		if err := x.p.Apply(x.ctx, b); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	select {
	case <-x.recv.got:
	case <-x.ctx.Done():
		t.Fatal("the receiver got no call")
	}
}

// full reports whether Apply of b waits for room: it returns the end of a
// context that ends soon instead of applying.
func (x *pipe) full(t *testing.T, b *projectors.Batch) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(x.ctx, 20*time.Millisecond)
	defer cancel()
	err := x.p.Apply(ctx, b)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("apply while full: %v, want the context's end", err)
	}
	return err != nil
}

// TestBatchesAreAppliedWithoutWaitingForTheirCalls: while the receiver
// answers none of the calls, every batch up to the bound is applied (each
// submitted within the collapse window of the first, not one window each),
// the stored checkpoint stays where it was, and the next batch waits for
// room. Once the receiver answers, the checkpoint moves past all of them.
func TestBatchesAreAppliedWithoutWaitingForTheirCalls(t *testing.T) {
	const bound = 4
	x := newPipe(t, bound)
	bs := x.batches(t, x.start, true, true, true, true, true)
	x.applyHeld(t, bs[:bound])
	if got := x.checkpoint(t); got != x.start {
		t.Fatalf("checkpoint %s while every call is unanswered, want %s", got, x.start)
	}
	if !x.full(t, bs[bound]) {
		t.Fatalf("batch %d applied beyond the bound of %d pending", bound, bound)
	}
	if n := x.p.Pending(); n != bound {
		t.Fatalf("%d batches pending (mpim_push_pending_batches), want %d", n, bound)
	}
	x.release()
	x.waitCheckpoint(t, bs[bound-1].To)
	testsvc.Eventually(t, 30*time.Second, "no batch pending once the checkpoint passed them all", func() bool { return x.p.Pending() == 0 })
	if err := x.p.Apply(x.ctx, bs[bound]); err != nil {
		t.Fatalf("apply after the calls settled: %v", err)
	}
	x.waitCheckpoint(t, bs[bound].To)
}

// TestCheckpointNeverPassesAnUnsettledBatch: batches that tell nobody,
// after one whose call is unanswered, settle at once but the checkpoint
// waits for the one before them.
func TestCheckpointNeverPassesAnUnsettledBatch(t *testing.T) {
	x := newPipe(t, 8)
	bs := x.batches(t, x.start, true, false, false, false)
	x.applyHeld(t, bs)
	// One more batch that tells nobody, behind the same unanswered call: the
	// advancer had every chance to move past the empty ones meanwhile.
	more := x.batches(t, bs[len(bs)-1].To, false)
	if err := x.p.Apply(x.ctx, more[0]); err != nil {
		t.Fatal(err)
	}
	if got := x.checkpoint(t); got != x.start {
		t.Fatalf("checkpoint %s passed the unanswered batch; want %s", got, x.start)
	}
	x.release()
	x.waitCheckpoint(t, more[0].To)
	if n := len(x.recv.taken()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// TestFencedOwnerCheckpointsNothingPending: when another owner claims the
// partition while batches are pending, the old owner's advancer may not
// move the checkpoint once they settle, and its next Apply is fenced.
func TestFencedOwnerCheckpointsNothingPending(t *testing.T) {
	x := newPipe(t, 1)
	bs := x.batches(t, x.start, true, true)
	if err := x.p.Apply(x.ctx, bs[0]); err != nil {
		t.Fatal(err)
	}
	other, err := push.New(x.w.RDB, x.dir, x.env.sender, x.w.Store, push.Config{Prefix: x.w.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := other.Claim(x.ctx, x.part, x.token+1); err != nil || pos != x.start {
		t.Fatalf("claim by another owner: %s, %v; want %s", pos, err, x.start)
	}
	x.release()
	// The bound is 1: this Apply waits until the advancer is done with the
	// first batch, and then finds it fenced.
	if err := x.p.Apply(x.ctx, bs[1]); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("apply after the partition was claimed anew: %v, want ErrFenced", err)
	}
	if got := x.checkpoint(t); got != x.start {
		t.Fatalf("checkpoint %s after the fenced owner's batch settled, want %s", got, x.start)
	}
	projectorstest.RunToHead(t, x.w.Store, other, other, 100) // the new owner sends them again
	if got := x.checkpoint(t); got != bs[1].To {
		t.Fatalf("checkpoint %s after the new owner ran, want %s", got, bs[1].To)
	}
}

// TestFencedBatchThatTellsNobodyMovesNothing: a batch with no
// notification skips Apply's fencing check, so after another owner claimed
// the partition it is applied, but the advancer's write of its checkpoint
// is refused and the next Apply is fenced.
func TestFencedBatchThatTellsNobodyMovesNothing(t *testing.T) {
	x := newPipe(t, 1)
	bs := x.batches(t, x.start, false, false)
	other, err := push.New(x.w.RDB, x.dir, x.env.sender, x.w.Store, push.Config{Prefix: x.w.Prefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Claim(x.ctx, x.part, x.token+1); err != nil {
		t.Fatal(err)
	}
	if err := x.p.Apply(x.ctx, bs[0]); err != nil {
		t.Fatalf("apply of a batch that tells nobody: %v", err)
	}
	// The bound is 1: this Apply waits until the advancer is done with the
	// first batch, and then finds it fenced.
	if err := x.p.Apply(x.ctx, bs[1]); !errors.Is(err, projectors.ErrFenced) {
		t.Fatalf("apply after the partition was claimed anew: %v, want ErrFenced", err)
	}
	if got := x.checkpoint(t); got != x.start {
		t.Fatalf("checkpoint %s after the fenced owner's batch, want %s", got, x.start)
	}
}

// TestMovedCheckpointStopsThePipeline: a checkpoint moved under pending
// batches (a reset) is found by the advancer, and the next Apply says so;
// a Claim then resumes from the stored checkpoint and the partition goes on.
func TestMovedCheckpointStopsThePipeline(t *testing.T) {
	x := newPipe(t, 1)
	bs := x.batches(t, x.start, true, true)
	if err := x.p.Apply(x.ctx, bs[0]); err != nil {
		t.Fatal(err)
	}
	key := redisckpt.New(x.w.RDB, x.w.Prefix, push.Name).Key(x.part)
	moved := eventstore.Position{Ms: 1}
	if err := x.w.RDB.HSet(x.ctx, key, "pos", moved.String()).Err(); err != nil {
		t.Fatal(err)
	}
	x.release()
	if err := x.p.Apply(x.ctx, bs[1]); !errors.Is(err, projectors.ErrCheckpointMoved) {
		t.Fatalf("apply after the checkpoint moved: %v, want ErrCheckpointMoved", err)
	}
	if got := x.checkpoint(t); got != moved {
		t.Fatalf("checkpoint %s, want it left at %s", got, moved)
	}
	if pos, err := x.p.Claim(x.ctx, x.part, x.token); err != nil || pos != moved {
		t.Fatalf("claim again: %s, %v; want %s", pos, err, moved)
	}
}

// TestClaimDropsPendingBatches: a Claim while batches are pending resumes
// from the stored checkpoint, before them; once their calls settle, the
// dropped batches move nothing, and applied again they do.
func TestClaimDropsPendingBatches(t *testing.T) {
	x := newPipe(t, 4)
	bs := x.batches(t, x.start, true, false)
	for _, b := range bs {
		if err := x.p.Apply(x.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if pos, err := x.p.Claim(x.ctx, x.part, x.token); err != nil || pos != x.start {
		t.Fatalf("claim with batches pending: %s, %v; want %s", pos, err, x.start)
	}
	x.release()
	// Submitting an empty batch and waiting for it settles every earlier
	// one: the dropped batches' calls are answered.
	last, err := x.sender.Submit(x.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.sender.Wait(x.ctx, last); err != nil {
		t.Fatal(err)
	}
	if got := x.checkpoint(t); got != x.start {
		t.Fatalf("checkpoint %s moved by dropped batches, want %s", got, x.start)
	}
	for _, b := range bs {
		if err := x.p.Apply(x.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	x.waitCheckpoint(t, bs[1].To)
}

// TestMaxPendingOutOfRangeIsRefused: the bound of pending batches must be
// 1..MaxMaxPending (0 takes the default).
func TestMaxPendingOutOfRangeIsRefused(t *testing.T) {
	e := newEnv(t, nil)
	for _, n := range []int{-1, push.MaxMaxPending + 1} {
		_, err := push.New(e.w.RDB, e.dir, e.sender, e.w.Store, push.Config{MaxPending: n})
		if want := "max pending batches must be 1..10000"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MaxPending %d: %v, want %q", n, err, want)
		}
	}
	for _, n := range []int{0, 1, push.MaxMaxPending} {
		if _, err := push.New(e.w.RDB, e.dir, e.sender, e.w.Store, push.Config{MaxPending: n}); err != nil {
			t.Errorf("MaxPending %d: %v", n, err)
		}
	}
}

// failWrites fails the next n checkpoint writes (advance.lua with a
// target) as a reset connection would, without sending them.
type failWrites struct {
	n, failed atomic.Int32
}

func (f *failWrites) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *failWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (f *failWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		name := cmd.Name()
		if (name == "evalsha" || name == "eval") && len(args) == 7 && args[6] != "" && f.n.Add(-1) >= 0 {
			f.failed.Add(1)
			err := &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

// TestTransientCheckpointWriteIsRetried: a checkpoint write that fails on
// the connection is tried again, and the partition's batches go on without
// a new claim.
func TestTransientCheckpointWriteIsRetried(t *testing.T) {
	x := newPipe(t, 4)
	hook := &failWrites{}
	rdb := redis.NewClient(&redis.Options{Addr: x.w.Addr})
	t.Cleanup(func() { rdb.Close() })
	rdb.AddHook(hook)
	p, err := push.New(rdb, x.dir, x.sender, x.w.Store, push.Config{Prefix: x.w.Prefix, Now: func() time.Time { return x.now }})
	if err != nil {
		t.Fatal(err)
	}
	if pos, err := p.Claim(x.ctx, x.part, x.token); err != nil || pos != x.start {
		t.Fatalf("claim: %s, %v; want %s", pos, err, x.start)
	}
	bs := x.batches(t, x.start, true, true)
	hook.n.Store(2)
	if err := p.Apply(x.ctx, bs[0]); err != nil {
		t.Fatal(err)
	}
	x.release()
	x.waitCheckpoint(t, bs[0].To)
	if n := hook.failed.Load(); n != 2 {
		t.Fatalf("%d checkpoint writes failed, want 2", n)
	}
	if err := p.Apply(x.ctx, bs[1]); err != nil {
		t.Fatalf("apply after the retried write: %v", err)
	}
	x.waitCheckpoint(t, bs[1].To)
}
