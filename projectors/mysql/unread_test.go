package mysql

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// TestUnreadCountsUnderConcurrentSendsAndReads has several users send and
// mark read concurrently, in direct conversations and a group, while the
// projector runs: messages and read markers land in different partitions,
// so their updates of user_conversations interleave in every order. At all
// times unread_count = max(last_seq - read_seq, 0); at the end every row has
// the conversation's last seq and the highest of the user's read markers
// and own messages.
func TestUnreadCountsUnderConcurrentSendsAndReads(t *testing.T) {
	ctx := context.Background()
	env := newLogEnv(t, 8)
	sc := newScenario(ctx, t, env.svc, 6, 0)
	var everyone []domain.UserID
	for _, u := range sc.users {
		everyone = append(everyone, u.User)
	}
	g := env.createGroup(t, sc.users[0], "all", everyone, false)
	db := openTestDB(t)
	rm := testReadModel(t, db, Config{})
	w := &watched{Projector: rm}
	r := startRunner(t, env.store, w, 7)

	type key struct {
		user domain.UserID
		conv domain.ConversationID
	}
	var mu sync.Mutex
	lastSeq := map[domain.ConversationID]uint64{}
	readSeq := map[key]uint64{}
	convsOf := func(u command.Actor) []domain.ConversationID {
		cs := []domain.ConversationID{domain.GroupConversation(g)}
		for _, o := range sc.users {
			if o.User != u.User {
				cs = append(cs, domain.DirectConversation(u.User, o.User))
			}
		}
		return cs
	}

	stopCheck := make(chan struct{})
	checked := make(chan int)
	go func() {
		n := 0
		defer func() { checked <- n }()
		for {
			select {
			case <-stopCheck:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if bad := count(t, db, readmodel.UserConversations, "unread_count <> IF(last_seq > read_seq, last_seq - read_seq, 0)"); bad != 0 {
				t.Errorf("%d rows with a wrong unread count while projecting", bad)
				return
			}
			n++
		}
	}()

	var wg sync.WaitGroup
	for i, u := range sc.users {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 9))
			convs := convsOf(u)
			for range 80 {
				conv := convs[rng.IntN(len(convs))]
				k := key{u.User, conv}
				if rng.IntN(10) < 6 {
					s, err := env.svc.Send(ctx, u, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "x"})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					lastSeq[conv] = max(lastSeq[conv], s.Seq)
					readSeq[k] = max(readSeq[k], s.Seq)
					mu.Unlock()
					continue
				}
				mu.Lock()
				seq := lastSeq[conv]
				mu.Unlock()
				lastSent := seq
				if seq == 0 {
					continue
				}
				seq = 1 + rng.Uint64N(seq+2) // sometimes beyond the last message
				_, err := env.svc.MarkRead(ctx, u, conv, seq)
				if domain.ErrorCode(err) == domain.EInvalid && seq > lastSent {
					continue // beyond the last message unless someone sent meanwhile
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				readSeq[k] = max(readSeq[k], seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitCaughtUp(t, env.store, rm.Checkpoints)
	r.stop(t)
	close(stopCheck)
	t.Logf("invariant checked %d times while projecting", <-checked)
	w.check(t)

	rows := 0
	for _, u := range sc.users {
		for _, conv := range convsOf(u) {
			last := lastSeq[conv]
			read := readSeq[key{u.User, conv}]
			var gotLast, gotRead, gotUnread uint64
			err := db.QueryRow("SELECT last_seq, read_seq, unread_count FROM user_conversations WHERE user_id = ? AND conversation_id = ?",
				string(u.User), string(conv)).Scan(&gotLast, &gotRead, &gotUnread)
			if last == 0 && read == 0 {
				continue // the group row exists with zeros; a silent direct pair has none
			}
			if err != nil {
				t.Fatalf("%s in %s: %v", u.User, conv, err)
			}
			rows++
			wantUnread := uint64(0)
			if last > read {
				wantUnread = last - read
			}
			if gotLast != last || gotRead != read || gotUnread != wantUnread {
				t.Errorf("%s in %s: last %d read %d unread %d, want %d %d %d", u.User, conv, gotLast, gotRead, gotUnread, last, read, wantUnread)
			}
		}
	}
	t.Logf("%d conversation rows checked", rows)
}
