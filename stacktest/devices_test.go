package stacktest

import (
	"strings"
	"testing"

	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
)

// listDevices shows every logged-in device with its presence; logoutDevice
// closes one device's connection on another gateway and revokes its
// tokens; logoutOtherDevices does it for every device but the caller's.
// Bad device ids are invalid.
func TestListAndLogOutDevices(t *testing.T) {
	e := newEnv(t, gatewaytest.RealDelivery(t))
	e2 := newEnvOn(t, e, gatewaytest.RealDelivery(t))
	amy := e.Login(t, frame.Proto, "amy")
	tablet, tabletToken := e2.LoginAs(t, "amy", "", "tablet")
	e.project(t)
	devs := gatewaytest.OK(t, amy.Conn, gatewaytest.ListDevices).GetListDevices().GetDevices()
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
		gatewaytest.Fails(t, amy.Conn, "invalid", gatewaytest.LogoutDevice(bad))
	}
	gatewaytest.Fails(t, amy.Conn, "not_found", gatewaytest.LogoutDevice("never-logged-in"))
	gatewaytest.Ping(t, tablet)

	gatewaytest.OK(t, amy.Conn, gatewaytest.LogoutDevice("tablet"))
	gatewaytest.LoggedOut(t, tablet, "the logged-out tablet")
	gatewaytest.Fails(t, e.Dial(t, frame.Proto), "unauthenticated", gatewaytest.ResumeReq(tabletToken))
	gatewaytest.Ping(t, amy.Conn)

	phone, phoneToken := e2.LoginAs(t, "amy", "", "phone")
	laptop, _ := e.LoginAs(t, "amy", "", "laptop")
	gatewaytest.OK(t, amy.Conn, gatewaytest.LogoutOthers)
	gatewaytest.LoggedOut(t, phone, "the phone")
	gatewaytest.LoggedOut(t, laptop, "the laptop")
	gatewaytest.Fails(t, e.Dial(t, frame.Proto), "unauthenticated", gatewaytest.ResumeReq(phoneToken))
	gatewaytest.OK(t, e.Dial(t, frame.Proto), gatewaytest.ResumeReq(amy.Token)) // the caller's device keeps its tokens
	c, _ := e.LoginAs(t, "amy", "", "d5")
	e.project(t)
	if devs := gatewaytest.OK(t, c, gatewaytest.ListDevices).GetListDevices().GetDevices(); len(devs) != 2 {
		t.Fatalf("devices after logging out the others: %v, want d1 and d5", devs)
	}
}
