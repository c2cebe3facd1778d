package query

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"google.golang.org/protobuf/proto"
)

// historyChunk is the rows of a history page's first read (see History).
const historyChunk = 32

// History returns a page of a conversation's messages for user, in seq
// order, who must be one of a direct conversation's pair (EForbidden) or a
// member or former member of a group's (ENotMember). A group's history
// holds only the messages of user's membership periods
// (group_member_periods), so a page may skip seqs. Messages user deleted
// for themself come without content; recalled ones without text or
// attachment. A page ends early, with hasMore, when its messages reach
// Config.HistoryPageBytes.
func (s *Service) History(ctx context.Context, user domain.UserID, page domain.HistoryPage) (*mpimv1.History, error) {
	conv, limit, forward := page.Conversation, page.Limit, page.Forward
	if err := s.canRead(ctx, user, conv); err != nil {
		return nil, err
	}
	sqlq := "SELECT m.seq, m.event_id, m.sender_id, m.device_id, m.client_msg_id, m.kind, m.body, m.attachment," +
		" m.sent_at, m.edited_at, m.recalled_at, d.seq IS NOT NULL FROM " + readmodel.Messages + " m" +
		" LEFT JOIN " + readmodel.Deletions + " d ON d.user_id = ? AND d.conversation_id = m.conversation_id AND d.seq = m.seq" +
		" WHERE m.conversation_id = ?"
	args := []any{string(user), string(conv)}
	if g, ok := conv.Group(); ok {
		sqlq += " AND EXISTS (SELECT 1 FROM " + readmodel.Periods + " p WHERE p.group_id = ? AND p.user_id = ?" +
			" AND m.seq > p.from_seq AND (p.to_seq IS NULL OR m.seq <= p.to_seq))"
		args = append(args, string(g), string(user))
	}
	// The page is read in chunks that grow from historyChunk, each after
	// the last message taken, until it holds limit+1 messages (one more
	// than the page tells hasMore), its bytes reach the cap, or the
	// conversation ends: a page of large messages makes MySQL read about
	// the cap and one chunk, not limit rows of them.
	out := &mpimv1.History{ConversationId: string(conv)}
	budget := pageBudget{max: s.cfg.HistoryPageBytes}
	from, want := page.FromSeq, limit+1
	for chunk := min(want, historyChunk); ; chunk = min(2*chunk, want-len(out.Messages)) {
		q, a := sqlq, append(slices.Clip(args), from, chunk)
		switch {
		case forward:
			q += " AND m.seq > ? ORDER BY m.seq ASC LIMIT ?"
		case from > 0:
			q += " AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
		default:
			q += " ORDER BY m.seq DESC LIMIT ?"
			a = append(slices.Clip(args), chunk)
		}
		rowsRead := 0
		err := s.query(ctx, "reading history", func(rows *sql.Rows) error {
			rowsRead++
			if budget.full {
				return nil // past the byte cap: the row is not decoded
			}
			m, err := scanMessage(rows)
			if err != nil {
				return err
			}
			if budget.take(m) {
				out.Messages = append(out.Messages, m)
				from = m.GetSeq()
			}
			return nil
		}, q, a...)
		if err != nil {
			return nil, err
		}
		if budget.full || rowsRead < chunk || len(out.Messages) >= want {
			break
		}
	}
	if len(out.Messages) > limit {
		out.Messages, out.HasMore = out.Messages[:limit], true
	}
	out.HasMore = out.HasMore || budget.full
	if !forward {
		slices.Reverse(out.Messages)
	}
	return out, nil
}

// canRead checks that user may read conv's history: for a group's, that
// user has or had a membership period.
func (s *Service) canRead(ctx context.Context, user domain.UserID, conv domain.ConversationID) error {
	if g, ok := conv.Group(); ok {
		var one int
		err := s.db.QueryRowContext(ctx, "SELECT 1 FROM "+readmodel.Periods+" WHERE group_id = ? AND user_id = ? LIMIT 1",
			string(g), string(user)).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return domain.Errorf(domain.ENotMember, "query: %s is not a member of %s", user, g)
		case err != nil:
			return unavailable("reading a membership", err)
		}
		return nil
	}
	if a, b, _ := conv.Members(); user != a && user != b {
		return domain.Errorf(domain.EForbidden, "query: %s is not in %s", user, conv)
	}
	return nil
}

func scanMessage(rows *sql.Rows) (*mpimv1.ChatMessage, error) {
	m := &mpimv1.ChatMessage{}
	var kind string
	var att sql.NullString
	var sent time.Time
	var edited, recalled sql.NullTime
	if err := rows.Scan(&m.Seq, &m.EventId, &m.SenderId, &m.DeviceId, &m.ClientMsgId, &kind, &m.Text, &att,
		&sent, &edited, &recalled, &m.Deleted); err != nil {
		return nil, err
	}
	// The wire's kinds share the domain's numbers.
	m.Kind, m.SentAtMs = mpimv1.MessageKind(readmodel.ParseKind(kind)), sent.UnixMilli()
	if edited.Valid {
		m.EditedAtMs = edited.Time.UnixMilli()
	}
	if recalled.Valid {
		m.RecalledAtMs = recalled.Time.UnixMilli()
	}
	if m.Deleted {
		// Only the position stays: the user deleted it for themself.
		return &mpimv1.ChatMessage{Seq: m.Seq, EventId: m.EventId, SentAtMs: m.SentAtMs, Deleted: true}, nil
	}
	if att.Valid && !recalled.Valid {
		d, err := readmodel.DecodeAttachment(att.String)
		if err != nil {
			return nil, err
		}
		m.Attachment = &mpimv1.Attachment{Url: d.URL, Mime: d.Mime, Size: d.Size, Name: d.Name, Width: d.Width, Height: d.Height, Meta: d.Meta}
	}
	if recalled.Valid {
		m.Text = ""
	}
	return m, nil
}

// pageBudget caps the bytes of a history page as its rows are read
// (nearest to the starting point first): it takes messages while they fit
// in max, at least one so a page always moves on; once one does not fit
// the page is full, and that message and the rest are left to the next
// page.
type pageBudget struct {
	max, bytes, n int
	full          bool
}

// take reports whether m goes into the page.
func (p *pageBudget) take(m *mpimv1.ChatMessage) bool {
	if p.full {
		return false
	}
	size := proto.Size(m)
	if p.n > 0 && p.bytes+size > p.max {
		p.full = true
		return false
	}
	p.n++
	p.bytes += size
	return true
}
