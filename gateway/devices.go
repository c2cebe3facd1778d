package gateway

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/domain"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/mpim/mpim/query"
)

// statusLoggedOut closes a connection whose device was logged out from
// another device (logoutDevice, logoutOtherDevices, changePassword): its
// tokens are revoked, so the client must log in again rather than
// reconnect.
const statusLoggedOut websocket.StatusCode = 4003

// reasonLoggedOut is the disconnect reason of such a connection (the
// mpim_gateway_disconnects_total label).
const reasonLoggedOut = "logged_out"

// Why a device's connections are ended, as the close reason tells it.
const (
	endLoggedOut       = "logged out from another device"
	endPasswordChanged = "password changed on another device"
)

// devices carries out a caller's requests about its own sessions: change
// the password, list the devices, log out one device or every other one.
// Logging a device out revokes its tokens first (so it cannot resume),
// records DeviceLoggedOut in the log, then ends its live connections on
// every gateway through the hub (close code 4003). It is safe for
// concurrent use.
type devices struct {
	acc *accounts
	hub Hub
	q   *query.Service
	// maxListed bounds listDevices.
	maxListed int
}

// handle answers the session requests of the connection from addr (its
// remote address); ok is false for any other request.
func (d *devices) handle(ctx context.Context, me *caller, addr string, f *mpimv1.ClientFrame) (resp *mpimv1.Response, ok bool, err error) {
	r := &mpimv1.Response{Id: f.GetId()}
	switch q := f.GetRequest().(type) {
	case *mpimv1.ClientFrame_ChangePassword:
		err = d.changePassword(ctx, me, addr, q.ChangePassword)
		r.Result = &mpimv1.Response_ChangePassword{ChangePassword: done}
	case *mpimv1.ClientFrame_ListDevices:
		var l *mpimv1.DeviceList
		l, err = d.list(ctx, me)
		r.Result = &mpimv1.Response_ListDevices{ListDevices: l}
	case *mpimv1.ClientFrame_LogoutDevice:
		err = d.logoutDevice(ctx, me, q.LogoutDevice.GetDeviceId())
		r.Result = &mpimv1.Response_LogoutDevice{LogoutDevice: done}
	case *mpimv1.ClientFrame_LogoutOtherDevices:
		err = d.logoutOthers(ctx, me, endLoggedOut)
		r.Result = &mpimv1.Response_LogoutOtherDevices{LogoutOtherDevices: done}
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return r, true, nil
}

// changePassword checks the caller's current password, records the hash of
// the new one (hashed as at registration) and logs out every other device
// of the caller. The check passes the login throttle as a login of the
// caller's username from addr does (the address's password attempts, the
// failures of the username there): a wrong current password is
// bad_credentials and counts as a failed login, and over a limit the
// request is rate_limited, so a stolen session cannot guess the password
// faster than logins could. A new password that registration would refuse
// is invalid (too_large if too long).
func (d *devices) changePassword(ctx context.Context, me *caller, addr string, q *mpimv1.ChangePasswordRequest) error {
	if err := checkPassword(q.GetNewPassword()); err != nil {
		return err
	}
	a := d.acc
	user, err := a.cmd.User(ctx, me.user)
	if err != nil {
		return err
	}
	name := throttleName(a.cmd.Policy(), user.Username())
	if err := a.throttle.hashAttempt(ctx, addr); err != nil {
		return err
	}
	if err := a.throttle.attempt(ctx, name, addr); err != nil {
		return err
	}
	if len(q.GetOldPassword()) > maxPasswordBytes {
		return errBadCredentials
	}
	ok, err := a.pw.verify(ctx, user.PasswordHash(), q.GetOldPassword())
	if err != nil {
		return err
	}
	if !ok {
		return errBadCredentials
	}
	if err := a.throttle.succeeded(ctx, name, addr); err != nil {
		return err
	}
	hash, err := a.pw.hash(ctx, q.GetNewPassword())
	if err != nil {
		return err
	}
	if _, err := a.cmd.UpdateUser(ctx, me.actor(), domain.ChangePassword{PasswordHash: hash}); err != nil {
		return err
	}
	return d.logoutOthers(ctx, me, endPasswordChanged)
}

// logoutOthers logs out every device of the caller but its own: the tokens
// of those devices are revoked, each device with a session in the log gets
// DeviceLoggedOut, and every one of them that is connected is closed.
func (d *devices) logoutOthers(ctx context.Context, me *caller, why string) error {
	a := d.acc
	revoked, err := a.tokens.revokeOthers(ctx, me.user, me.device)
	if err != nil {
		return err
	}
	user, err := a.cmd.User(ctx, me.user)
	if err != nil {
		return err
	}
	ended := revoked
	for _, dev := range user.Devices() {
		if dev.ID != me.device && !slices.Contains(ended, dev.ID) {
			ended = append(ended, dev.ID)
		}
	}
	if _, err := a.cmd.UpdateUser(ctx, me.actor(), domain.LogOutOthers{Keep: me.device}); err != nil {
		return err
	}
	return d.end(ctx, me.user, ended, why)
}

// logoutDevice logs out one other device of the caller. An empty or
// malformed device id is invalid, the caller's own device too (logout ends
// it); a device with neither a session nor a token is not_found.
func (d *devices) logoutDevice(ctx context.Context, me *caller, device string) error {
	id := domain.DeviceID(device)
	if !validDevice(id) {
		return domain.Errorf(domain.EInvalid, "gateway: invalid device id %q", device)
	}
	if id == me.device {
		return domain.Errorf(domain.EInvalid, "gateway: %q is this connection's device; log it out with logout", device)
	}
	a := d.acc
	n, err := a.tokens.revokeDeviceCount(ctx, me.user, id)
	if err != nil {
		return err
	}
	_, err = a.cmd.UpdateUser(ctx, me.actor(), domain.LogOut{Device: id})
	if errors.Is(err, domain.ErrNotFound) && n > 0 {
		err = nil // tokens without a session in the log (it ended elsewhere)
	}
	if err != nil {
		return err
	}
	return d.end(ctx, me.user, []domain.DeviceID{id}, endLoggedOut)
}

// end closes the live connections of devices of user on every gateway. The
// devices are logged out already: a failure is unavailable, and asking
// again ends what is left.
func (d *devices) end(ctx context.Context, user domain.UserID, devs []domain.DeviceID, why string) error {
	if len(devs) == 0 {
		return nil
	}
	if err := d.hub.End(ctx, user, devs, why); err != nil {
		if domain.ErrorCode(err) == domain.EInternal {
			err = unavailable("ending the devices' connections", err)
		}
		return err
	}
	return nil
}

// list returns the caller's logged-in devices from the read model (which
// lags the log by the projector's batch), most recent login first, at most
// maxListed, with each device's presence from the hub.
func (d *devices) list(ctx context.Context, me *caller) (*mpimv1.DeviceList, error) {
	devs, err := d.q.Devices(ctx, me.user, d.maxListed)
	if err != nil {
		return nil, err
	}
	out := &mpimv1.DeviceList{Devices: devs}
	presence, err := d.hub.DevicePresence(ctx, me.user)
	if err != nil {
		if domain.ErrorCode(err) == domain.EInternal {
			err = unavailable("reading presence", err)
		}
		return nil, err
	}
	for _, dev := range out.Devices {
		p := presence[domain.DeviceID(dev.DeviceId)]
		dev.Online = p.Online
		if !p.LastSeen.IsZero() {
			dev.LastSeenMs = p.LastSeen.UnixMilli()
		}
		dev.Current = dev.DeviceId == string(me.device)
	}
	return out, nil
}

// validDevice reports whether id is a device id a login accepts: 1 to 64
// printable ASCII bytes, no space.
func validDevice(id domain.DeviceID) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// revokeOthers ends every token of user's devices other than keep and
// returns those devices (each once).
func (t *tokens) revokeOthers(ctx context.Context, user domain.UserID, keep domain.DeviceID) ([]domain.DeviceID, error) {
	now := t.now().UTC().Truncate(time.Millisecond)
	fail := func(err error) ([]domain.DeviceID, error) {
		return nil, domain.Errorf(domain.EUnavailable, "gateway: revoking tokens: %w", err)
	}
	_, err := t.db.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE user_id = ? AND device_id <> ? AND revoked_at IS NULL",
		now, string(user), string(keep))
	if err != nil {
		return fail(err)
	}
	// The rows this revocation marked (a concurrent one in the same
	// millisecond may add its own devices: ending them twice is harmless).
	rows, err := t.db.QueryContext(ctx, "SELECT DISTINCT device_id FROM auth_tokens WHERE user_id = ? AND device_id <> ? AND revoked_at = ?",
		string(user), string(keep), now)
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	var out []domain.DeviceID
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return fail(err)
		}
		out = append(out, domain.DeviceID(d))
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	return out, nil
}

// revokeDeviceCount ends every token of a user's device and returns how
// many were live.
func (t *tokens) revokeDeviceCount(ctx context.Context, user domain.UserID, device domain.DeviceID) (int64, error) {
	res, err := t.db.ExecContext(ctx, "UPDATE auth_tokens SET revoked_at = ? WHERE user_id = ? AND device_id = ? AND revoked_at IS NULL",
		t.now().UTC().Truncate(time.Millisecond), string(user), string(device))
	if err != nil {
		return 0, domain.Errorf(domain.EUnavailable, "gateway: revoking a token: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, domain.Errorf(domain.EUnavailable, "gateway: revoking a token: %w", err)
	}
	return n, nil
}

// Ended closes the session because its device was logged out elsewhere:
// 4003 with why, after which the client must log in again. The session
// detaches cleanly (the device's route goes at once).
func (k *sink) Ended(why string) {
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.gen == s.gen {
		s.clean = true
		s.failLocked(reasonLoggedOut, statusLoggedOut, "logged out: "+why+"; log in again, do not reconnect automatically")
	}
}

// confirmResume checks the token of a resume again once the device is
// attached. A logout that revoked the token after the resume read it may
// have looked for the device's connections before the attachment existed
// (on this gateway or in its route) and missed it; either this check sees
// the revocation, or the logout comes later and finds the attachment. On a
// revoked token the attachment is undone and the resume fails
// (unauthenticated).
func (s *session) confirmResume(ctx context.Context, token string) error {
	if _, err := s.srv.accounts.resume(ctx, token); err != nil {
		s.mu.Lock()
		s.holding, s.held = false, nil
		s.mu.Unlock()
		s.detach(true)
		return err
	}
	return nil
}
