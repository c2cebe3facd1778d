package gateway

import (
	"context"
	"errors"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// accounts registers users and opens and closes their sessions: passwords
// are hashed here and only the hash reaches the domain; logins issue tokens
// that resume sessions on any gateway. It is safe for concurrent use.
type accounts struct {
	cmd      *command.Service
	pw       *passwords
	tokens   *tokens
	throttle *loginThrottle
}

// register creates an account for a client at addr (the connection's
// remote address). The cheap checks come first: the password's rules, the
// address's password attempts (rate_limited) and whether the name is free
// (exists), so that only a registration that can succeed waits for a
// hashing slot, behind every waiting login.
func (a *accounts) register(ctx context.Context, q *mpimv1.RegisterRequest, addr string) (*mpimv1.RegisterResult, error) {
	name, err := a.cmd.Policy().NormalizeUsername(q.GetUsername())
	if err != nil {
		return nil, err
	}
	if err := checkPassword(q.GetPassword()); err != nil {
		return nil, err
	}
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return nil, err
	}
	if _, err := a.cmd.LookupUsername(ctx, name); err == nil {
		return nil, domain.Errorf(domain.EExists, "gateway: username %q is taken", name)
	} else if domain.ErrorCode(err) != domain.ENotFound {
		return nil, err
	}
	hash, err := a.pw.hash(ctx, q.GetPassword())
	if err != nil {
		return nil, err
	}
	id, err := a.cmd.Register(ctx, name, hash, q.GetDisplayName(), "")
	if err != nil {
		return nil, err
	}
	return &mpimv1.RegisterResult{UserId: string(id), Username: name}, nil
}

// errBadCredentials is the one answer to every failed login, so a client
// cannot tell an unknown username from a wrong password.
var errBadCredentials = domain.Errorf(codeBadCredentials, "gateway: wrong username or password")

// login checks a username and password, records the device's login and
// issues a token. It takes as long for an unknown username as for a wrong
// password.
//
// Before any password is checked the attempt passes the throttle (see
// loginThrottle): the address's password attempts, then the failures of
// the username from this address (addr, the connection's remote address)
// and of the address, where the attempt is counted as a failure until it
// succeeds. Over a limit the login is refused with rate_limited and the
// wait.
func (a *accounts) login(ctx context.Context, q *mpimv1.LoginRequest, addr string) (identity, string, *mpimv1.Profile, error) {
	fail := func(err error) (identity, string, *mpimv1.Profile, error) { return identity{}, "", nil, err }
	name := throttleName(a.cmd.Policy(), q.GetUsername())
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return fail(err)
	}
	if err := a.throttle.attempt(ctx, name, addr); err != nil {
		return fail(err)
	}
	bad := func() (identity, string, *mpimv1.Profile, error) { return fail(errBadCredentials) }
	if len(q.GetPassword()) > maxPasswordBytes {
		return bad()
	}
	id, err := a.cmd.LookupUsername(ctx, q.GetUsername())
	if c := domain.ErrorCode(err); c == domain.ENotFound || c == domain.EInvalid {
		if _, err := a.pw.verify(ctx, a.pw.dummy, q.GetPassword()); err != nil {
			return fail(err)
		}
		return bad()
	} else if err != nil {
		return fail(err)
	}
	user, err := a.cmd.User(ctx, id)
	if err != nil {
		return fail(err)
	}
	ok, err := a.pw.verify(ctx, user.PasswordHash(), q.GetPassword())
	if err != nil {
		return fail(err)
	}
	if !ok {
		return bad()
	}
	if err := a.throttle.succeeded(ctx, name, addr); err != nil {
		return fail(err)
	}
	device := domain.DeviceID(q.GetDeviceId())
	if _, err := a.cmd.UpdateUser(ctx, command.Actor{User: id, Device: device}, domain.LogIn{Device: device, Platform: q.GetPlatform()}); err != nil {
		return fail(err)
	}
	token, ident, err := a.tokens.issue(ctx, id, device)
	if err != nil {
		return fail(err)
	}
	p := &mpimv1.Profile{UserId: string(id), Username: user.Username(), DisplayName: user.DisplayName(), AvatarUrl: user.AvatarURL()}
	return ident, token, p, nil
}

// resume returns the identity of a token.
func (a *accounts) resume(ctx context.Context, token string) (identity, error) {
	return a.tokens.resolve(ctx, token)
}

// logout revokes the device's tokens and records the device's logout.
func (a *accounts) logout(ctx context.Context, id identity) error {
	if err := a.tokens.revokeDevice(ctx, id.user, id.device); err != nil {
		return err
	}
	_, err := a.cmd.UpdateUser(ctx, command.Actor{User: id.user, Device: id.device}, domain.LogOut{Device: id.device})
	if errors.Is(err, domain.ErrNotFound) {
		err = nil // the device's session was already ended (on another connection)
	}
	return err
}
