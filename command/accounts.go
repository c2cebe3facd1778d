package command

import (
	"context"
	"errors"

	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/oklog/ulid/v2"
)

// Register creates a user and claims the username in one atomic append: the
// user id is minted in the username's partition, so both aggregates are
// appended with "no stream" by one script. Of concurrent registrations of one
// name exactly one succeeds; the others get an EExists error. A retry with
// the same requestID (within the idempotency TTL) returns the same user.
func (s *Service) Register(ctx context.Context, username, passwordHash, displayName, requestID string) (domain.UserID, error) {
	return s.RegisterSealed(ctx, username, func(domain.UserID) (string, error) { return passwordHash, nil }, displayName, requestID)
}

// RegisterSealed is Register with the password hash made for the new user's
// id, once it is minted: passwordHash(user) seals the hash to its owner
// (see internal/sealed), so the log never holds a hash in the clear.
func (s *Service) RegisterSealed(ctx context.Context, username string, passwordHash func(domain.UserID) (string, error), displayName, requestID string) (domain.UserID, error) {
	name, err := s.policy.NormalizeUsername(username)
	if err != nil {
		return "", err
	}
	nameAgg := domain.UsernameAggregate(name)
	p := s.store.PartitionOf(nameAgg)
	var user domain.UserID
	for {
		user = domain.UserID("u/" + ulid.Make().String())
		if s.store.PartitionOf(string(user)) == p {
			break
		}
	}
	now := s.cfg.Now()
	u, err := domain.NewUser(user)
	if err != nil {
		return "", err
	}
	hash, err := passwordHash(user)
	if err != nil {
		return "", err
	}
	regEvents, err := u.Decide(domain.RegisterUser{User: user, Username: name, PasswordHash: hash, DisplayName: displayName}, now, s.policy)
	if err != nil {
		return "", err
	}
	n, err := domain.NewUsername(name)
	if err != nil {
		return "", err
	}
	claim, err := n.Decide(domain.ClaimUsername{Username: name, User: user}, now, s.policy)
	if err != nil {
		return "", err
	}
	actor := Actor{User: user}
	claimEnv, err := s.envelopes(actor, nameAgg, now, claim)
	if err != nil {
		return "", err
	}
	regEnv, err := s.envelopes(actor, string(user), now, regEvents)
	if err != nil {
		return "", err
	}
	var idem eventstore.IdempotencyKey
	if requestID != "" {
		idem = eventstore.IdempotencyKey("register:" + requestID)
	}
	res, err := s.store.Append(ctx, eventstore.AppendRequest{
		PartitionKey: nameAgg, IdempotencyKey: idem,
		Streams: []eventstore.StreamAppend{
			{Aggregate: nameAgg, Expected: eventstore.NoStream, KeepHistory: true, Events: claimEnv},
			{Aggregate: string(user), Expected: eventstore.NoStream, KeepHistory: true, Events: regEnv},
		},
	})
	if errors.Is(err, domain.ErrConflict) {
		return "", domain.Errorf(domain.EExists, "command: username %q is taken", name)
	}
	if err != nil {
		return "", err
	}
	if res.Duplicate {
		return s.LookupUsername(ctx, name)
	}
	return user, nil
}

// LookupUsername returns the owner of a username, or an ENotFound error.
func (s *Service) LookupUsername(ctx context.Context, username string) (domain.UserID, error) {
	name, err := s.policy.NormalizeUsername(username)
	if err != nil {
		return "", err
	}
	agg := domain.UsernameAggregate(name)
	events, err := s.history(ctx, agg, agg)
	if err != nil {
		return "", err
	}
	n, err := domain.RebuildUsername(name, events)
	if err != nil {
		return "", err
	}
	owner, ok := n.Owner()
	if !ok {
		return "", domain.Errorf(domain.ENotFound, "command: no user %q", name)
	}
	return owner, nil
}

// User loads a user's current state from the event store (not from the
// in-process cache): from its snapshot and the events after it, a bounded
// read however many logins the user had (see fetchUser).
func (s *Service) User(ctx context.Context, id domain.UserID) (*domain.User, error) {
	if !id.Valid() {
		return nil, domain.Errorf(domain.EInvalid, "command: invalid user id %q", id)
	}
	return s.fetchUser(ctx, id)
}

// UpdateUser runs a user command on the actor's own user aggregate.
func (s *Service) UpdateUser(ctx context.Context, actor Actor, cmd domain.UserCommand) (Result, error) {
	if !actor.User.Valid() {
		return Result{}, domain.Errorf(domain.EUnauthorized, "command: no valid actor")
	}
	id := actor.User
	return updateWith(ctx, s, actor, string(id), string(id), "",
		func(ctx context.Context) (*domain.User, error) { return s.fetchUser(ctx, id) },
		func(u *domain.User, now time.Time) ([]domain.Event, error) { return u.Decide(cmd, now, s.policy) })
}
