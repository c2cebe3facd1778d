package gateway_test

import (
	"bytes"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
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
	encodings(t, func(t *testing.T, enc frame.Encoding) {
		logs := &logBuffer{}
		e := newEnv(t, func(_ *gateway.Config, d *gateway.Deps) {
			d.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
		a, b := e.login(t, enc, "ann"), e.login(t, enc, "ben")
		conv := ok(t, a.c, sendTo(b.id, "hello", "")).GetSend().GetConversationId()
		const year10000 = 253402300800000

		t.Run("mutes end after now and at most a year ahead", func(t *testing.T) {
			g := ok(t, a.c, &mpimv1.ClientFrame_CreateGroup{CreateGroup: &mpimv1.CreateGroupRequest{Name: "team", MemberIds: []string{b.id}}}).GetCreateGroup()
			mute := func(untilMs int64) *mpimv1.ClientFrame_MuteMember {
				return &mpimv1.ClientFrame_MuteMember{MuteMember: &mpimv1.MuteMemberRequest{GroupId: g.GetGroupId(), UserId: b.id, UntilMs: untilMs}}
			}
			now := e.clock.Now()
			for _, ms := range []int64{year10000, math.MaxInt64, math.MinInt64, -1, now.Add(-time.Minute).UnixMilli(),
				now.Add(366 * 24 * time.Hour).UnixMilli()} {
				fails(t, a.c, "invalid", mute(ms))
			}
			ok(t, a.c, mute(now.Add(300*24*time.Hour).UnixMilli()))
			ok(t, a.c, mute(0)) // indefinitely
		})

		t.Run("message seqs are at most the conversation's last", func(t *testing.T) {
			for _, seq := range []uint64{0, 2, math.MaxUint64} {
				fails(t, b.c, "invalid", &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: seq}})
				fails(t, b.c, "invalid", &mpimv1.ClientFrame_DeleteForMe{DeleteForMe: &mpimv1.DeleteForMeRequest{ConversationId: conv, Seq: seq}})
				fails(t, a.c, "invalid", &mpimv1.ClientFrame_Recall{Recall: &mpimv1.RecallRequest{ConversationId: conv, Seq: seq}})
				fails(t, a.c, "invalid", &mpimv1.ClientFrame_Edit{Edit: &mpimv1.EditRequest{ConversationId: conv, Seq: seq, Text: "x"}})
			}
			ok(t, b.c, &mpimv1.ClientFrame_MarkRead{MarkRead: &mpimv1.MarkReadRequest{ConversationId: conv, Seq: 1}})
		})

		t.Run("query arguments out of range are invalid", func(t *testing.T) {
			for _, req := range []*mpimv1.ConversationsRequest{
				{BeforeMs: math.MaxInt64}, {BeforeMs: math.MinInt64}, {BeforeMs: -1}, {BeforeMs: year10000},
				{Limit: 201}, {Limit: math.MaxUint32}, {BeforeMs: 1, BeforeConversationId: "d/nonsense"},
			} {
				fails(t, a.c, "invalid", &mpimv1.ClientFrame_Conversations{Conversations: req})
			}
			for _, req := range []*mpimv1.HistoryRequest{
				{ConversationId: conv, FromSeq: math.MaxUint64},
				{ConversationId: conv, FromSeq: math.MaxUint64, Direction: mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD},
				{ConversationId: conv, Limit: 201},
				{ConversationId: conv, Direction: mpimv1.HistoryDirection(7)},
			} {
				fails(t, a.c, "invalid", &mpimv1.ClientFrame_History{History: req})
			}
			ok(t, a.c, &mpimv1.ClientFrame_Conversations{Conversations: &mpimv1.ConversationsRequest{BeforeMs: e.clock.Now().UnixMilli(), Limit: 200}})
			ok(t, a.c, &mpimv1.ClientFrame_History{History: &mpimv1.HistoryRequest{ConversationId: conv, FromSeq: 1<<53 - 1, Limit: 200}})
		})

		ping(t, a.c)
		if l := logs.String(); l != "" {
			t.Errorf("bad input was logged as a failure:\n%s", l)
		}
	})
}
