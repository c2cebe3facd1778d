package gateway_test

import (
	"bytes"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// logBuffer is an io.Writer safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Numbers out of their range are answered invalid where they enter, so they
// never reach the log (where they stopped the MySQL projector) or a query
// (where they were answered unavailable and logged).
func TestOutOfRangeNumbersAreInvalid(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		logs := &logBuffer{}
		e := gatewaytest.New(t, func(_ *gateway.Config, d *gateway.Deps) {
			d.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		a, b := e.Login(t, enc, "ann"), e.Login(t, enc, "ben")
		conv := gatewaytest.OK(t, a.Conn, gatewaytest.SendTo(b.ID, "hello", "")).GetSend().GetConversationId()
		const year10000 = 253402300800000

		t.Run("mutes end after now and at most a year ahead", func(t *testing.T) {
			g := gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.ID}}}).GetCreateGroup()
			mute := func(untilMs int64) *mpimv1.ClientFrame_MuteMember {
				return &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: g.GetGroupId(), UserId: b.ID, UntilMs: untilMs}}
			}
			now := e.Clock.Now()
			for _, ms := range []int64{year10000, math.MaxInt64, math.MinInt64, -1, now.Add(-time.Minute).UnixMilli(),
				now.Add(366 * 24 * time.Hour).UnixMilli()} {
				gatewaytest.Fails(t, a.Conn, "invalid", mute(ms))
			}
			gatewaytest.OK(t, a.Conn, mute(now.Add(300*24*time.Hour).UnixMilli()))
			gatewaytest.OK(t, a.Conn, mute(0)) // indefinitely
		})

		t.Run("message seqs are at most the conversation's last", func(t *testing.T) {
			for _, seq := range []uint64{0, 2, math.MaxUint64} {
				gatewaytest.Fails(t, b.Conn, "invalid", &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: seq}})
				gatewaytest.Fails(t, b.Conn, "invalid", &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: seq}})
				gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: seq}})
				gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: seq, Text: "x"}})
			}
			gatewaytest.OK(t, b.Conn, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		})

		t.Run("query arguments out of range are invalid", func(t *testing.T) {
			for _, req := range []*mpimv1.ConversationsRequest{
				{BeforeMs: math.MaxInt64}, {BeforeMs: math.MinInt64}, {BeforeMs: -1}, {BeforeMs: year10000},
				{Limit: 201}, {Limit: math.MaxUint32}, {BeforeMs: 1, BeforeConversationId: "d/nonsense"},
			} {
				gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_Conversations{Conversations: req})
			}
			for _, req := range []*mpimv1.HistoryRequest{
				{ConversationId: conv, FromSeq: math.MaxUint64},
				{ConversationId: conv, FromSeq: math.MaxUint64, Direction: mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD},
				{ConversationId: conv, Limit: 201},
				{ConversationId: conv, Direction: mpimv1.HistoryDirection(7)},
			} {
				gatewaytest.Fails(t, a.Conn, "invalid", &mpimv1.ClientFrame_History{History: req})
			}
			gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{BeforeMs: e.Clock.Now().UnixMilli(), Limit: 200}})
			gatewaytest.OK(t, a.Conn, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: 1<<53 - 1, Limit: 200}})
		})

		gatewaytest.Ping(t, a.Conn)
		if l := logs.String(); l != "" {
			t.Errorf("bad input was logged as a failure:\n%s", l)
		}
	})
}
