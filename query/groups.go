package query

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/pipeline"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

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

// MyGroups returns the groups user is a member of, by group id, at most
// MaxList. A dissolved group stays listed, marked dissolved.
func (s *Service) MyGroups(ctx context.Context, user domain.UserID) ([]*mpimv1.GroupSummary, error) {
	var out []*mpimv1.GroupSummary
	err := s.query(ctx, "listing groups", func(rows *sql.Rows) error {
		var role string
		g, err := scanGroup(rows, &role)
		if err != nil {
			return err
		}
		g.MyRole = roleOf(role)
		out = append(out, g)
		return nil
	}, "SELECT "+groupCols+", m.role FROM "+readmodel.Members+" m JOIN "+readmodel.Groups+" g ON g.group_id = m.group_id"+
		" WHERE m.user_id = ? ORDER BY g.group_id LIMIT ?", string(user), MaxList)
	return out, err
}

// GroupMembers returns a group and its members (at most MaxList, by user
// id), for a member of the group or anybody if the group is open. It fails
// with EInvalid for a malformed group id, ENotFound for no such group and
// ENotMember for a closed group user is not in. A mute past its end (by
// Config.Now) is reported as no mute.
func (s *Service) GroupMembers(ctx context.Context, user domain.UserID, group domain.GroupID) (*mpimv1.GroupMembers, error) {
	if !group.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "query: invalid group id %q", group)
	}
	g, err := scanGroup(s.db.QueryRowContext(ctx, "SELECT "+groupCols+" FROM "+readmodel.Groups+" g WHERE g.group_id = ?", string(group)))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, domain.Errorf(domain.ENotFound, "query: group %s not found", group)
	case err != nil:
		return nil, unavailable("reading a group", err)
	}
	out := &mpimv1.GroupMembers{Group: g}
	now := s.cfg.Now()
	err = s.query(ctx, "listing members", func(rows *sql.Rows) error {
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
		" FROM "+readmodel.Members+" m LEFT JOIN "+readmodel.Users+" u ON u.user_id = m.user_id WHERE m.group_id = ? ORDER BY m.user_id LIMIT ?",
		string(group), MaxList)
	if err != nil {
		return nil, err
	}
	if g.MyRole == mpimv1.Role_ROLE_UNSPECIFIED && !g.Open {
		return nil, domain.Errorf(domain.ENotMember, "query: %s is not a member of %s", user, group)
	}
	return out, nil
}

// MemberIDs returns the ids of group's members from the cache, in no
// particular order.
func (s *Service) MemberIDs(ctx context.Context, group domain.GroupID) ([]domain.UserID, error) {
	ms, err := s.MemberIDsOf(ctx, []domain.GroupID{group})
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// MemberIDsOf returns the ids of each group's members from the cache, in
// the order of groups, each in no particular order: one round trip (a
// pipeline) per pipeline.MaxCommands groups.
func (s *Service) MemberIDsOf(ctx context.Context, groups []domain.GroupID) ([][]domain.UserID, error) {
	cmds, err := pipeline.Chunked(ctx, s.rdb, len(groups), func(p redis.Pipeliner, i int) *redis.StringSliceCmd {
		return p.HKeys(ctx, s.keys.Members(groups[i]))
	})
	if err != nil {
		return nil, unavailable("reading cached members", err)
	}
	out := make([][]domain.UserID, len(groups))
	for i, c := range cmds {
		ms, err := c.Result()
		if err != nil {
			return nil, unavailable("reading cached members", err)
		}
		out[i] = userIDs(ms)
	}
	return out, nil
}

// roleOf maps a group_members.role value to the wire's role (the two
// enums share their numbers).
func roleOf(s string) mpimv1.Role {
	return mpimv1.Role(readmodel.ParseRole(s))
}
