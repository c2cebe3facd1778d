package query

import (
	"context"
	"database/sql"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Friends returns user's friends with their profiles, by user id, at most
// MaxList of them.
func (s *Service) Friends(ctx context.Context, user domain.UserID) ([]*mpimv1.Profile, error) {
	var out []*mpimv1.Profile
	err := s.query(ctx, "listing friends", func(rows *sql.Rows) error {
		p := &mpimv1.Profile{}
		out = append(out, p)
		return rows.Scan(&p.UserId, &p.Username, &p.DisplayName, &p.AvatarUrl)
	}, "SELECT f.friend_id, COALESCE(u.username, ''), COALESCE(u.display_name, ''), COALESCE(u.avatar_url, '')"+
		" FROM "+readmodel.Friendships+" f LEFT JOIN "+readmodel.Users+" u ON u.user_id = f.friend_id WHERE f.user_id = ? ORDER BY f.friend_id LIMIT ?",
		string(user), MaxList)
	return out, err
}

// FriendRequests returns the pending requests to and from user, oldest
// first, at most MaxList each way.
func (s *Service) FriendRequests(ctx context.Context, user domain.UserID) (*mpimv1.FriendRequestList, error) {
	out := &mpimv1.FriendRequestList{}
	list := func(dst *[]*mpimv1.PendingFriendRequest, mine, other string) error {
		return s.query(ctx, "listing friend requests", func(rows *sql.Rows) error {
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
			" FROM "+readmodel.Requests+" r LEFT JOIN "+readmodel.Users+" u ON u.user_id = r."+other+
			" WHERE r."+mine+" = ? AND r.status = ? ORDER BY r.updated_at, r."+other+" LIMIT ?",
			string(user), readmodel.RequestPending, MaxList)
	}
	if err := list(&out.Incoming, "to_user", "from_user"); err != nil {
		return nil, err
	}
	if err := list(&out.Outgoing, "from_user", "to_user"); err != nil {
		return nil, err
	}
	return out, nil
}

// Blocks returns the users user blocks, by user id, at most MaxList.
func (s *Service) Blocks(ctx context.Context, user domain.UserID) ([]string, error) {
	var out []string
	err := s.query(ctx, "listing blocks", func(rows *sql.Rows) error {
		var b string
		if err := rows.Scan(&b); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	}, "SELECT blocked FROM "+readmodel.Blocks+" WHERE blocker = ? ORDER BY blocked LIMIT ?", string(user), MaxList)
	return out, err
}

// Blocking reports whether blocker blocks blocked, from the cache.
func (s *Service) Blocking(ctx context.Context, blocker, blocked domain.UserID) (bool, error) {
	ok, err := s.rdb.SIsMember(ctx, s.keys.Blocks(blocker), string(blocked)).Result()
	if err != nil {
		return false, unavailable("reading cached blocks", err)
	}
	return ok, nil
}
