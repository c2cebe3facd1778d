package query

import (
	"context"
	"slices"

	"github.com/mpim/mpim/domain"
)

// FriendIDs returns the ids of user's friends from the cache, sorted: the
// users whose presence user may see. Whether they are online is the
// delivery hub's to tell (see the package doc).
func (s *Service) FriendIDs(ctx context.Context, user domain.UserID) ([]domain.UserID, error) {
	fs, err := s.rdb.SMembers(ctx, s.keys.Friends(user)).Result()
	if err != nil {
		return nil, unavailable("reading cached friends", err)
	}
	slices.Sort(fs)
	return userIDs(fs), nil
}

// userIDs converts user ids as Redis returns them.
func userIDs(ss []string) []domain.UserID {
	out := make([]domain.UserID, len(ss))
	for i, s := range ss {
		out[i] = domain.UserID(s)
	}
	return out
}
