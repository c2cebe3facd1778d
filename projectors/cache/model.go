package cache

import (
	"context"
	"strconv"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/cachekeys"
	"github.com/redis/go-redis/v9"
)

// write queues on pipe the model's writes for one event of aggregate agg.
// Events that change nothing in the model queue nothing. Membership follows
// domain.Group.Apply, contacts domain.Relationship.Apply (a block ends the
// friendship).
func (p *Projector) write(ctx context.Context, pipe redis.Pipeliner, agg string, ev domain.Event) {
	k := p.keys
	switch e := ev.(type) {
	case domain.UserRegistered:
		pipe.HSet(ctx, k.Profile(e.User), cachekeys.ProfileUsername, e.Username, cachekeys.ProfileName, e.DisplayName, cachekeys.ProfileAvatar, "")
	case domain.ProfileUpdated:
		pipe.HSet(ctx, k.Profile(domain.UserID(agg)), cachekeys.ProfileName, e.DisplayName, cachekeys.ProfileAvatar, e.AvatarURL)
	case domain.FriendRequestAccepted:
		pipe.SAdd(ctx, k.Friends(e.From), string(e.By))
		pipe.SAdd(ctx, k.Friends(e.By), string(e.From))
	case domain.FriendRemoved:
		pipe.SRem(ctx, k.Friends(e.By), string(e.Other))
		pipe.SRem(ctx, k.Friends(e.Other), string(e.By))
	case domain.UserBlocked:
		pipe.SAdd(ctx, k.Blocks(e.Blocker), string(e.Blocked))
		pipe.SAdd(ctx, k.BlockedBy(e.Blocked), string(e.Blocker))
		pipe.SRem(ctx, k.Friends(e.Blocker), string(e.Blocked))
		pipe.SRem(ctx, k.Friends(e.Blocked), string(e.Blocker))
	case domain.UserUnblocked:
		pipe.SRem(ctx, k.Blocks(e.Blocker), string(e.Blocked))
		pipe.SRem(ctx, k.BlockedBy(e.Blocked), string(e.Blocker))
	case domain.GroupCreated:
		pipe.HSet(ctx, k.GroupInfo(e.Group), cachekeys.GroupName, e.Name, cachekeys.GroupOwner, string(e.Owner), cachekeys.GroupOpen, flag(e.Open), cachekeys.GroupDissolved, "0")
		roles := make([]any, 0, 2+2*len(e.Members))
		for _, u := range e.Members {
			roles = append(roles, string(u), domain.RoleMember.String())
			pipe.SAdd(ctx, k.Groups(u), string(e.Group))
		}
		roles = append(roles, string(e.Owner), domain.RoleOwner.String())
		pipe.SAdd(ctx, k.Groups(e.Owner), string(e.Group))
		pipe.HSet(ctx, k.Members(e.Group), roles...)
	case domain.MemberAdded:
		p.join(ctx, pipe, domain.GroupID(agg), e.User)
	case domain.MemberJoined:
		p.join(ctx, pipe, domain.GroupID(agg), e.User)
	case domain.MemberLeft:
		p.leave(ctx, pipe, domain.GroupID(agg), e.User)
	case domain.MemberKicked:
		p.leave(ctx, pipe, domain.GroupID(agg), e.User)
	case domain.MemberRoleChanged:
		pipe.HSet(ctx, k.Members(domain.GroupID(agg)), string(e.User), e.Role.String())
	case domain.GroupRenamed:
		pipe.HSet(ctx, k.GroupInfo(domain.GroupID(agg)), cachekeys.GroupName, e.Name)
	case domain.MemberMuted:
		pipe.HSet(ctx, k.Muted(domain.GroupID(agg)), string(e.User), strconv.FormatInt(unixMilli(e.Until), 10))
	case domain.MemberUnmuted:
		pipe.HDel(ctx, k.Muted(domain.GroupID(agg)), string(e.User))
	case domain.GroupDissolved:
		pipe.HSet(ctx, k.GroupInfo(domain.GroupID(agg)), cachekeys.GroupDissolved, "1")
	case domain.DeviceLoggedOut:
		pipe.HDel(ctx, k.Push(domain.UserID(agg)), string(e.Device))
	case domain.PushTokenRegistered:
		pipe.HSet(ctx, k.Push(domain.UserID(agg)), string(e.Device), cachekeys.EncodePushToken(e.PushToken))
	case domain.PushTokenRemoved:
		pipe.HDel(ctx, k.Push(domain.UserID(agg)), string(e.Device))
	case domain.ConversationMuted:
		pipe.HSet(ctx, k.DoNotDisturb(e.User), string(e.Conversation), strconv.FormatInt(unixMilli(e.Until), 10))
	case domain.ConversationUnmuted:
		pipe.HDel(ctx, k.DoNotDisturb(e.User), string(e.Conversation))
	}
}

// join makes u a plain member of g. The domain decides joins only for
// non-members, so the role it sets is never a demotion.
func (p *Projector) join(ctx context.Context, pipe redis.Pipeliner, g domain.GroupID, u domain.UserID) {
	pipe.HSet(ctx, p.keys.Members(g), string(u), domain.RoleMember.String())
	pipe.SAdd(ctx, p.keys.Groups(u), string(g))
}

// leave removes u from g, with u's mute.
func (p *Projector) leave(ctx context.Context, pipe redis.Pipeliner, g domain.GroupID, u domain.UserID) {
	pipe.HDel(ctx, p.keys.Members(g), string(u))
	pipe.HDel(ctx, p.keys.Muted(g), string(u))
	pipe.SRem(ctx, p.keys.Groups(u), string(g))
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// unixMilli returns t in Unix milliseconds, 0 for the zero time (a mute
// without end).
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
