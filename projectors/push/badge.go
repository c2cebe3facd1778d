package push

import (
	"context"
	"fmt"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/push/webhook"
)

// markKind is what a mark changes of a user's unread state.
type markKind uint8

const (
	// markMessage is a message to the user.
	markMessage markKind = iota
	// markRead is a read marker: a ConversationRead of the user, or the
	// user's own message, which counts as read up to it.
	markRead
	// markNotice is a notification that is no message (a friend request,
	// being added to a group): it changes nothing but needs a badge.
	markNotice
)

// mark is one step of a user's unread state within a batch, in log order.
type mark struct {
	kind markKind
	user domain.UserID
	conv domain.ConversationID // "" for a friend request
	seq  uint64
	note int // the index of the user's notification of this step; -1 for none
}

// convUnread is what the projector knows of a user's unread messages in one
// conversation: the read model's row, raised by the batch's marks.
type convUnread struct {
	row   bool     // the read model has a row that its total counts
	count uint64   // the row's unread count
	last  uint64   // the highest seq known: the row's last seq or a message of the batch
	read  uint64   // the highest read marker known: the row's or one of the batch
	seqs  []uint64 // the batch's messages to the user, in log order
	floor uint64   // the highest read marker of the batch
}

// unread returns the conversation's unread count: the messages after the
// highest read marker known, when a read marker is known (from the read
// model or the batch; without one, the user may have joined a group after
// messages that count as read), and never fewer than the batch's messages
// after its own read markers, which the pushes announce.
func (c *convUnread) unread() uint64 {
	var n uint64
	if (c.row || c.read > 0) && c.last > c.read {
		n = c.last - c.read
	}
	var fresh uint64
	for i := len(c.seqs) - 1; i >= 0 && c.seqs[i] > c.floor; i-- {
		fresh++
	}
	return max(n, fresh)
}

// userUnread is a user's unread state during a batch.
type userUnread struct {
	rest  uint64 // the read model's total less the rows in convs
	convs map[domain.ConversationID]*convUnread
}

func newUserUnread(u domain.Unread) *userUnread {
	s := &userUnread{rest: u.Total, convs: map[domain.ConversationID]*convUnread{}}
	for _, r := range u.Conversations {
		s.convs[r.Conversation] = &convUnread{row: true, count: r.Count, last: r.LastSeq, read: r.ReadSeq}
		s.rest -= min(r.Count, s.rest)
	}
	return s
}

// apply takes m into the state.
func (s *userUnread) apply(m mark) {
	if m.kind == markNotice {
		return
	}
	c := s.convs[m.conv]
	if c == nil {
		c = &convUnread{}
		s.convs[m.conv] = c
	}
	c.last = max(c.last, m.seq)
	if m.kind == markRead {
		c.read, c.floor = max(c.read, m.seq), max(c.floor, m.seq)
		return
	}
	c.seqs = append(c.seqs, m.seq)
}

// badge returns the user's unread count, at most webhook.MaxBadge.
func (s *userUnread) badge() int64 {
	n := s.rest
	for _, c := range s.convs {
		n += c.unread()
	}
	return int64(min(n, webhook.MaxBadge))
}

// badges sets the unread badge of each notification in ns, which marks
// point at: the notified user's unread count after its event. It reads the
// read model once per notified user (Directory.Unread) and adds what the
// batch's marks tell beyond it, as the MySQL projector may trail this one.
// Beyond domain.MaxUnreadConversations conversations of one user in the
// batch, the rest count twice at worst (the read model's total and the
// batch's messages). A user whose read fails gets no badge (nil), which is logged and counted:
// the push goes without it rather than wait for the database. Only ctx's
// end is an error.
func (p *Projector) badges(ctx context.Context, ns []webhook.Notification, marks []mark) error {
	convs := map[domain.UserID][]domain.ConversationID{}
	seen := map[domain.UserID]map[domain.ConversationID]bool{}
	for _, m := range marks {
		if m.note >= 0 && seen[m.user] == nil {
			seen[m.user] = map[domain.ConversationID]bool{}
			convs[m.user] = nil
		}
	}
	for _, m := range marks {
		s := seen[m.user]
		if s == nil || m.conv == "" || s[m.conv] || len(convs[m.user]) == domain.MaxUnreadConversations {
			continue
		}
		s[m.conv] = true
		convs[m.user] = append(convs[m.user], m.conv)
	}
	states := make(map[domain.UserID]*userUnread, len(convs))
	for u, cs := range convs {
		un, err := p.dir.Unread(ctx, u, cs)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("push: unread counts of %s: %w", u, ctx.Err())
			}
			p.badgeFailures.Inc()
			p.cfg.Logger.Warn("push: unread badge unknown, pushed without it", "user", u, "err", err)
			continue
		}
		states[u] = newUserUnread(un)
	}
	for _, m := range marks {
		s := states[m.user]
		if s == nil {
			continue
		}
		s.apply(m)
		if m.note >= 0 {
			ns[m.note].UnreadBadge = new(s.badge())
		}
	}
	return nil
}
