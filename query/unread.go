package query

import (
	"context"
	"database/sql"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
)

// Unread returns user's unread messages as the MySQL read model holds them,
// in one round trip: the sum of the unread counts of user's conversations
// (a group's while user is a member, as Conversations lists them; muted
// ones too) and user's rows of convs (at most domain.MaxUnreadConversations) that
// the sum counts. It lags the log like every table: a push notifier adds
// what it knows beyond it. Too many or malformed ids are EInvalid; a
// database failure is EUnavailable.
func (s *Service) Unread(ctx context.Context, user domain.UserID, convs []domain.ConversationID) (domain.Unread, error) {
	if !user.Valid() {
		return domain.Unread{}, domain.Errorf(domain.EInvalid, "query: invalid user id %q", user)
	}
	if len(convs) > domain.MaxUnreadConversations {
		return domain.Unread{}, domain.Errorf(domain.EInvalid, "query: unread counts of %d conversations asked for, at most %d", len(convs), domain.MaxUnreadConversations)
	}
	// The sum is the row with an empty conversation id, which no
	// conversation has.
	sqlq := "SELECT '', 0, 0, CAST(COALESCE(SUM(uc.unread_count), 0) AS UNSIGNED) FROM " + readmodel.UserConversations +
		" uc WHERE uc.user_id = ?" + whileMember
	args := []any{string(user)}
	if len(convs) > 0 {
		sqlq += " UNION ALL SELECT uc.conversation_id, uc.last_seq, uc.read_seq, uc.unread_count FROM " + readmodel.UserConversations +
			" uc WHERE uc.user_id = ? AND uc.conversation_id IN (" + placeholders(len(convs)) + ")" + whileMember
		args = append(args, string(user))
		for _, c := range convs {
			if !c.Valid() {
				return domain.Unread{}, domain.Errorf(domain.EInvalid, "query: invalid conversation id %q", c)
			}
			args = append(args, string(c))
		}
	}
	var out domain.Unread
	err := s.query(ctx, "reading unread counts", func(rows *sql.Rows) error {
		var c domain.ConversationUnread
		if err := rows.Scan(&c.Conversation, &c.LastSeq, &c.ReadSeq, &c.Count); err != nil {
			return err
		}
		if c.Conversation == "" {
			out.Total = c.Count
		} else {
			out.Conversations = append(out.Conversations, c)
		}
		return nil
	}, sqlq, args...)
	if err != nil {
		return domain.Unread{}, err
	}
	return out, nil
}
