package stacktest

import (
	"context"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/prometheus/client_golang/prometheus"
)

// A device that attaches after the inbox projector cached its user as
// offline gets its next message by the notification, not by the position
// check (which runs once an hour here): the attach announced its route, and
// the projector read the announcement with the batch that wrote the entry.
func TestFreshlyAttachedDeviceIsNotifiedWithoutTheRepair(t *testing.T) {
	e, svc := writePath(t)
	h, err := delivery.New(e.rdb, delivery.Config{Prefix: e.prefix, GatewayID: "gw-a", PollInterval: time.Hour,
		AckTimeout: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	gatewaytest.Go(t, "hub gw-a", h.Run)
	ctx := context.Background()
	alice, bob := register(t, svc, "alice"), register(t, svc, "bob")
	_, watch := attach(t, h, alice.User, "watch")
	if _, err := svc.Contact(ctx, alice, bob.User, domain.RequestFriend{From: alice.User, To: bob.User}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Contact(ctx, bob, alice.User, domain.AcceptFriend{By: bob.User}); err != nil {
		t.Fatal(err)
	}
	waitPushes(t, "alice's watch sees the friendship", watch, 2) // bob was offline: the projector cached him so
	time.Sleep(100 * time.Millisecond)                           // the hub's check at subscription is long over

	_, phone := attach(t, h, bob.User, "phone")
	conv := domain.DirectConversation(alice.User, bob.User)
	if _, err := svc.Send(ctx, alice, domain.SendMessage{Conversation: conv, Kind: domain.KindText, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	waitPushes(t, "bob's new phone gets the message", phone, 1)
}

// waitPushes waits up to 10 seconds for r to hold n first pushes.
func waitPushes(tb testing.TB, what string, r *recorder, n int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.firsts()) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %d pushes after 10s, want %d", what, len(r.firsts()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
