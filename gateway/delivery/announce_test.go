package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/delivery"
	"github.com/mpim/mpim/internal/inbox"
)

// changes returns the route changes appended so far, as "<device>
// <gateway> <route or deleted>", numbered from 1 without a gap. A change
// appended twice in a row counts once: a pipeline that met a script the
// server had lost runs again (Hub.pipeline), and the cache applies a
// repeated change as one.
func (e *env) changes(tb testing.TB) []string {
	tb.Helper()
	msgs, err := e.rdb.XRange(context.Background(), e.keys.RouteChanges(), "-", "+").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for i, m := range msgs {
		c, err := inbox.DecodeRouteChange(m.Values)
		if err != nil {
			tb.Fatal(err)
		}
		if c.Seq != uint64(i+1) {
			tb.Fatalf("change %d numbered %d", i+1, c.Seq)
		}
		what := "deleted"
		if !c.Deleted {
			what = c.Route.Encode()
		}
		if s := fmt.Sprint(c.Device, " ", c.Gateway, " ", what); len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

func TestRouteChangesAreAnnounced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	clk := newClock()
	a := e.hub(t, "gw-a", nil, func(c *delivery.Config) { c.Now = clk.Now; c.RouteRefresh = 20 * time.Millisecond })
	u := newUser()
	want := func(what string, changes ...string) {
		t.Helper()
		if got := e.changes(t); fmt.Sprint(got) != fmt.Sprint(changes) {
			t.Fatalf("%s: changes %q, want %q", what, got, changes)
		}
	}
	route := func(at time.Time) string {
		return inbox.Route{Gateway: "gw-a", Expires: at.Add(inbox.RouteTTL)}.Encode()
	}

	t0 := clk.Now()
	phone := a.attach(t, u, "phone", newSink())
	want("attach", "phone gw-a "+route(t0))
	phone.Detach(ctx, true)
	want("clean detach", "phone gw-a "+route(t0), "phone gw-a deleted")

	laptop := a.attach(t, u, "laptop", newSink())
	first := []string{"phone gw-a " + route(t0), "phone gw-a deleted", "laptop gw-a " + route(t0)}
	want("second attach", first...)
	heartbeat := func() time.Time {
		now := clk.Advance(time.Second)
		waitFor(t, "a heartbeat", nil, func() bool {
			r, _ := e.route(t, u, "laptop")
			return r.Expires.Equal(now.Add(inbox.RouteTTL))
		})
		return now
	}
	heartbeat()
	want("a heartbeat of a live route", first...)

	// The route vanished (the hash expired while heartbeats failed): the
	// next heartbeat writes it back and announces it.
	if err := e.rdb.Del(ctx, e.keys.Presence(u)).Err(); err != nil {
		t.Fatal(err)
	}
	t1 := clk.Now()
	t2 := heartbeat()
	// The revival is announced after the route is written (refreshRoutes),
	// and a heartbeat due before the clock moved may have revived it at t1.
	waitFor(t, "the revival's announcement", nil, func() bool { return len(e.changes(t)) > len(first) })
	revived := append(first, "laptop gw-a "+route(t2))
	if got := e.changes(t); got[len(got)-1] == "laptop gw-a "+route(t1) {
		revived = append(first, got[len(got)-1])
	}
	want("a heartbeat that revived the route", revived...)
	laptop.Detach(ctx, false)
	want("unclean detach", revived...)
}

func TestAttachFailsWhenTheRouteIsNotAnnounced(t *testing.T) {
	e := newEnv(t)
	a := e.hub(t, "gw-a", nil, nil)
	if err := e.rdb.Set(context.Background(), e.keys.RouteChanges(), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := a.Attach(context.Background(), newUser(), "phone", newSink())
	if domain.ErrorCode(err) != domain.EUnavailable {
		t.Fatalf("attach without an announced route: %v, want EUnavailable", err)
	}
}
