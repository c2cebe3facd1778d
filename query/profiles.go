package query

import (
	"context"
	"database/sql"
	"errors"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/readmodel"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Profile returns user's profile from the cache, else from MySQL, or nil
// when neither has it (a user registered a moment ago is in neither yet;
// the caller may ask the log).
func (s *Service) Profile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	if p, err := s.cachedProfile(ctx, user); err != nil || p != nil {
		return p, err
	}
	return s.storedProfile(ctx, user)
}

// cachedProfile returns user's cached profile, or nil.
func (s *Service) cachedProfile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.Profile(user)).Result()
	if err != nil {
		return nil, unavailable("reading a cached profile", err)
	}
	if len(h) == 0 {
		return nil, nil
	}
	return &mpimv1.Profile{UserId: string(user), Username: h[cachekeys.ProfileUsername],
		DisplayName: h[cachekeys.ProfileName], AvatarUrl: h[cachekeys.ProfileAvatar]}, nil
}

// storedProfile returns user's profile row, or nil.
func (s *Service) storedProfile(ctx context.Context, user domain.UserID) (*mpimv1.Profile, error) {
	p := &mpimv1.Profile{UserId: string(user)}
	err := s.db.QueryRowContext(ctx, "SELECT username, display_name, avatar_url FROM "+readmodel.Users+" WHERE user_id = ?", string(user)).
		Scan(&p.Username, &p.DisplayName, &p.AvatarUrl)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, unavailable("reading a profile", err)
	}
	return p, nil
}
