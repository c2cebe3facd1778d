package gateway_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func changePassword(old, new string) *mpimv1.ClientFrame_ChangePassword {
	return &mpimv1.ClientFrame_ChangePassword{ChangePassword: &mpimv1.ChangePasswordRequest{OldPassword: old, NewPassword: new}}
}

// Changing the password checks the old one, logs every other device out
// (their connections on both gateways close with 4003, their tokens no
// longer resume) and keeps the caller's connection; afterwards only the
// new password logs in.
func TestChangePasswordLogsOutTheOtherDevices(t *testing.T) {
	e := gatewaytest.New(t, gatewaytest.RealDelivery(t))
	e2 := gatewaytest.NewOn(t, e, gatewaytest.RealDelivery(t))
	amy := e.Login(t, frame.JSON, "amy")
	there, thereToken := e2.LoginAs(t, "amy", "", "d2")
	here, _ := e.LoginAs(t, "amy", "", "d3")

	gatewaytest.Fails(t, amy.Conn, "bad_credentials", changePassword("wrong password", "a new password"))
	gatewaytest.Fails(t, amy.Conn, "bad_credentials", changePassword(strings.Repeat("x", 2000), "a new password"))
	gatewaytest.Fails(t, amy.Conn, "invalid", changePassword("password-amy", ""))
	gatewaytest.Fails(t, amy.Conn, "invalid", changePassword("password-amy", "short"))
	gatewaytest.Fails(t, amy.Conn, "too_large", changePassword("password-amy", strings.Repeat("x", 2000)))
	gatewaytest.Ping(t, there)

	gatewaytest.OK(t, amy.Conn, changePassword("password-amy", "a new password"))
	gatewaytest.LoggedOut(t, there, "the device on the other gateway")
	gatewaytest.LoggedOut(t, here, "the other device on this gateway")
	gatewaytest.Ping(t, amy.Conn)
	gatewaytest.Fails(t, e.Dial(t, frame.Proto), "unauthenticated", gatewaytest.ResumeReq(thereToken))
	gatewaytest.Fails(t, e.Dial(t, frame.Proto), "bad_credentials", gatewaytest.LoginReq("amy", "password-amy", "d4"))
	e2.LoginAs(t, "amy", "a new password", "d4")
}

// Wrong current passwords count as failed logins of the user: over the
// limit, changePassword is rate_limited (the right password too), so a
// stolen session cannot guess the password quickly.
func TestChangePasswordIsThrottledLikeLogins(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.LoginFailuresPerUser = 2 })
	amy := e.Login(t, frame.Proto, "amy")
	gatewaytest.Fails(t, amy.Conn, "bad_credentials", changePassword("wrong password", "a new password"))
	gatewaytest.Fails(t, amy.Conn, "bad_credentials", changePassword("wrong again", "a new password"))
	if e := gatewaytest.Fails(t, amy.Conn, "rate_limited", changePassword("password-amy", "a new password")); e.GetRetryAfterMs() == 0 {
		t.Fatalf("rate_limited without retryAfterMs: %v", e)
	}
	gatewaytest.Fails(t, e.Dial(t, frame.Proto), "rate_limited", gatewaytest.LoginReq("amy", "password-amy", "d2"))
}

// A resume that read its token just before a logout of its device revoked
// it, and attached just after the logout looked for the device's
// connections, still fails: the token is checked again once the device is
// attached.
func TestResumeRacingALogoutFails(t *testing.T) {
	e := gatewaytest.New(t)
	amy := e.Login(t, frame.Proto, "amy")
	_, token := e.LoginAs(t, "amy", "", "tablet")
	var once sync.Once
	var logout *mpimv1.Response
	var logoutErr error
	e.Hub.SetBeforeAttach(func() { // on the gateway's goroutine: no t.Fatal here
		once.Do(func() { logout, logoutErr = amy.Conn.Call(gatewaytest.Ctx(t), gatewaytest.LogoutDevice("tablet")) })
	})
	c := e.Dial(t, frame.Proto)
	r := gatewaytest.Call(t, c, gatewaytest.ResumeReq(token))
	if logoutErr != nil || logout.GetError() != nil {
		t.Fatalf("gatewaytest.LogoutDevice during the resume: %v %v", logoutErr, logout.GetError())
	}
	if r.GetError().GetCode() != "unauthenticated" {
		t.Fatalf("resume racing a logout: %v, want unauthenticated", r)
	}
	if d := e.Hub.Device(t, amy.ID, "tablet"); !d.Detached() {
		t.Fatal("the failed resume left the device attached")
	}
	gatewaytest.Fails(t, c, "unauthenticated", gatewaytest.ListDevices)
	gatewaytest.Ping(t, amy.Conn)
}
