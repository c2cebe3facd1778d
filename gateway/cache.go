package gateway

import (
	"context"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// cache reads the Redis read models of internal/cachekeys, which the cache
// projector writes: the hot paths (typing, presence, profiles) read them
// instead of MySQL. They lag the log like every read model. It is safe for
// concurrent use.
type cache struct {
	rdb  redis.UniversalClient
	keys cachekeys.Keys
}

// profile returns user's cached profile, or nil.
func (c *cache) profile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	h, err := c.rdb.HGetAll(ctx, c.keys.Profile(user)).Result()
	if err != nil {
		return nil, unavailable("reading a cached profile", err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	return &mpimv1.Profile{UserId: string(user), Username: h[cachekeys.ProfileUsername],
		DisplayName: h[cachekeys.ProfileName], AvatarUrl: h[cachekeys.ProfileAvatar]}, nil
}

// friends returns user's friends.
func (c *cache) friends(ctx context.Context, user domain.UserID) ([]domain.UserID, error) {
	fs, err := c.rdb.SMembers(ctx, c.keys.Friends(user)).Result()
	if err != nil {
		return nil, unavailable("reading cached friends", err)
	}
	return userIDs(fs), nil
}

// members returns the members of group.
func (c *cache) members(ctx context.Context, group domain.GroupID) ([]domain.UserID, error) {
	ms, err := c.rdb.HKeys(ctx, c.keys.Members(group)).Result()
	if err != nil {
		return nil, unavailable("reading cached members", err)
	}
	return userIDs(ms), nil
}

// userIDs converts user ids as Redis returns them.
func userIDs(ss []string) []domain.UserID {
	out := make([]domain.UserID, len(ss))
	for i, s := range ss {
		out[i] = domain.UserID(s)
	}
	return out
}

// blocks reports whether blocker blocks blocked.
func (c *cache) blocks(ctx context.Context, blocker, blocked domain.UserID) (bool, error) {
	ok, err := c.rdb.SIsMember(ctx, c.keys.Blocks(blocker), string(blocked)).Result()
	if err != nil {
		return false, unavailable("reading cached blocks", err)
	}
	return ok, nil
}
