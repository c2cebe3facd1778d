package gateway

import (
	"context"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/accounts"
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
// the password, list the devices, log out one device or every other one,
// register or remove the calling device's push token (which a logout
// removes with the session: DeviceLoggedOut ends both).
// Logging a device out revokes its tokens first (so it cannot resume),
// records DeviceLoggedOut in the log, then ends its live connections on
// every gateway through the hub (close code 4003). It is safe for
// concurrent use.
type devices struct {
	acc *accounts.Service
	cmd *command.Service
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
	case *mpimv1.ClientFrame_RegisterPushToken:
		p := q.RegisterPushToken
		_, err = d.cmd.RegisterPushToken(ctx, me.actor(), domain.PushToken{Platform: domain.PushPlatform(p.GetPlatform()), Token: p.GetToken(), AppID: p.GetAppId()})
		r.Result = &mpimv1.Response_RegisterPushToken{RegisterPushToken: done}
	case *mpimv1.ClientFrame_RemovePushToken:
		_, err = d.cmd.RemovePushToken(ctx, me.actor())
		r.Result = &mpimv1.Response_RemovePushToken{RemovePushToken: done}
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, err
	}
	return r, true, nil
}

// changePassword changes the caller's password (accounts.ChangePassword:
// the current one is checked as a login from addr would be) and logs out
// every other device of the caller.
func (d *devices) changePassword(ctx context.Context, me *caller, addr string, q *mpimv1.ChangePasswordRequest) error {
	if err := d.acc.ChangePassword(ctx, me.actor(), addr, q.GetOldPassword(), q.GetNewPassword()); err != nil {
		return err
	}
	return d.logoutOthers(ctx, me, endPasswordChanged)
}

// logoutOthers logs out every device of the caller but its own
// (accounts.LogOutOthers) and closes every one of them that is connected.
func (d *devices) logoutOthers(ctx context.Context, me *caller, why string) error {
	ended, err := d.acc.LogOutOthers(ctx, me.actor())
	if err != nil {
		return err
	}
	return d.end(ctx, me.user, ended, why)
}

// logoutDevice logs out one other device of the caller
// (accounts.LogOutDevice) and closes its connections.
func (d *devices) logoutDevice(ctx context.Context, me *caller, device string) error {
	if err := d.acc.LogOutDevice(ctx, me.actor(), domain.DeviceID(device)); err != nil {
		return err
	}
	return d.end(ctx, me.user, []domain.DeviceID{domain.DeviceID(device)}, endLoggedOut)
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
	if _, err := s.srv.accounts.Resume(ctx, token); err != nil {
		s.out.dropHeld()
		s.detach(true)
		return err
	}
	return nil
}
