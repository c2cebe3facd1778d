package command_test

import (
	"context"
	"testing"

	"github.com/mpim/mpim/domain"
)

func TestGroupMembersMustBeRegistered(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	owner, bob := e.register(t, "owner"), e.register(t, "bob")
	ghost := domain.UserID("u/01J0000000000000000000GHST")

	t.Run("create with an unknown member is not found", func(t *testing.T) {
		_, _, err := e.svc.CreateGroup(ctx, owner, "team", []domain.UserID{bob.User, ghost}, false)
		wantCode(t, err, domain.ENotFound)
	})
	gid, _, err := e.svc.CreateGroup(ctx, owner, "team", []domain.UserID{bob.User}, false)
	wantCode(t, err, "")
	t.Run("adding an unknown user is not found", func(t *testing.T) {
		_, err := e.svc.UpdateGroup(ctx, owner, gid, domain.AddMember{Actor: owner.User, User: ghost})
		wantCode(t, err, domain.ENotFound)
	})
}

func TestBlockerCannotBePutInAGroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alice, mallory, carol := e.register(t, "alice"), e.register(t, "mallory"), e.register(t, "carol")
	_, err := e.svc.Contact(ctx, alice, mallory.User, domain.Block{By: alice.User})
	wantCode(t, err, "")

	t.Run("create with the blocker is blocked", func(t *testing.T) {
		_, _, err := e.svc.CreateGroup(ctx, mallory, "trap", []domain.UserID{carol.User, alice.User}, true)
		wantCode(t, err, domain.EBlocked)
	})
	gid, _, err := e.svc.CreateGroup(ctx, mallory, "trap", []domain.UserID{carol.User}, true)
	wantCode(t, err, "")
	t.Run("adding the blocker is blocked", func(t *testing.T) {
		_, err := e.svc.UpdateGroup(ctx, mallory, gid, domain.AddMember{Actor: mallory.User, User: alice.User})
		wantCode(t, err, domain.EBlocked)
	})
	t.Run("someone the blocker does not block may add them", func(t *testing.T) {
		_, err := e.svc.UpdateGroup(ctx, carol, gid, domain.AddMember{Actor: carol.User, User: alice.User})
		wantCode(t, err, "")
	})
	t.Run("after unblocking the add works", func(t *testing.T) {
		g2, _, err := e.svc.CreateGroup(ctx, mallory, "later", nil, true)
		wantCode(t, err, "")
		_, err = e.svc.Contact(ctx, alice, mallory.User, domain.Unblock{By: alice.User})
		wantCode(t, err, "")
		_, err = e.svc.UpdateGroup(ctx, mallory, g2, domain.AddMember{Actor: mallory.User, User: alice.User})
		wantCode(t, err, "")
	})
}
