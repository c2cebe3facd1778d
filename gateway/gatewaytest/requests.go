package gatewaytest

import (
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// LoginReq is a login of name with password as device, platform "test".
func LoginReq(name, password, device string) *mpimv1.ClientFrame_Login {
	return &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: name, Password: password, DeviceId: device, Platform: "test"}}
}

// ResumeReq resumes a session with token.
func ResumeReq(token string) *mpimv1.ClientFrame_Resume {
	return &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}}
}

// PingReq is a ping.
var PingReq = &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}

// SendTo sends text to a user.
func SendTo(userID, text, clientMsgID string) *mpimv1.ClientFrame_Send {
	return &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_UserId{UserId: userID}, Text: text, ClientMsgId: clientMsgID}}
}

// SendGroup sends text to a group.
func SendGroup(groupID, text string) *mpimv1.ClientFrame_Send {
	return &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{To: &mpimv1.SendRequest_GroupId{GroupId: groupID}, Text: text}}
}

// AddMember adds user to group.
func AddMember(group, user string) *mpimv1.ClientFrame_AddMember {
	return &mpimv1.ClientFrame_AddMember{AddMember: &mpimv1.AddMemberRequest{GroupId: group, UserId: user}}
}

// LogoutDevice logs the caller's device id out.
func LogoutDevice(id string) *mpimv1.ClientFrame_LogoutDevice {
	return &mpimv1.ClientFrame_LogoutDevice{LogoutDevice: &mpimv1.LogoutDeviceRequest{DeviceId: id}}
}

var (
	// ListDevices lists the caller's devices.
	ListDevices = &mpimv1.ClientFrame_ListDevices{ListDevices: &mpimv1.ListDevicesRequest{}}
	// LogoutOthers logs out every device of the caller but its own.
	LogoutOthers = &mpimv1.ClientFrame_LogoutOtherDevices{LogoutOtherDevices: &mpimv1.LogoutOtherDevicesRequest{}}
)

// DirectOf is the direct conversation of two users.
func DirectOf(a, b string) string {
	return string(domain.DirectConversation(domain.UserID(a), domain.UserID(b)))
}

// LoginAs logs name (registered by Login, password "password-<name>"
// unless given) in as device on a new connection of e, and returns the
// connection and the token.
func (e *Env) LoginAs(tb testing.TB, name, password, device string) (*Client, string) {
	tb.Helper()
	c := e.Dial(tb, frame.Proto)
	if password == "" {
		password = "password-" + name
	}
	return c, OK(tb, c, LoginReq(name, password, device)).GetLogin().GetToken()
}

// LoggedOut waits (bounded) until c is closed and checks it was closed as
// a logged-out device: 4003 with a reason that says so.
func LoggedOut(tb testing.TB, c *Client, what string) {
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

// Metric finds a metric of a family by one label (or the only one); nil if
// there is none.
func Metric(tb testing.TB, reg *prometheus.Registry, name, label, value string) *dto.Metric {
	tb.Helper()
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" {
				return m
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m
				}
			}
		}
	}
	return nil
}

// CounterValue is the value of a counter found as Metric finds it.
func CounterValue(tb testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	tb.Helper()
	return Metric(tb, reg, name, label, value).GetCounter().GetValue()
}
