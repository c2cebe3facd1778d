package command

import (
	"context"
	"sync"

	"github.com/mpim/mpim/domain"
)

// admissionWorkers bounds the concurrent reads of one admission check.
const admissionWorkers = 16

// checkAdmission returns nil if every user in users may be put into a group
// by actor: the user is registered (ENotFound naming the id otherwise) and
// does not block the actor (EBlocked). Of several failures it reports the
// one of the first user in users' order. Ids that are not well-formed, the
// actor and duplicates are left to the group's Decide.
//
// A group and a user (or a user pair) live in different partitions, so no
// append guard can tie the group's decision to them; the facts are read from
// the event store just before deciding. Registration is permanent (no event
// unregisters a user), so "registered" read now stays true. A block is not:
// one appended between this read and the group's append is missed, a window
// of one round trip, after which the blocker still controls the
// consequences (they leave the group, and the block keeps its own guarded
// effect on direct messages). The pair is read from the log, not from the
// state cache, because this service never appends to that pair here and a
// block made through another gateway would not show up as a conflict.
func (s *Service) checkAdmission(ctx context.Context, actor domain.UserID, users []domain.UserID) error {
	errs := make([]error, len(users))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(admissionWorkers, len(users)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs[i] = s.admissible(ctx, actor, users[i])
			}
		}()
	}
feed:
	for i := range users {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// admissible checks one user for checkAdmission.
func (s *Service) admissible(ctx context.Context, actor, user domain.UserID) error {
	if !user.Valid() || user == actor {
		return nil
	}
	// A user's first event is UserRegistered, appended with the username
	// claim; a user aggregate with a version is a registered user.
	v, _, err := s.store.Version(ctx, string(user), string(user))
	if err != nil {
		return domain.Errorf(domain.EUnavailable, "command: checking user %s: %w", user, err)
	}
	if v == 0 {
		return domain.Errorf(domain.ENotFound, "command: user %s not found", user)
	}
	if !actor.Valid() {
		return nil
	}
	pair := domain.RelationshipID(actor, user)
	if v, _, err = s.store.Version(ctx, domain.PairKey(actor, user), pair); err != nil {
		return domain.Errorf(domain.EUnavailable, "command: checking %s: %w", pair, err)
	}
	if v == 0 {
		return nil // the pair never did anything: no block
	}
	r, err := s.relationship(ctx, actor, user, true)
	if err != nil {
		return err
	}
	if r.Blocked(user) {
		return domain.Errorf(domain.EBlocked, "command: %s blocks %s", user, actor)
	}
	return nil
}
