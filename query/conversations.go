package query

import (
	"context"
	"database/sql"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// epoch stands for a NULL last_message_at in the conversation list's order.
var epoch = time.Unix(0, 0).UTC()

// whileMember is the condition, on a user_conversations row uc, that its
// conversation is the user's: a group's conversation is the user's while the
// user is a member. The row stays when the user leaves or is removed (two
// partitions write it, and only upserts commute), so the membership decides
// here. A group's conversation id is its group id with "c/" for "g/".
const whileMember = " AND (uc.conversation_id NOT LIKE 'c/%' OR EXISTS (SELECT 1 FROM " + readmodel.Members + " m" +
	" WHERE m.group_id = CONCAT('g/', SUBSTRING(uc.conversation_id, 3)) AND m.user_id = uc.user_id))"

// Conversations returns a page of user's conversation list, most recent
// first, with unread counts and titles (a peer's display name, else
// username; a group's name) and user's do-not-disturb of each (a mute that
// ended by Config.Now is not listed). A group's conversation is listed
// while user is a member.
func (s *Service) Conversations(ctx context.Context, user domain.UserID, page domain.ConversationsPage) (*mpimv1.ConversationList, error) {
	limit := page.Limit
	sqlq := "SELECT uc.conversation_id, uc.last_seq, uc.last_message_at, uc.last_sender, uc.last_preview, uc.read_seq, uc.unread_count," +
		" mu.user_id IS NOT NULL, mu.muted_until" +
		" FROM " + readmodel.UserConversations + " uc LEFT JOIN " + readmodel.Mutes + " mu" +
		" ON mu.user_id = uc.user_id AND mu.conversation_id = uc.conversation_id WHERE uc.user_id = ?" + whileMember
	args := []any{string(user)}
	if page.After {
		before := page.Before
		sqlq += " AND (COALESCE(uc.last_message_at, ?) < ? OR (COALESCE(uc.last_message_at, ?) = ? AND uc.conversation_id < ?))"
		args = append(args, epoch, before, epoch, before, string(page.BeforeConversation))
	}
	sqlq += " ORDER BY uc.last_message_at DESC, uc.conversation_id DESC LIMIT ?"
	args = append(args, limit+1)
	out := &mpimv1.ConversationList{}
	now := s.cfg.Now()
	err := s.query(ctx, "listing conversations", func(rows *sql.Rows) error {
		c := &mpimv1.ConversationSummary{}
		var at, mutedUntil sql.NullTime
		var muted bool
		if err := rows.Scan(&c.ConversationId, &c.LastSeq, &at, &c.LastSenderId, &c.LastPreview, &c.ReadSeq, &c.UnreadCount,
			&muted, &mutedUntil); err != nil {
			return err
		}
		if at.Valid {
			c.LastMessageAtMs = at.Time.UnixMilli()
		}
		switch {
		case !muted:
		case !mutedUntil.Valid:
			c.MutedForever = true
		case now.Before(mutedUntil.Time):
			c.MutedUntilMs = mutedUntil.Time.UnixMilli()
		}
		out.Conversations = append(out.Conversations, c)
		return nil
	}, sqlq, args...)
	if err != nil {
		return nil, err
	}
	if len(out.Conversations) > limit {
		out.Conversations, out.HasMore = out.Conversations[:limit], true
	}
	return out, s.titles(ctx, user, out.Conversations)
}

// titles fills in the peer or group and the title of each conversation.
func (s *Service) titles(ctx context.Context, me domain.UserID, convs []*mpimv1.ConversationSummary) error {
	var users, groups []any
	for _, c := range convs {
		conv := domain.ConversationID(c.ConversationId)
		if g, ok := conv.Group(); ok {
			c.GroupId = string(g)
			groups = append(groups, c.GroupId)
		} else if a, b, ok := conv.Members(); ok {
			c.PeerUserId = string(a)
			if a == me {
				c.PeerUserId = string(b)
			}
			users = append(users, c.PeerUserId)
		}
	}
	names := map[string]string{}
	scan := func(rows *sql.Rows) error {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return err
		}
		names[id] = name
		return nil
	}
	if len(users) > 0 {
		if err := s.query(ctx, "reading names", scan, "SELECT user_id, IF(display_name = '', username, display_name) FROM "+readmodel.Users+
			" WHERE user_id IN ("+placeholders(len(users))+")", users...); err != nil {
			return err
		}
	}
	if len(groups) > 0 {
		if err := s.query(ctx, "reading names", scan, "SELECT group_id, name FROM "+readmodel.Groups+
			" WHERE group_id IN ("+placeholders(len(groups))+")", groups...); err != nil {
			return err
		}
	}
	for _, c := range convs {
		c.Title = names[c.PeerUserId+c.GroupId]
	}
	return nil
}
