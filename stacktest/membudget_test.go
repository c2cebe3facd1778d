package stacktest

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// gaugeValue returns a gauge's value (0 if it does not exist).
func gaugeValue(tb testing.TB, e *env, name string) float64 {
	tb.Helper()
	return gatewaytest.Metric(tb, e.Registry, name, "", "").GetGauge().GetValue()
}

// bigConversation makes two friends, a and b, and n messages of about
// size bytes each from a to b, projected; it returns a, b and the
// conversation id.
func bigConversation(tb testing.TB, e *env, n, size int) (*gatewaytest.User, *gatewaytest.User, string) {
	tb.Helper()
	a, b := e.Login(tb, frame.Proto, "amy"), e.Login(tb, frame.Proto, "bob")
	gatewaytest.OK(tb, a.Conn, &mpimv1.ClientFrame_RequestFriend{RequestFriend: &mpimv1.RequestFriendRequest{UserId: b.ID}})
	gatewaytest.OK(tb, b.Conn, &mpimv1.ClientFrame_AcceptFriend{AcceptFriend: &mpimv1.AcceptFriendRequest{UserId: a.ID}})
	for i := range n {
		gatewaytest.OK(tb, a.Conn, gatewaytest.SendTo(b.ID, strconv.Itoa(i)+strings.Repeat("x", size), ""))
	}
	e.project(tb)
	return a, b, gatewaytest.DirectOf(a.ID, b.ID)
}

func historyReq(conv string, from uint64, dir mpimv1.HistoryDirection, limit uint32) *mpimv1.ClientFrame_History {
	return &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: from, Direction: dir, Limit: limit}}
}

func TestClientThatDoesNotReadIsBoundedByBytes(t *testing.T) {
	const budget, hard = 256 << 10, 1 << 20
	for _, tc := range []struct {
		name  string
		drain time.Duration
	}{
		{"its requests wait while its queue is over the budget", time.Hour},
		{"it is closed when its queue does not drain in time", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) {
				c.OutboxBytes, c.OutboxHardBytes, c.OutboxDrainTimeout = budget, hard, tc.drain
				c.WriteTimeout = time.Hour // the byte budget, not the write timeout, must act
				c.RequestTimeout = time.Minute
			})
			a, b, conv := bigConversation(t, e, 16, 15<<10) // pages of about 240 KiB
			// a's second device asks for history 400 times and never reads.
			c, err := gatewaytest.Dial(gatewaytest.Ctx(t), e.URL, frame.Proto, &gatewaytest.Options{Buffer: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.CloseNow() })
			gatewaytest.OK(t, c, gatewaytest.LoginReq("amy", "password-amy", "d2"))
			sent := 0
			for i := range 400 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Send(ctx, &mpimv1.ClientFrame{Id: uint64(1000 + i), Request: historyReq(conv, 0, 0, 50)})
				cancel()
				if err != nil {
					break // the gateway stopped reading or closed the connection
				}
				sent++
			}
			if tc.drain == time.Hour {
				gatewaytest.Eventually(t, "the reader to wait", func() bool {
					return gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_read_pauses_total", "", "") >= 1
				})
			} else {
				gatewaytest.Eventually(t, "the slow client's close", func() bool {
					return gatewaytest.CounterValue(t, e.Registry, "mpim_gateway_disconnects_total", "reason", "slow_client") >= 1
				})
			}
			if peak := gaugeValue(t, e, "mpim_gateway_outbox_peak_bytes"); peak == 0 || peak > hard {
				t.Fatalf("a connection had %v bytes queued; the hard bound is %d (after %d requests)", peak, hard, sent)
			}
			// Others are served meanwhile.
			gatewaytest.Ping(t, b.Conn)
			if h := gatewaytest.OK(t, a.Conn, historyReq(conv, 0, 0, 2)).GetHistory(); len(h.GetMessages()) != 2 {
				t.Fatalf("history %v", h)
			}
		})
	}
}

func TestHistoryPagesAreCappedByBytes(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.HistoryPageBytes = 40 << 10 })
	a, _, conv := bigConversation(t, e, 7, 15<<10) // two messages per page
	for _, dir := range []mpimv1.HistoryDirection{mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD, mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD} {
		t.Run(dir.String(), func(t *testing.T) {
			seen := map[uint64]bool{}
			var from uint64
			pages := 0
			for more := true; more; pages++ {
				if pages > 10 {
					t.Fatal("more than 10 pages")
				}
				h := gatewaytest.OK(t, a.Conn, historyReq(conv, from, dir, 50)).GetHistory()
				ms := h.GetMessages()
				if len(ms) == 0 || len(ms) > 2 {
					t.Fatalf("page %d: %d messages (hasMore %v), want 1 or 2", pages, len(ms), h.GetHasMore())
				}
				for _, m := range ms {
					if seen[m.GetSeq()] {
						t.Fatalf("seq %d twice", m.GetSeq())
					}
					seen[m.GetSeq()] = true
				}
				more = h.GetHasMore()
				if dir == mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD {
					from = ms[len(ms)-1].GetSeq()
				} else {
					from = ms[0].GetSeq()
				}
			}
			for seq := uint64(1); seq <= 7; seq++ {
				if !seen[seq] {
					t.Fatalf("seq %d missing (pages: %d)", seq, pages)
				}
			}
			if pages != 4 {
				t.Fatalf("%d pages, want 4", pages)
			}
		})
	}
}

func TestHeavyQueriesCostMoreTokensThanPings(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.ConnRate, c.ConnBurst, c.HeavyQueryCost = 0.01, 20, 10 })
	a := e.Login(t, frame.Proto, "carl") // 2 of the 20 tokens
	conv := gatewaytest.DirectOf(a.ID, e.Login(t, frame.Proto, "cleo").ID)
	gatewaytest.OK(t, a.Conn, historyReq(conv, 0, 0, 200)) // 10
	er := gatewaytest.Fails(t, a.Conn, "rate_limited", historyReq(conv, 0, 0, 200))
	if er.GetRetryAfterMs() == 0 {
		t.Fatalf("rate_limited without retryAfterMs: %v", er)
	}
	for range 8 { // the 8 tokens left serve pings
		gatewaytest.Ping(t, a.Conn)
	}
	gatewaytest.Fails(t, a.Conn, "rate_limited", gatewaytest.PingReq)
}

func TestHeavyQueriesInFlightPerUserAreBounded(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.HeavyInFlightPerUser, c.RequestTimeout = 2, time.Minute })
	a, other := e.Login(t, frame.Proto, "dora"), e.Login(t, frame.Proto, "eric")
	conv := gatewaytest.DirectOf(a.ID, other.ID)
	conns := []*gatewaytest.Client{a.Conn}
	for _, dev := range []string{"d2", "d3"} {
		c := e.Dial(t, frame.Proto)
		gatewaytest.OK(t, c, gatewaytest.LoginReq("dora", "password-dora", dev))
		conns = append(conns, c)
	}
	gatewaytest.OK(t, other.Conn, historyReq(conv, 0, 0, 10))

	// Hold the history query in MySQL: the messages table is locked.
	ctx := gatewaytest.Ctx(t)
	lock, err := e.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, "LOCK TABLES messages WRITE"); err != nil {
		t.Fatal(err)
	}
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
				t.Error(err)
			}
		}
	}
	defer unlock()

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, c := range conns[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Call(ctx, historyReq(conv, 0, 0, 10))
			if err == nil && r.GetError() != nil {
				err = &callError{r.GetError()}
			}
			errs <- err
		}()
	}
	gatewaytest.Eventually(t, "two heavy queries in flight", func() bool {
		return gaugeValue(t, e, "mpim_gateway_heavy_queries_in_flight") == 2
	})
	er := gatewaytest.Fails(t, conns[2], "rate_limited", historyReq(conv, 0, 0, 10))
	if er.GetRetryAfterMs() == 0 || !strings.Contains(er.GetMessage(), "being answered") {
		t.Fatalf("over the bound: %v", er)
	}
	gatewaytest.Ping(t, conns[2]) // light requests are not bounded
	unlock()
	wg.Wait()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("a query in flight: %v", err)
		}
	}
	gatewaytest.OK(t, conns[2], historyReq(conv, 0, 0, 10))
}

type callError struct{ e *mpimv1.Error }

func (c *callError) Error() string { return c.e.GetCode() + ": " + c.e.GetMessage() }

func TestNothingStaysAfterSessionsEnd(t *testing.T) {
	e := newEnv(t)
	a, b, conv := bigConversation(t, e, 3, 1<<10)
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, gatewaytest.LoginReq("amy", "password-amy", "d2"))
	for _, cl := range []*gatewaytest.Client{a.Conn, b.Conn, c} {
		gatewaytest.OK(t, cl, historyReq(conv, 0, 0, 10))
		gatewaytest.OK(t, cl, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{}})
	}
	if e.Server.UsersHeld() != 2 {
		t.Fatalf("%d users held with two logged in", e.Server.UsersHeld())
	}
	for _, cl := range []*gatewaytest.Client{a.Conn, b.Conn, c} {
		cl.Close()
	}
	gatewaytest.Eventually(t, "every session to end", func() bool { return e.Server.Load() == 0 })
	if n := e.Server.UsersHeld(); n != 0 {
		t.Fatalf("%d users' limits held after every session ended", n)
	}
	for _, g := range []string{"mpim_gateway_outbox_bytes", "mpim_gateway_heavy_queries_in_flight", "mpim_gateway_sessions"} {
		if v := gaugeValue(t, e, g); v != 0 {
			t.Fatalf("%s = %v after every session ended", g, v)
		}
	}
	if gaugeValue(t, e, "mpim_gateway_outbox_peak_bytes") == 0 {
		t.Fatal("the outbox peak was not recorded")
	}
}

// A page is read from MySQL in growing chunks (32 rows, then more): pages
// longer than a chunk come whole, gapless and in order, in both directions,
// with hasMore exactly when messages are left.
func TestHistoryPagesLongerThanAChunk(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.ConnRate, c.ConnBurst, c.UserRate, c.UserBurst = 1000, 1000, 1000, 1000
	})
	a, _, conv := bigConversation(t, e, 100, 10)
	back, fwd := mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD, mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD
	for _, tc := range []struct {
		from    uint64
		dir     mpimv1.HistoryDirection
		limit   uint32
		first   uint64
		last    uint64
		hasMore bool
	}{
		{0, back, 70, 31, 100, true},
		{31, back, 70, 1, 30, false},
		{0, fwd, 200, 1, 100, false},
		{0, fwd, 70, 1, 70, true},
		{70, fwd, 70, 71, 100, false},
		{0, back, 100, 1, 100, false},
	} {
		h := gatewaytest.OK(t, a.Conn, historyReq(conv, tc.from, tc.dir, tc.limit)).GetHistory()
		ms := h.GetMessages()
		if uint64(len(ms)) != tc.last-tc.first+1 || h.GetHasMore() != tc.hasMore {
			t.Fatalf("%v from %d limit %d: %d messages, hasMore %v; want %d..%d, hasMore %v",
				tc.dir, tc.from, tc.limit, len(ms), h.GetHasMore(), tc.first, tc.last, tc.hasMore)
		}
		for i, m := range ms {
			if m.GetSeq() != tc.first+uint64(i) {
				t.Fatalf("%v from %d limit %d: message %d has seq %d, want %d", tc.dir, tc.from, tc.limit, i, m.GetSeq(), tc.first+uint64(i))
			}
		}
	}
}
