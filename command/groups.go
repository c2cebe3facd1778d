package command

import (
	"context"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/oklog/ulid/v2"
)

// Group loads a group's state (cached).
func (s *Service) Group(ctx context.Context, id domain.GroupID) (*domain.Group, error) {
	return s.group(ctx, id, false)
}

func (s *Service) group(ctx context.Context, id domain.GroupID, fresh bool) (*domain.Group, error) {
	if !id.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "command: invalid group id %q", id)
	}
	return load(ctx, s, string(id), string(id), fresh,
		func(evs []domain.Event) (*domain.Group, error) { return domain.RebuildGroup(id, evs) })
}

// CreateGroup creates a group owned by the actor with a freshly minted id.
// Every member must be a registered user (ENotFound) who does not block the
// actor (EBlocked); see checkAdmission.
func (s *Service) CreateGroup(ctx context.Context, actor Actor, name string, members []domain.UserID, open bool) (domain.GroupID, Result, error) {
	id, err := domain.NewGroupID(ulid.Make().String())
	if err != nil {
		return "", Result{}, err
	}
	unique := make([]domain.UserID, 0, len(members))
	seen := map[domain.UserID]bool{actor.User: true}
	for _, u := range members {
		if !seen[u] {
			seen[u] = true
			unique = append(unique, u)
		}
	}
	if 1+len(unique) > s.policy.MaxGroupMembers {
		// Decide refuses it anyway; refuse before reading every member.
		return "", Result{}, domain.Errorf(domain.ETooLarge, "command: %d members exceed the limit of %d", 1+len(unique), s.policy.MaxGroupMembers)
	}
	if err := s.checkAdmission(ctx, actor.User, unique); err != nil {
		return "", Result{}, err
	}
	cmd := domain.CreateGroup{Group: id, Name: name, Owner: actor.User, Members: members, Open: open}
	res, err := s.UpdateGroup(ctx, actor, id, cmd)
	return id, res, err
}

// UpdateGroup runs a group command (add, join, leave, kick, role, rename,
// mute, unmute, unban, dissolve) with the exact expected version of the
// group. The user an AddMember adds must be registered and must not block
// the actor (see checkAdmission).
func (s *Service) UpdateGroup(ctx context.Context, actor Actor, id domain.GroupID, cmd domain.GroupCommand) (Result, error) {
	if !id.Valid() {
		return Result{}, domain.Errorf(domain.EInvalid, "command: invalid group id %q", id)
	}
	if c, ok := cmd.(domain.AddMember); ok {
		if err := s.checkAdmission(ctx, c.Actor, []domain.UserID{c.User}); err != nil {
			return Result{}, err
		}
	}
	return update(ctx, s, actor, string(id), string(id), "",
		func(evs []domain.Event) (*domain.Group, error) { return domain.RebuildGroup(id, evs) },
		func(g *domain.Group, now time.Time) ([]domain.Event, error) { return g.Decide(cmd, now, s.policy) })
}
