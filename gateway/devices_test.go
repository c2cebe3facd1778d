package gateway_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// loggedOut waits (bounded) until c is closed and checks it was closed as
// a logged-out device: 4003 with a reason that says so.
func loggedOut(tb testing.TB, c *gatewaytest.Client, what string) {
	tb.Helper()
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		tb.Fatalf("%s: the connection is still open", what)
	}
	if code, reason := c.CloseStatus(); code != 4003 || !strings.Contains(reason, "logged out") {
		tb.Fatalf("%s: closed with %v %q (%v), want 4003 logged out", what, code, reason, c.Err())
	}
}

// loginAs logs name (registered by env.login, password "password-<name>"
// unless given) in as device on a new connection of e, and returns the
// connection and the token.
func loginAs(tb testing.TB, e *env, name, password, device string) (*gatewaytest.Client, string) {
	tb.Helper()
	c := e.dial(tb, frame.Proto)
	if password == "" {
		password = "password-" + name
	}
	return c, ok(tb, c, loginReq(name, password, device)).GetLogin().GetToken()
}

func changePassword(old, new string) *mpimv1.ClientFrame_ChangePassword {
	return &mpimv1.ClientFrame_ChangePassword{ChangePassword: &mpimv1.ChangePasswordRequest{OldPassword: old, NewPassword: new}}
}

func logoutDevice(id string) *mpimv1.ClientFrame_LogoutDevice {
	return &mpimv1.ClientFrame_LogoutDevice{LogoutDevice: &mpimv1.LogoutDeviceRequest{DeviceId: id}}
}

var (
	listDevices  = &mpimv1.ClientFrame_ListDevices{ListDevices: &mpimv1.ListDevicesRequest{}}
	logoutOthers = &mpimv1.ClientFrame_LogoutOtherDevices{LogoutOtherDevices: &mpimv1.LogoutOtherDevicesRequest{}}
)

// Changing the password checks the old one, logs every other device out
// (their connections on both gateways close with 4003, their tokens no
// longer resume) and keeps the caller's connection; afterwards only the
// new password logs in.
func TestChangePasswordLogsOutTheOtherDevices(t *testing.T) {
	e := newEnv(t, realDelivery(t))
	e2 := newEnvOn(t, e, realDelivery(t))
	amy := e.login(t, frame.JSON, "amy")
	there, thereToken := loginAs(t, e2, "amy", "", "d2")
	here, _ := loginAs(t, e, "amy", "", "d3")

	fails(t, amy.c, "bad_credentials", changePassword("wrong password", "a new password"))
	fails(t, amy.c, "bad_credentials", changePassword(strings.Repeat("x", 2000), "a new password"))
	fails(t, amy.c, "invalid", changePassword("password-amy", ""))
	fails(t, amy.c, "invalid", changePassword("password-amy", "short"))
	fails(t, amy.c, "too_large", changePassword("password-amy", strings.Repeat("x", 2000)))
	ping(t, there)

	ok(t, amy.c, changePassword("password-amy", "a new password"))
	loggedOut(t, there, "the device on the other gateway")
	loggedOut(t, here, "the other device on this gateway")
	ping(t, amy.c)
	fails(t, e.dial(t, frame.Proto), "unauthenticated", resumeReq(thereToken))
	fails(t, e.dial(t, frame.Proto), "bad_credentials", loginReq("amy", "password-amy", "d4"))
	loginAs(t, e2, "amy", "a new password", "d4")
}

// listDevices shows every logged-in device with its presence; logoutDevice
// closes one device's connection on another gateway and revokes its
// tokens; logoutOtherDevices does it for every device but the caller's.
// Bad device ids are invalid.
func TestListAndLogOutDevices(t *testing.T) {
	e := newEnv(t, realDelivery(t))
	e2 := newEnvOn(t, e, realDelivery(t))
	amy := e.login(t, frame.Proto, "amy")
	tablet, tabletToken := loginAs(t, e2, "amy", "", "tablet")
	e.project(t)
	devs := ok(t, amy.c, listDevices).GetListDevices().GetDevices()
	if len(devs) != 2 {
		t.Fatalf("devices %v, want d1 and tablet", devs)
	}
	for _, d := range devs {
		if !d.GetOnline() || d.GetLoggedInAtMs() == 0 || d.GetLastSeenMs() == 0 || d.GetPlatform() != "test" ||
			d.GetCurrent() != (d.GetDeviceId() == "d1") {
			t.Fatalf("device %v: want online, logged in, platform test, current only for d1", d)
		}
	}

	for _, bad := range []string{"", strings.Repeat("x", 65), "two words", "d1"} {
		fails(t, amy.c, "invalid", logoutDevice(bad))
	}
	fails(t, amy.c, "not_found", logoutDevice("never-logged-in"))
	ping(t, tablet)

	ok(t, amy.c, logoutDevice("tablet"))
	loggedOut(t, tablet, "the logged-out tablet")
	fails(t, e.dial(t, frame.Proto), "unauthenticated", resumeReq(tabletToken))
	ping(t, amy.c)

	phone, phoneToken := loginAs(t, e2, "amy", "", "phone")
	laptop, _ := loginAs(t, e, "amy", "", "laptop")
	ok(t, amy.c, logoutOthers)
	loggedOut(t, phone, "the phone")
	loggedOut(t, laptop, "the laptop")
	fails(t, e.dial(t, frame.Proto), "unauthenticated", resumeReq(phoneToken))
	ok(t, e.dial(t, frame.Proto), resumeReq(amy.token)) // the caller's device keeps its tokens
	c, _ := loginAs(t, e, "amy", "", "d5")
	e.project(t)
	if devs := ok(t, c, listDevices).GetListDevices().GetDevices(); len(devs) != 2 {
		t.Fatalf("devices after logging out the others: %v, want d1 and d5", devs)
	}
}

// Wrong current passwords count as failed logins of the user: over the
// limit, changePassword is rate_limited (the right password too), so a
// stolen session cannot guess the password quickly.
func TestChangePasswordIsThrottledLikeLogins(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.LoginFailuresPerUser = 2 })
	amy := e.login(t, frame.Proto, "amy")
	fails(t, amy.c, "bad_credentials", changePassword("wrong password", "a new password"))
	fails(t, amy.c, "bad_credentials", changePassword("wrong again", "a new password"))
	if e := fails(t, amy.c, "rate_limited", changePassword("password-amy", "a new password")); e.GetRetryAfterMs() == 0 {
		t.Fatalf("rate_limited without retryAfterMs: %v", e)
	}
	fails(t, e.dial(t, frame.Proto), "rate_limited", loginReq("amy", "password-amy", "d2"))
}

// A resume that read its token just before a logout of its device revoked
// it, and attached just after the logout looked for the device's
// connections, still fails: the token is checked again once the device is
// attached.
func TestResumeRacingALogoutFails(t *testing.T) {
	e := newEnv(t)
	amy := e.login(t, frame.Proto, "amy")
	_, token := loginAs(t, e, "amy", "", "tablet")
	var once sync.Once
	var logout *mpimv1.Response
	var logoutErr error
	e.hub.mu.Lock()
	e.hub.beforeAttach = func() { // on the gateway's goroutine: no t.Fatal here
		once.Do(func() { logout, logoutErr = amy.c.Call(testCtx(t), logoutDevice("tablet")) })
	}
	e.hub.mu.Unlock()
	c := e.dial(t, frame.Proto)
	r := call(t, c, resumeReq(token))
	if logoutErr != nil || logout.GetError() != nil {
		t.Fatalf("logoutDevice during the resume: %v %v", logoutErr, logout.GetError())
	}
	if r.GetError().GetCode() != "unauthenticated" {
		t.Fatalf("resume racing a logout: %v, want unauthenticated", r)
	}
	if d := e.hub.device(t, amy.id, "tablet"); !d.isDetached() {
		t.Fatal("the failed resume left the device attached")
	}
	fails(t, c, "unauthenticated", listDevices)
	ping(t, amy.c)
}
