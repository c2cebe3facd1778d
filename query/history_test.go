package query

import (
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// message adds a messages row: seq of conv, sent by from, kind text unless
// att is set.
func (e *env) message(tb testing.TB, conv domain.ConversationID, seq uint64, from domain.UserID, body string, att *domain.Attachment) {
	tb.Helper()
	kind, doc := readmodel.KindName(domain.KindText), any(nil)
	if att != nil {
		s, err := readmodel.EncodeAttachment(*att)
		if err != nil {
			tb.Fatal(err)
		}
		kind, doc = readmodel.KindName(domain.KindImage), s
	}
	id := make([]byte, 16)
	id[15] = byte(seq)
	e.exec(tb, "INSERT INTO "+readmodel.Messages+" (conversation_id, seq, event_id, sender_id, kind, body, attachment, sent_at, version)"+
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", string(conv), seq, id, string(from), kind, body, doc, t0.Add(time.Duration(seq)*time.Second), seq)
}

func history(tb testing.TB, e *env, user domain.UserID, conv domain.ConversationID, from uint64, forward bool, limit uint32) (*mpimv1.History, error) {
	tb.Helper()
	page, err := domain.NewHistoryPage(conv, from, forward, limit)
	if err != nil {
		tb.Fatal(err)
	}
	return e.s.History(testCtx(tb), user, page)
}

func seqs(h *mpimv1.History) []uint64 {
	var out []uint64
	for _, m := range h.GetMessages() {
		out = append(out, m.GetSeq())
	}
	return out
}

func TestHistory(t *testing.T) {
	e := newEnv(t, Config{HistoryPageBytes: 16 << 10})
	u := ids(4)
	conv := domain.DirectConversation(u[0], u[1])
	cat := &domain.Attachment{URL: "https://img.example/cat.png", Mime: "image/png", Width: 640, Meta: map[string]string{"alt": "a cat"}}
	for seq := uint64(1); seq <= 100; seq++ {
		var att *domain.Attachment
		if seq == 5 || seq == 7 {
			att = cat
		}
		e.message(t, conv, seq, u[seq%2], "m", att)
	}
	e.exec(t, "UPDATE "+readmodel.Messages+" SET recalled_at = ? WHERE conversation_id = ? AND seq = 7", t0, string(conv))
	e.exec(t, "INSERT INTO "+readmodel.Deletions+" (user_id, conversation_id, seq, deleted_at) VALUES (?, ?, 9, ?)", string(u[1]), string(conv), t0)

	t.Run("pages longer than a chunk come whole and in order", func(t *testing.T) {
		for _, tc := range []struct {
			from        uint64
			forward     bool
			limit       uint32
			first, last uint64
			wantMore    bool
		}{
			{0, false, 70, 31, 100, true},
			{31, false, 70, 1, 30, false},
			{0, true, 200, 1, 100, false},
			{70, true, 70, 71, 100, false},
			{0, false, 100, 1, 100, false},
		} {
			h, err := history(t, e, u[0], conv, tc.from, tc.forward, tc.limit)
			s := seqs(h)
			if err != nil || uint64(len(s)) != tc.last-tc.first+1 || s[0] != tc.first || s[len(s)-1] != tc.last || h.GetHasMore() != tc.wantMore {
				t.Fatalf("%+v: seqs %v, hasMore %v, %v", tc, s, h.GetHasMore(), err)
			}
		}
	})

	t.Run("attachments, recalls and deletions for me", func(t *testing.T) {
		h, err := history(t, e, u[1], conv, 4, true, 5)
		if err != nil || len(h.GetMessages()) != 5 {
			t.Fatalf("%v, %v", h, err)
		}
		img, recalled, deleted := h.GetMessages()[0], h.GetMessages()[2], h.GetMessages()[4]
		if img.GetKind() != mpimv1.MessageKind_MESSAGE_KIND_IMAGE || img.GetAttachment().GetUrl() != cat.URL ||
			img.GetAttachment().GetWidth() != 640 || img.GetAttachment().GetMeta()["alt"] != "a cat" || len(img.GetEventId()) != 16 {
			t.Errorf("image %v", img)
		}
		if recalled.GetRecalledAtMs() != t0.UnixMilli() || recalled.GetText() != "" || recalled.GetAttachment() != nil {
			t.Errorf("recalled %v", recalled)
		}
		if !deleted.GetDeleted() || deleted.GetText() != "" || deleted.GetSenderId() != "" || deleted.GetSeq() != 9 {
			t.Errorf("deleted for me %v", deleted)
		}
		if h, _ := history(t, e, u[0], conv, 8, true, 1); h.GetMessages()[0].GetDeleted() || h.GetMessages()[0].GetText() != "m" {
			t.Errorf("the other party sees %v", h.GetMessages()[0])
		}
	})

	t.Run("a page stops at its byte cap", func(t *testing.T) {
		big := domain.DirectConversation(u[0], u[2])
		for seq := uint64(1); seq <= 10; seq++ {
			e.message(t, big, seq, u[0], strings.Repeat("x", 6000), nil)
		}
		h, err := history(t, e, u[2], big, 0, false, 10)
		if s := seqs(h); err != nil || len(s) != 2 || s[0] != 9 || !h.GetHasMore() {
			t.Fatalf("seqs %v, hasMore %v, %v; want 9 and 10 with more", s, h.GetHasMore(), err)
		}
	})

	t.Run("a group's history is its reader's membership periods", func(t *testing.T) {
		g := domain.GroupID("g/01ARZ3NDEKTSV4RRFFQ69G5FAV")
		gc := domain.GroupConversation(g)
		for seq := uint64(1); seq <= 8; seq++ {
			e.message(t, gc, seq, u[0], "hi", nil)
		}
		e.exec(t, "INSERT INTO "+readmodel.Periods+" (group_id, user_id, from_seq, to_seq) VALUES (?, ?, 0, NULL), (?, ?, 2, 4), (?, ?, 6, NULL)",
			string(g), string(u[0]), string(g), string(u[1]), string(g), string(u[1]))
		if h, err := history(t, e, u[1], gc, 0, true, 0); err != nil || len(seqs(h)) != 4 || seqs(h)[0] != 3 || seqs(h)[2] != 7 {
			t.Fatalf("a member who left and came back reads %v, %v; want 3, 4, 7, 8", seqs(h), err)
		}
		if h, err := history(t, e, u[0], gc, 0, true, 0); err != nil || len(seqs(h)) != 8 {
			t.Fatalf("a founder reads %v, %v", seqs(h), err)
		}
		if _, err := history(t, e, u[3], gc, 0, true, 0); domain.ErrorCode(err) != domain.ENotMember {
			t.Fatalf("a stranger to the group: %v, want not_member", err)
		}
	})

	t.Run("a stranger to a pair is forbidden", func(t *testing.T) {
		if _, err := history(t, e, u[3], conv, 0, false, 0); domain.ErrorCode(err) != domain.EForbidden {
			t.Fatalf("%v, want forbidden", err)
		}
	})
}

func TestPageBudgetKeepsAtLeastOneMessage(t *testing.T) {
	big := &mpimv1.ChatMessage{Text: strings.Repeat("x", 1000)}
	for _, tc := range []struct{ cap, want int }{{10, 1}, {2100, 2}, {1 << 20, 3}} {
		p := pageBudget{max: tc.cap}
		n := 0
		for range 3 {
			if p.take(big) {
				n++
			}
		}
		if n != tc.want || p.full != (tc.want < 3) {
			t.Errorf("cap %d: %d messages (full %v), want %d", tc.cap, n, p.full, tc.want)
		}
	}
}
