package command

import (
	"context"
	"time"

	"github.com/mpim/mpim/domain"
)

// RegisterPushToken sets the push token of the actor's own device, which
// must be logged in (ENotFound otherwise). A token that fails
// domain.PushToken.Check is EInvalid; nothing is appended then.
func (s *Service) RegisterPushToken(ctx context.Context, actor Actor, token domain.PushToken) (Result, error) {
	if actor.Device == "" {
		return Result{}, domain.Errorf(domain.EInvalid, "command: a push token needs the caller's device")
	}
	return s.UpdateUser(ctx, actor, domain.RegisterPushToken{Device: actor.Device, Token: token})
}

// RemovePushToken removes the push token of the actor's own device, which
// must be logged in (ENotFound otherwise).
func (s *Service) RemovePushToken(ctx context.Context, actor Actor) (Result, error) {
	if actor.Device == "" {
		return Result{}, domain.Errorf(domain.EInvalid, "command: a push token needs the caller's device")
	}
	return s.UpdateUser(ctx, actor, domain.RemovePushToken{Device: actor.Device})
}

// MuteConversation records the actor's do-not-disturb of conv until until,
// or forever (until zero), on the actor's reader aggregate. The errors are
// domain.DecideMute's (EInvalid for an end that is not after now or more
// than the policy's MaxMute ahead).
func (s *Service) MuteConversation(ctx context.Context, actor Actor, conv domain.ConversationID, until time.Time, forever bool) (Result, error) {
	events, err := domain.DecideMute(domain.MuteConversation{User: actor.User, Conversation: conv, Until: until, Forever: forever}, s.cfg.Now(), s.policy)
	if err != nil {
		return Result{}, err
	}
	return s.appendReader(ctx, actor, events)
}

// UnmuteConversation lifts the actor's mute of conv (appended also when
// there is none).
func (s *Service) UnmuteConversation(ctx context.Context, actor Actor, conv domain.ConversationID) (Result, error) {
	events, err := domain.DecideUnmute(domain.UnmuteConversation{User: actor.User, Conversation: conv})
	if err != nil {
		return Result{}, err
	}
	return s.appendReader(ctx, actor, events)
}
