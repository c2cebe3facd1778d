package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/testsvc"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/query"
)

// Sizes of the readers test: the live model holds base messages of the
// direct conversation (and base/groupShare of the group's) when the replay
// starts; ahead more are written meanwhile, which only the rebuilt model
// holds when it is swapped in (the live projector is held back), so the
// swap moves every reader forward by a known step; after more are written
// once the live projector runs again.
const (
	readersBase  = 300
	readersAhead = 100
	readersAfter = 40
	groupShare   = 3
	readers      = 3
	maxRounds    = 20_000 // per reader
	historyPage  = 20
)

// TestReplaySwapUnderReaders runs `mpimctl replay mysql` (build and swap)
// while readers page a conversation's history and list the conversations
// through query.Service, the read path clients use. The rebuilt model is
// ahead of the live one when it is swapped in. Every reader checks, round
// after round, that what it sees never steps back (a conversation's last
// seq, read alternately from the conversation list and from its history,
// never decreases) and never mixes tables (a listed conversation has its
// messages, with the peer's or the group's name, unread counts that match,
// and history pages of the known texts without gaps), and that no read
// fails. Readers see the old model, then the new one.
func TestReplaySwapUnderReaders(t *testing.T) { replayUnderReaders(t, true) }

// TestReplaySwapUnderReadersAndWrites is TestReplaySwapUnderReaders with
// the live projector running and ben writing all through the replay: the
// live model moves on while the new one is built, and the swap must catch
// up with it (under the pause) so that no reader steps back.
func TestReplaySwapUnderReadersAndWrites(t *testing.T) { replayUnderReaders(t, false) }

// maxWrites bounds the messages written during the replay when the live
// projector runs, writePace spaces them: enough to last through a replay
// on a loaded machine without flooding it.
const (
	maxWrites = 3000
	writePace = 5 * time.Millisecond
)

func replayUnderReaders(t *testing.T, holdLive bool) {
	w := newReplayWorld(t)
	w.send(t, w.direct, readersBase)
	w.send(t, w.group, readersBase/groupShare)
	dsn, db := modelDB(t)
	live := startLive(t, w.env.Store, db)
	live.waitCaughtUp(t, w.env.Store)
	qs, err := query.New(db, w.env.RDB, query.Config{Prefix: w.env.Prefix})
	if err != nil {
		t.Fatal(err)
	}

	gateOpen := true
	if holdLive {
		// Hold the live projector back while the log grows: the rebuild
		// will be ahead of it by readersAhead messages.
		live.proj.gate.Lock()
		gateOpen = false
		defer func() {
			if !gateOpen {
				live.proj.gate.Unlock()
			}
		}()
		w.send(t, w.direct, readersAhead)
		w.send(t, w.group, readersAhead/groupShare)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopReaders := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopReaders()
	rs := make([]*reader, readers)
	for i := range rs {
		rs[i] = &reader{w: w, qs: qs}
		wg.Go(func() { rs[i].run(ctx, t, stop) })
	}
	// Let every reader see the old model first.
	testsvc.Eventually(t, time.Minute, "every reader to read the old model", func() bool {
		for _, r := range rs {
			if r.rounds.Load() == 0 && !t.Failed() {
				return false
			}
		}
		return true
	})
	if t.Failed() {
		return
	}
	stopWriting := func() int { return 0 }
	if !holdLive {
		stopWriting = writeDuring(t, w)
	}

	var out, errOut bytes.Buffer
	err = run(ctx, append(append([]string{"replay", "--batch-size", "25", "--parallelism", "2"}, w.flags(dsn)...), "mysql"), &out, &errOut)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, errOut.String())
	}
	t.Logf("replay: %s; %d messages written during it", bytes.TrimSpace(out.Bytes()), stopWriting())
	if holdLive {
		// The swapped-in model holds what the live one did not.
		testsvc.Eventually(t, time.Minute, "every reader to read the swapped-in model", func() bool {
			for _, r := range rs {
				if r.high(w.direct) < readersBase+readersAhead && !t.Failed() {
					return false
				}
			}
			return true
		})
		if t.Failed() {
			return
		}
		// Let the live projector go on from the rebuilt checkpoints.
		live.proj.gate.Unlock()
		gateOpen = true
	}
	w.send(t, w.direct, readersAfter)
	w.send(t, w.group, readersAfter/groupShare)
	live.waitCaughtUp(t, w.env.Store)
	stopReaders()

	for i, r := range rs {
		t.Logf("reader %d: %d rounds, direct seq %d..%d, group seq %d..%d", i, r.rounds.Load(),
			r.low[w.direct], r.high(w.direct), r.low[w.group], r.high(w.group))
		if r.low[w.direct] != readersBase {
			t.Errorf("reader %d first saw the direct conversation at seq %d, want the old model's %d", i, r.low[w.direct], readersBase)
		}
	}
	if t.Failed() {
		return
	}
	// A last round after the live projector caught up sees everything.
	final := &reader{w: w, qs: qs}
	final.round(ctx, t)
	for _, conv := range []domain.ConversationID{w.direct, w.group} {
		if got, want := final.high(conv), w.lastSent(conv); got != want {
			t.Errorf("%s: last seq %d after the replay and the live projector, want %d", conv, got, want)
		}
	}
}

// writeDuring has ben write to both conversations in the background, one
// message at a time, until the returned function is called (it returns
// how many were written) or maxWrites were.
func writeDuring(t *testing.T, w *replayWorld) func() int {
	done := make(chan struct{})
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range maxWrites {
			select {
			case <-done:
				return
			default:
			}
			conv := w.direct
			if i%groupShare == 0 {
				conv = w.group
			}
			if err := w.sendOne(conv); err != nil {
				t.Errorf("writing during the replay: %v", err)
				return
			}
			n.Add(1)
			time.Sleep(writePace)
		}
	})
	return sync.OnceValue(func() int {
		close(done)
		wg.Wait()
		return int(n.Load())
	})
}

// reader reads as a client does and checks what it sees.
type reader struct {
	w      *replayWorld
	qs     *query.Service
	rounds atomic.Int64
	mu     sync.Mutex
	last   map[domain.ConversationID]uint64 // highest last seq seen
	low    map[domain.ConversationID]uint64 // first last seq seen
}

// run reads rounds until stop is closed (or a bound is reached), failing t
// at the first inconsistency.
func (r *reader) run(ctx context.Context, t *testing.T, stop <-chan struct{}) {
	for range maxRounds {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if !r.round(ctx, t) {
			return
		}
	}
}

func (r *reader) high(conv domain.ConversationID) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[conv]
}

// saw records a conversation's last seq read from what (the list or the
// history) and reports a step back.
func (r *reader) saw(t *testing.T, conv domain.ConversationID, what string, seq uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last, r.low = map[domain.ConversationID]uint64{}, map[domain.ConversationID]uint64{}
	}
	if _, ok := r.low[conv]; !ok {
		r.low[conv] = seq
	}
	if seq < r.last[conv] {
		t.Errorf("%s stepped back: %s says last seq %d after %d was seen", conv, what, seq, r.last[conv])
		return false
	}
	r.last[conv] = seq
	return true
}

// round reads the conversation list, both histories and the list again;
// false if it found something wrong (t has been told).
func (r *reader) round(ctx context.Context, t *testing.T) bool {
	convs := []domain.ConversationID{r.w.direct, r.w.group}
	if !r.checkList(ctx, t, "the conversation list") {
		return false
	}
	for _, conv := range convs {
		if !r.checkHistory(ctx, t, conv) {
			return false
		}
	}
	if !r.checkList(ctx, t, "the conversation list read again") {
		return false
	}
	r.rounds.Add(1)
	return true
}

// checkList lists ann's conversations: both are there, with their titles
// from the users and groups tables and every message unread (ann reads
// nothing, ben wrote them all).
func (r *reader) checkList(ctx context.Context, t *testing.T, what string) bool {
	list, err := r.qs.Conversations(ctx, r.w.ann.User, domain.ConversationsPage{Limit: 10})
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return false
	}
	found := map[domain.ConversationID]*mpimv1.ConversationSummary{}
	for _, c := range list.GetConversations() {
		found[domain.ConversationID(c.GetConversationId())] = c
	}
	for conv, title := range map[domain.ConversationID]string{r.w.direct: "Ben", r.w.group: groupName} {
		c := found[conv]
		switch {
		case c == nil:
			t.Errorf("%s lacks %s (%d listed)", what, conv, len(found))
			return false
		case c.GetTitle() != title:
			t.Errorf("%s: %s titled %q, want %q", what, conv, c.GetTitle(), title)
			return false
		case uint64(c.GetUnreadCount()) != c.GetLastSeq():
			t.Errorf("%s: %s has %d unread of last seq %d, want all unread", what, conv, c.GetUnreadCount(), c.GetLastSeq())
			return false
		}
		if !r.saw(t, conv, what, c.GetLastSeq()) {
			return false
		}
	}
	return true
}

// checkHistory reads the last page of conv's history: consecutive seqs,
// each with its known text, by ben, the last one not behind what was seen.
func (r *reader) checkHistory(ctx context.Context, t *testing.T, conv domain.ConversationID) bool {
	h, err := r.qs.History(ctx, r.w.ann.User, domain.HistoryPage{Conversation: conv, Limit: historyPage})
	if err != nil {
		t.Errorf("history of %s: %v", conv, err)
		return false
	}
	msgs := h.GetMessages()
	if len(msgs) != historyPage {
		t.Errorf("history of %s: %d messages, want a full page of %d", conv, len(msgs), historyPage)
		return false
	}
	last := msgs[len(msgs)-1].GetSeq()
	for i, m := range msgs {
		want := last - uint64(len(msgs)-1-i)
		if m.GetSeq() != want || m.GetText() != msgText(conv, want) || m.GetSenderId() != string(r.w.ben.User) {
			t.Errorf("history of %s: message %d is seq %d %q by %s, want seq %d %q by ben", conv, i, m.GetSeq(), m.GetText(), m.GetSenderId(), want, msgText(conv, want))
			return false
		}
	}
	return r.saw(t, conv, fmt.Sprintf("its history (page ending at %d)", last), last)
}
