package query

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/mpim/mpim/internal/pipeline"
	"github.com/redis/go-redis/v9"
)

// The push settings a push notifier reads: the cache model's per-user
// hashes of device tokens and of do-not-disturb (internal/cachekeys), for
// many users at once, in one round trip (a pipeline) per pipeline.MaxCommands
// users. Like the rest of the cache they lag the log by the cache
// projector's batch: a token registered a moment ago may not be there yet,
// and a device logged out a moment ago may still be.

// PushTargets returns the push tokens of each user's devices, in the order
// of users, each sorted by device id; none for a user without any. A
// stored value that does not decode (a bug or a foreign writer) is left
// out rather than failing the others; a Redis failure is EUnavailable, a
// malformed id EInvalid.
func (s *Service) PushTargets(ctx context.Context, users []domain.UserID) ([][]domain.DeviceToken, error) {
	for _, u := range users {
		if !u.Valid() {
			return nil, domain.Errorf(domain.EInvalid, "query: invalid user id %q", u)
		}
	}
	cmds, err := pipeline.Chunked(ctx, s.rdb, len(users), func(p redis.Pipeliner, i int) *redis.MapStringStringCmd {
		return p.HGetAll(ctx, s.keys.Push(users[i]))
	})
	if err != nil {
		return nil, unavailable("reading push tokens", err)
	}
	out := make([][]domain.DeviceToken, len(users))
	for i, c := range cmds {
		if out[i], err = pushTargets(c); err != nil {
			return nil, unavailable("reading push tokens", err)
		}
	}
	return out, nil
}

// pushTargets decodes the answer of a push token hash's HGETALL.
func pushTargets(c *redis.MapStringStringCmd) ([]domain.DeviceToken, error) {
	h, err := c.Result()
	if err != nil || len(h) == 0 {
		return nil, err
	}
	out := make([]domain.DeviceToken, 0, len(h))
	for dev, v := range h {
		t, err := cachekeys.DecodePushToken(v)
		if err != nil {
			continue
		}
		out = append(out, domain.DeviceToken{Device: domain.DeviceID(dev), PushToken: t})
	}
	slices.SortFunc(out, func(a, b domain.DeviceToken) int { return cmp.Compare(a.Device, b.Device) })
	return out, nil
}

// Muted reports, for each i, whether users[i]'s do-not-disturb of convs[i]
// is in force at at: a mute without end, or one that ends after at. A
// Redis failure is EUnavailable; a malformed id, or slices of different
// lengths, EInvalid.
func (s *Service) Muted(ctx context.Context, users []domain.UserID, convs []domain.ConversationID, at time.Time) ([]bool, error) {
	if len(users) != len(convs) {
		return nil, domain.Errorf(domain.EInvalid, "query: %d users for %d conversations", len(users), len(convs))
	}
	for i := range users {
		if !users[i].Valid() || !convs[i].Valid() {
			return nil, domain.Errorf(domain.EInvalid, "query: invalid user %q or conversation %q", users[i], convs[i])
		}
	}
	cmds, err := pipeline.Chunked(ctx, s.rdb, len(users), func(p redis.Pipeliner, i int) *redis.StringCmd {
		return p.HGet(ctx, s.keys.DoNotDisturb(users[i]), string(convs[i]))
	})
	if err != nil {
		return nil, unavailable("reading mutes", err)
	}
	out := make([]bool, len(users))
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return nil, unavailable("reading a mute", err)
		}
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, domain.Errorf(domain.EInternal, "query: mute of %s by %s is %q, not Unix milliseconds", convs[i], users[i], v)
		}
		var until time.Time
		if ms > 0 {
			until = time.UnixMilli(ms)
		}
		out[i] = domain.Muted(until, at)
	}
	return out, nil
}
