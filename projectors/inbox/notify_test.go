package inbox_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	delivery "github.com/mpim/mpim/internal/inbox"
	"github.com/mpim/mpim/projectors/inbox"
	"github.com/prometheus/client_golang/prometheus"
)

// carriedHead returns the head of u's inbox carrying its entries after
// prev, as a notification carries them.
func carriedHead(t *testing.T, e *env, u domain.UserID, prev string) delivery.Head {
	t.Helper()
	h := delivery.Head{User: u, Prev: prev}
	for _, en := range e.inbox(t, u) {
		if !after(en.id, prev) {
			continue
		}
		h.Entries = append(h.Entries, delivery.Carried{ID: en.id, Entry: en.Entry})
		h.Last = en.id
	}
	return h
}

// after reports whether stream id a is after b.
func after(a, b string) bool {
	var am, as, bm, bs uint64
	fmt.Sscanf(a, "%d-%d", &am, &as)
	fmt.Sscanf(b, "%d-%d", &bm, &bs)
	return am > bm || am == bm && as > bs
}

func TestOversizeNotificationFallsBackToHeads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, p := groupChat(t, e, "alice", "bob", "carol")
	live := time.Now().Add(time.Hour)
	for _, u := range users {
		e.route(t, u, "phone", "gw-1", live)
	}
	channels := []string{e.keys.Notify("gw-1")}
	sub := e.rdb.Subscribe(ctx, channels...)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range users {
		e.say(t, users[i], gid, fmt.Sprintf("message %d", i))
	}
	reg := prometheus.NewRegistry()
	proj := e.projector(t, inbox.Config{NotifyBytes: 1, Registerer: reg})
	if _, err := proj.Claim(ctx, p, 1); err != nil {
		t.Fatal(err)
	}
	if err := proj.Apply(ctx, e.batch(t, p, 1, eventstore.Position{})); err != nil {
		t.Fatal(err)
	}
	got := drain(t, e, sub, channels)
	var heads []delivery.Head
	for _, u := range users {
		heads = append(heads, delivery.Head{User: u.User, Last: lastInboxID(t, e, u.User)})
	}
	want := map[string][]delivery.Notification{channels[0]: {{Users: sortHeads(heads...)}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("notifications\n%+v\nwant heads only\n%+v", got, want)
	}
	if n := counter(t, reg, "mpim_inbox_notification_heads_only_total"); n != 3 {
		t.Fatalf("heads-only metric %v, want 3", n)
	}
	if _, err := inbox.New(e.rdb, inbox.Config{NotifyBytes: delivery.MaxNotificationBytes + 1}); err == nil {
		t.Fatal("a notification bound over the decoder's limit was accepted")
	}
}

// TestEachGatewayGetsItsOwnPayload checks that the notifications of one
// batch to several gateways, encoded into pooled buffers, each reach their
// gateway intact: a buffer returned to the pool before the pipeline that
// publishes it has run would carry the next gateway's heads instead. The
// payloads are the same size (one user each, the same entries), so the
// next one fits in the buffer of the one before; several batches, because
// the race detector's pool drops some buffers at random.
func TestEachGatewayGetsItsOwnPayload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	users, gid, p := groupChat(t, e, "alice", "bob", "carol")
	live := time.Now().Add(time.Hour)
	gateways := []string{"gw-1", "gw-2", "gw-3"}
	channels := make([]string, len(users))
	for i, u := range users {
		e.route(t, u, "phone", gateways[i], live)
		channels[i] = e.keys.Notify(gateways[i])
	}
	sub := e.rdb.Subscribe(ctx, channels...)
	defer sub.Close()
	for range channels {
		if _, err := sub.Receive(ctx); err != nil { // the subscription confirmations
			t.Fatal(err)
		}
	}
	proj := e.projector(t, inbox.Config{})
	const token = 3
	if _, err := proj.Claim(ctx, p, token); err != nil {
		t.Fatal(err)
	}
	var after eventstore.Position
	prev := map[domain.UserID]string{}
	for _, u := range users {
		prev[u.User] = "0-0"
	}
	for round := range 8 {
		e.say(t, users[round%len(users)], gid, fmt.Sprintf("round %d", round))
		b := e.batch(t, p, token, after)
		if err := proj.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		after = b.To
		got := drain(t, e, sub, channels)
		want := map[string][]delivery.Notification{}
		for i, u := range users {
			h := carriedHead(t, e, u.User, prev[u.User])
			want[channels[i]] = []delivery.Notification{{Users: []delivery.Head{h}}}
			prev[u.User] = h.Last
		}
		for _, ch := range channels {
			if !reflect.DeepEqual(got[ch], want[ch]) {
				t.Fatalf("round %d: %s got the heads of %v, want those of %v", round, ch, headUsers(got[ch]), headUsers(want[ch]))
			}
		}
	}
}

// headUsers lists the users of ns' heads.
func headUsers(ns []delivery.Notification) []domain.UserID {
	var us []domain.UserID
	for _, n := range ns {
		for _, h := range n.Users {
			us = append(us, h.User)
		}
	}
	return us
}
