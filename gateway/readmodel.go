package gateway

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// maxList bounds the unpaged lists (friends, requests, blocks, groups,
// members) so that no query reads without limit. Paged lists take their
// page size from the domain (domain.CheckPage).
const maxList = 5000

// readModel answers queries from the MySQL read models the MySQL projector
// writes (schema/migrations). They lag the log by the projector's batch:
// a query right after a command may not see it yet. It is safe for
// concurrent use.
type readModel struct {
	db  *sql.DB
	now func() time.Time
	// pageBytes caps the messages of a history page (Config.HistoryPageBytes).
	pageBytes int
}

// unavailable wraps a database failure.
func unavailable(what string, err error) error {
	return domain.Errorf(domain.EUnavailable, "gateway: %s: %w", what, err)
}

// query runs a query and calls scan for every row.
func (r *readModel) query(ctx context.Context, what string, scan func(*sql.Rows) error, q string, args ...any) error {
	rows, err := r.db.QueryContext(ctx, q, args...)
	if err != nil {
		return unavailable(what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return unavailable(what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return unavailable(what, err)
	}
	return nil
}

// profile returns user's profile row, or nil.
func (r *readModel) profile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	p := &mpimv1.Profile{UserId: string(user)}
	err := r.db.QueryRowContext(ctx, "SELECT username, display_name, avatar_url FROM users WHERE user_id = ?", string(user)).
		Scan(&p.Username, &p.DisplayName, &p.AvatarUrl)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, unavailable("reading a profile", err)
	}
	return p, nil
}

// friends returns user's friends with their profiles, by user id.
func (r *readModel) friends(ctx context.Context, user domain.UserID) ([]*mpimv1.Profile, error) {
	var out []*mpimv1.Profile
	err := r.query(ctx, "listing friends", func(rows *sql.Rows) error {
		p := &mpimv1.Profile{}
		out = append(out, p)
		return rows.Scan(&p.UserId, &p.Username, &p.DisplayName, &p.AvatarUrl)
	}, "SELECT f.friend_id, COALESCE(u.username, ''), COALESCE(u.display_name, ''), COALESCE(u.avatar_url, '')"+
		" FROM friendships f LEFT JOIN users u ON u.user_id = f.friend_id WHERE f.user_id = ? ORDER BY f.friend_id LIMIT ?",
		string(user), maxList)
	return out, err
}

// friendRequests returns the pending requests to and from user.
func (r *readModel) friendRequests(ctx context.Context, user domain.UserID) (*mpimv1.FriendRequestList, error) {
	out := &mpimv1.FriendRequestList{}
	list := func(dst *[]*mpimv1.PendingFriendRequest, mine, other string) error {
		return r.query(ctx, "listing friend requests", func(rows *sql.Rows) error {
			p := &mpimv1.PendingFriendRequest{User: &mpimv1.Profile{}}
			var at time.Time
			if err := rows.Scan(&p.FromUserId, &p.ToUserId, &p.Message, &at, &p.User.Username, &p.User.DisplayName, &p.User.AvatarUrl); err != nil {
				return err
			}
			p.CreatedAtMs = at.UnixMilli()
			if mine == "to_user" {
				p.User.UserId = p.FromUserId
			} else {
				p.User.UserId = p.ToUserId
			}
			*dst = append(*dst, p)
			return nil
		}, "SELECT r.from_user, r.to_user, r.message, r.updated_at,"+
			" COALESCE(u.username, ''), COALESCE(u.display_name, ''), COALESCE(u.avatar_url, '')"+
			" FROM friend_requests r LEFT JOIN users u ON u.user_id = r."+other+
			" WHERE r."+mine+" = ? AND r.status = 'pending' ORDER BY r.updated_at, r."+other+" LIMIT ?", string(user), maxList)
	}
	if err := list(&out.Incoming, "to_user", "from_user"); err != nil {
		return nil, err
	}
	if err := list(&out.Outgoing, "from_user", "to_user"); err != nil {
		return nil, err
	}
	return out, nil
}

// blocks returns the users user blocks.
func (r *readModel) blocks(ctx context.Context, user domain.UserID) ([]string, error) {
	var out []string
	err := r.query(ctx, "listing blocks", func(rows *sql.Rows) error {
		var b string
		if err := rows.Scan(&b); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}, "SELECT blocked FROM blocks WHERE blocker = ? ORDER BY blocked LIMIT ?", string(user), maxList)
	return out, err
}

// groupCols are the chat_groups columns scanGroup reads, prefixed "g.".
const groupCols = "g.group_id, g.name, g.owner_id, g.is_open, g.member_count, g.created_at, g.dissolved_at, g.history_visible"

func scanGroup(rows interface{ Scan(...any) error }, extra ...any) (*mpimv1.GroupSummary, error) {
	g := &mpimv1.GroupSummary{}
	var created time.Time
	var dissolved sql.NullTime
	if err := rows.Scan(append([]any{&g.GroupId, &g.Name, &g.OwnerId, &g.Open, &g.MemberCount, &created, &dissolved, &g.HistoryVisible}, extra...)...); err != nil {
		return nil, err
	}
	g.ConversationId = string(domain.GroupConversation(domain.GroupID(g.GroupId)))
	g.CreatedAtMs = created.UnixMilli()
	g.Dissolved = dissolved.Valid
	return g, nil
}

// myGroups returns the groups user is a member of, by group id.
func (r *readModel) myGroups(ctx context.Context, user domain.UserID) ([]*mpimv1.GroupSummary, error) {
	var out []*mpimv1.GroupSummary
	err := r.query(ctx, "listing groups", func(rows *sql.Rows) error {
		var role string
		g, err := scanGroup(rows, &role)
		if err != nil {
			return err
		}
		g.MyRole = roleOf(role)
		out = append(out, g)
		return nil
	}, "SELECT "+groupCols+", m.role FROM group_members m JOIN chat_groups g ON g.group_id = m.group_id"+
		" WHERE m.user_id = ? ORDER BY g.group_id LIMIT ?", string(user), maxList)
	return out, err
}

// groupMembers returns a group and its members, for a member of the group
// or anybody if the group is open (ENotMember otherwise; ENotFound for no
// such group).
func (r *readModel) groupMembers(ctx context.Context, user domain.UserID, group domain.GroupID) (*mpimv1.GroupMembers, error) {
	if !group.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "gateway: invalid group id %q", group)
	}
	g, err := scanGroup(r.db.QueryRowContext(ctx, "SELECT "+groupCols+" FROM chat_groups g WHERE g.group_id = ?", string(group)))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, domain.Errorf(domain.ENotFound, "gateway: group %s not found", group)
	case err != nil:
		return nil, unavailable("reading a group", err)
	}
	out := &mpimv1.GroupMembers{Group: g}
	now := r.now()
	err = r.query(ctx, "listing members", func(rows *sql.Rows) error {
		m := &mpimv1.GroupMember{}
		var role string
		var until sql.NullTime
		var joined time.Time
		if err := rows.Scan(&m.UserId, &m.Username, &m.DisplayName, &role, &m.Muted, &until, &joined); err != nil {
			return err
		}
		m.Role, m.JoinedAtMs = roleOf(role), joined.UnixMilli()
		if until.Valid {
			m.Muted = m.Muted && now.Before(until.Time)
			if m.Muted {
				m.MutedUntilMs = until.Time.UnixMilli()
			}
		}
		if m.UserId == string(user) {
			g.MyRole = m.Role
		}
		out.Members = append(out.Members, m)
		return nil
	}, "SELECT m.user_id, COALESCE(u.username, ''), COALESCE(u.display_name, ''), m.role, m.muted, m.muted_until, m.joined_at"+
		" FROM group_members m LEFT JOIN users u ON u.user_id = m.user_id WHERE m.group_id = ? ORDER BY m.user_id LIMIT ?",
		string(group), maxList)
	if err != nil {
		return nil, err
	}
	if g.MyRole == mpimv1.Role_ROLE_UNSPECIFIED && !g.Open {
		return nil, domain.Errorf(domain.ENotMember, "gateway: %s is not a member of %s", user, group)
	}
	return out, nil
}

// epoch stands for a NULL last_message_at in the conversation list's order.
var epoch = time.Unix(0, 0).UTC()

// conversations returns a page of user's conversation list, most recent
// first, with titles. Arguments out of range (domain.NewConversationsPage)
// are EInvalid before any query runs.
func (r *readModel) conversations(ctx context.Context, user domain.UserID, q *mpimv1.ConversationsRequest) (*mpimv1.ConversationList, error) {
	page, err := domain.NewConversationsPage(q.GetBeforeMs(), domain.ConversationID(q.GetBeforeConversationId()), q.GetLimit())
	if err != nil {
		return nil, err
	}
	limit := page.Limit
	// A group's conversation is listed while the user is a member: the row
	// stays when the user leaves or is removed (two partitions write it, and
	// only upserts commute), so the membership decides here.
	sqlq := "SELECT uc.conversation_id, uc.last_seq, uc.last_message_at, uc.last_sender, uc.last_preview, uc.read_seq, uc.unread_count" +
		" FROM user_conversations uc WHERE uc.user_id = ?" +
		" AND (uc.conversation_id NOT LIKE 'c/%' OR EXISTS (SELECT 1 FROM group_members m" +
		" WHERE m.group_id = CONCAT('g/', SUBSTRING(uc.conversation_id, 3)) AND m.user_id = uc.user_id))"
	args := []any{string(user)}
	if page.After {
		before := page.Before
		sqlq += " AND (COALESCE(uc.last_message_at, ?) < ? OR (COALESCE(uc.last_message_at, ?) = ? AND uc.conversation_id < ?))"
		args = append(args, epoch, before, epoch, before, string(page.BeforeConversation))
	}
	sqlq += " ORDER BY uc.last_message_at DESC, uc.conversation_id DESC LIMIT ?"
	args = append(args, limit+1)
	out := &mpimv1.ConversationList{}
	err = r.query(ctx, "listing conversations", func(rows *sql.Rows) error {
		c := &mpimv1.ConversationSummary{}
		var at sql.NullTime
		if err := rows.Scan(&c.ConversationId, &c.LastSeq, &at, &c.LastSenderId, &c.LastPreview, &c.ReadSeq, &c.UnreadCount); err != nil {
			return err
		}
		if at.Valid {
			c.LastMessageAtMs = at.Time.UnixMilli()
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
	return out, r.titles(ctx, user, out.Conversations)
}

// titles fills in the peer or group and the title of each conversation.
func (r *readModel) titles(ctx context.Context, me domain.UserID, convs []*mpimv1.ConversationSummary) error {
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
		if err := r.query(ctx, "reading names", scan, "SELECT user_id, IF(display_name = '', username, display_name) FROM users WHERE user_id IN ("+
			placeholders(len(users))+")", users...); err != nil {
			return err
		}
	}
	if len(groups) > 0 {
		if err := r.query(ctx, "reading names", scan, "SELECT group_id, name FROM chat_groups WHERE group_id IN ("+
			placeholders(len(groups))+")", groups...); err != nil {
			return err
		}
	}
	for _, c := range convs {
		c.Title = names[c.PeerUserId+c.GroupId]
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// historyChunk is the rows of a history page's first read (see history).
const historyChunk = 32

// history returns a page of a conversation's messages for user, who must be
// one of a direct conversation's pair (EForbidden) or a member or former
// member of a group's (ENotMember). A group's history holds only the
// messages of user's membership periods (group_member_periods), so a page
// may skip seqs. Messages user deleted for themself come without content.
// Arguments out of range (domain.NewHistoryPage) and an unknown direction
// are EInvalid before any query runs.
func (r *readModel) history(ctx context.Context, user domain.UserID, q *mpimv1.HistoryRequest) (*mpimv1.History, error) {
	var forward bool
	switch q.GetDirection() {
	case mpimv1.HistoryDirection_HISTORY_DIRECTION_UNSPECIFIED, mpimv1.HistoryDirection_HISTORY_DIRECTION_BACKWARD:
	case mpimv1.HistoryDirection_HISTORY_DIRECTION_FORWARD:
		forward = true
	default:
		return nil, domain.Errorf(domain.EInvalid, "gateway: unknown history direction %d", q.GetDirection())
	}
	page, err := domain.NewHistoryPage(domain.ConversationID(q.GetConversationId()), q.GetFromSeq(), forward, q.GetLimit())
	if err != nil {
		return nil, err
	}
	conv, limit := page.Conversation, page.Limit
	if err := r.canRead(ctx, user, conv); err != nil {
		return nil, err
	}
	sqlq := "SELECT m.seq, m.event_id, m.sender_id, m.device_id, m.client_msg_id, m.kind, m.body, m.attachment," +
		" m.sent_at, m.edited_at, m.recalled_at, d.seq IS NOT NULL FROM messages m" +
		" LEFT JOIN message_deletions d ON d.user_id = ? AND d.conversation_id = m.conversation_id AND d.seq = m.seq" +
		" WHERE m.conversation_id = ?"
	args := []any{string(user), string(conv)}
	if g, ok := conv.Group(); ok {
		sqlq += " AND EXISTS (SELECT 1 FROM group_member_periods p WHERE p.group_id = ? AND p.user_id = ?" +
			" AND m.seq > p.from_seq AND (p.to_seq IS NULL OR m.seq <= p.to_seq))"
		args = append(args, string(g), string(user))
	}
	// The page is read in chunks that grow from historyChunk, each after
	// the last message taken, until it holds limit+1 messages (one more
	// than the page tells hasMore), its bytes reach the cap, or the
	// conversation ends: a page of large messages makes MySQL read about
	// the cap and one chunk, not limit rows of them.
	out := &mpimv1.History{ConversationId: string(conv)}
	budget := pageBudget{max: r.pageBytes}
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
		err = r.query(ctx, "reading history", func(rows *sql.Rows) error {
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
		for i, j := 0, len(out.Messages)-1; i < j; i, j = i+1, j-1 {
			out.Messages[i], out.Messages[j] = out.Messages[j], out.Messages[i]
		}
	}
	return out, nil
}

// canRead checks that user may read conv's history: for a group's, that
// user has or had a membership period.
func (r *readModel) canRead(ctx context.Context, user domain.UserID, conv domain.ConversationID) error {
	if g, ok := conv.Group(); ok {
		var one int
		err := r.db.QueryRowContext(ctx, "SELECT 1 FROM group_member_periods WHERE group_id = ? AND user_id = ? LIMIT 1",
			string(g), string(user)).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return domain.Errorf(domain.ENotMember, "gateway: %s is not a member of %s", user, g)
		case err != nil:
			return unavailable("reading a membership", err)
		}
		return nil
	}
	if a, b, _ := conv.Members(); user != a && user != b {
		return domain.Errorf(domain.EForbidden, "gateway: %s is not in %s", user, conv)
	}
	return nil
}

// attachmentDoc is the JSON form of an attachment in messages.attachment,
// as the MySQL projector writes it.
type attachmentDoc struct {
	URL    string            `json:"url"`
	Mime   string            `json:"mime,omitempty"`
	Size   int64             `json:"size,omitempty"`
	Name   string            `json:"name,omitempty"`
	Width  int32             `json:"width,omitempty"`
	Height int32             `json:"height,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
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
	m.Kind, m.SentAtMs = kindOf(kind), sent.UnixMilli()
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
		var d attachmentDoc
		if err := json.Unmarshal([]byte(att.String), &d); err != nil {
			return nil, err
		}
		m.Attachment = &mpimv1.Attachment{Url: d.URL, Mime: d.Mime, Size: d.Size, Name: d.Name, Width: d.Width, Height: d.Height, Meta: d.Meta}
	}
	if recalled.Valid {
		m.Text = ""
	}
	return m, nil
}

// roleOf maps the group_members.role enum.
func roleOf(s string) mpimv1.Role {
	switch s {
	case "owner":
		return mpimv1.Role_ROLE_OWNER
	case "admin":
		return mpimv1.Role_ROLE_ADMIN
	case "member":
		return mpimv1.Role_ROLE_MEMBER
	}
	return mpimv1.Role_ROLE_UNSPECIFIED
}

// kindOf maps the messages.kind enum.
func kindOf(s string) mpimv1.MessageKind {
	switch s {
	case "text":
		return mpimv1.MessageKind_MESSAGE_KIND_TEXT
	case "image":
		return mpimv1.MessageKind_MESSAGE_KIND_IMAGE
	case "file":
		return mpimv1.MessageKind_MESSAGE_KIND_FILE
	case "custom":
		return mpimv1.MessageKind_MESSAGE_KIND_CUSTOM
	}
	return mpimv1.MessageKind_MESSAGE_KIND_UNSPECIFIED
}
