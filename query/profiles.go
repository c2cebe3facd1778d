package query

import (
	"context"
	"database/sql"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/pipeline"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/redis/go-redis/v9"
)

// maxStoredProfiles bounds the users of one query of the profile rows.
const maxStoredProfiles = 1000

// Profile returns user's profile from the cache, else from MySQL, or nil
// when neither has it (a user registered a moment ago is in neither yet;
// the caller may ask the log).
func (s *Service) Profile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	ps, err := s.Profiles(ctx, []domain.UserID{user})
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// Profiles returns each user's profile as Profile does, in the order of
// users: the cached ones in one round trip (a pipeline) per pipeline.MaxCommands
// users, the others in one MySQL query per maxStoredProfiles of them.
func (s *Service) Profiles(ctx context.Context, users []domain.UserID) ([]*mpimv1.Profile, error) {
	cmds, err := pipeline.Chunked(ctx, s.rdb, len(users), func(p redis.Pipeliner, i int) *redis.MapStringStringCmd {
		return p.HGetAll(ctx, s.keys.Profile(users[i]))
	})
	if err != nil {
		return nil, unavailable("reading cached profiles", err)
	}
	out := make([]*mpimv1.Profile, len(users))
	missing := map[domain.UserID][]int{} // user -> its indexes in users
	for i, c := range cmds {
		h, err := c.Result()
		if err != nil {
			return nil, unavailable("reading a cached profile", err)
		}
		if len(h) == 0 {
			missing[users[i]] = append(missing[users[i]], i)
			continue
		}
		out[i] = &mpimv1.Profile{UserId: string(users[i]), Username: h[cachekeys.ProfileUsername],
			DisplayName: h[cachekeys.ProfileName], AvatarUrl: h[cachekeys.ProfileAvatar]}
	}
	if err := s.storedProfiles(ctx, missing, out); err != nil {
		return nil, err
	}
	return out, nil
}

// storedProfiles sets out[i] to the profile row of each user of missing,
// for each i it lists; it leaves nil those without a row.
func (s *Service) storedProfiles(ctx context.Context, missing map[domain.UserID][]int, out []*mpimv1.Profile) error {
	args := make([]any, 0, min(len(missing), maxStoredProfiles))
	scan := func(rows *sql.Rows) error {
		p := &mpimv1.Profile{}
		if err := rows.Scan(&p.UserId, &p.Username, &p.DisplayName, &p.AvatarUrl); err != nil {
			return err
		}
		for _, i := range missing[domain.UserID(p.UserId)] {
			out[i] = p
		}
		return nil
	}
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		err := s.query(ctx, "reading profiles", scan, "SELECT user_id, username, display_name, avatar_url FROM "+readmodel.Users+
			" WHERE user_id IN ("+placeholders(len(args))+")", args...)
		args = args[:0]
		return err
	}
	for u := range missing {
		if args = append(args, string(u)); len(args) == maxStoredProfiles {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
