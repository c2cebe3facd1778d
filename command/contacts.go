package command

import (
	"context"
	"time"

	"github.com/mpim/mpim/domain"
)

// Relationship loads the contacts state of two users (cached).
func (s *Service) Relationship(ctx context.Context, a, b domain.UserID) (*domain.Relationship, error) {
	return s.relationship(ctx, a, b, false)
}

func (s *Service) relationship(ctx context.Context, a, b domain.UserID, fresh bool) (*domain.Relationship, error) {
	if _, err := domain.NewRelationship(a, b); err != nil {
		return nil, err
	}
	return load(ctx, s, domain.PairKey(a, b), domain.RelationshipID(a, b), fresh,
		func(evs []domain.Event) (*domain.Relationship, error) { return domain.RebuildRelationship(a, b, evs) })
}

// Contact runs a contacts command of the actor towards other (friend
// request, accept, decline, remove, block, unblock).
func (s *Service) Contact(ctx context.Context, actor Actor, other domain.UserID, cmd domain.RelationshipCommand) (Result, error) {
	a := actor.User
	if _, err := domain.NewRelationship(a, other); err != nil {
		return Result{}, err
	}
	return update(ctx, s, actor, domain.PairKey(a, other), domain.RelationshipID(a, other), "",
		func(evs []domain.Event) (*domain.Relationship, error) {
			return domain.RebuildRelationship(a, other, evs)
		},
		func(r *domain.Relationship, now time.Time) ([]domain.Event, error) {
			return r.Decide(cmd, now, s.policy)
		})
}
