package gateway_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func TestAccountLifecycle(t *testing.T) {
	gatewaytest.Encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := gatewaytest.New(t)
		c := e.Dial(t, enc)

		gatewaytest.Fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
		gatewaytest.Fails(t, c, "unauthenticated", &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
		gatewaytest.Fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "alice", Password: "short"}})
		gatewaytest.Fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "-bad name", Password: "long enough"}})
		reg := gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "Alice", Password: "correct horse", DisplayName: "Alice A."}})
		if reg.GetRegister().GetUsername() != "alice" || reg.GetRegister().GetUserId() == "" {
			t.Fatalf("register: %v", reg)
		}
		id := reg.GetRegister().GetUserId()
		gatewaytest.Fails(t, c, "exists", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "ALICE", Password: "another one"}})

		gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq("alice", "wrong password", "phone"))
		gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq("nobody", "correct horse", "phone"))
		gatewaytest.Fails(t, c, "invalid", gatewaytest.LoginReq("alice", "correct horse", "bad device id"))

		res := gatewaytest.OK(t, c, gatewaytest.LoginReq("alice", "correct horse", "phone")).GetLogin()
		if res.GetUserId() != id || res.GetDeviceId() != "phone" || res.GetProfile().GetDisplayName() != "Alice A." ||
			res.GetHeartbeatMs() == 0 || res.GetTokenExpiresAtMs() <= time.Now().UnixMilli() {
			t.Fatalf("login result %v", res)
		}
		raw, err := base64.RawURLEncoding.DecodeString(res.GetToken())
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q is not 32 bytes of base64url: %v", res.GetToken(), err)
		}
		if d := e.Hub.Device(t, id, "phone"); d.Sink == nil {
			t.Fatal("login did not attach the device")
		}
		gatewaytest.Fails(t, c, "already_authenticated", gatewaytest.LoginReq("alice", "correct horse", "phone"))
		gatewaytest.OK(t, c, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})

		// A second device logs in at the same time; the token resumes on a
		// third connection.
		tablet := e.Dial(t, enc)
		gatewaytest.OK(t, tablet, gatewaytest.LoginReq("alice", "correct horse", "tablet"))
		again := e.Dial(t, enc)
		rs := gatewaytest.OK(t, again, gatewaytest.ResumeReq(res.GetToken())).GetResume()
		if rs.GetUserId() != id || rs.GetDeviceId() != "phone" || rs.GetToken() != "" {
			t.Fatalf("resume result %v", rs)
		}
		gatewaytest.OK(t, again, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{}})

		// Logout revokes the device's tokens (this one and an older login's)
		// and detaches cleanly; the connection stays usable for another login.
		older := gatewaytest.OK(t, e.Dial(t, enc), gatewaytest.LoginReq("alice", "correct horse", "phone")).GetLogin().GetToken()
		gatewaytest.OK(t, c, &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
		gatewaytest.Fails(t, e.Dial(t, enc), "unauthenticated", gatewaytest.ResumeReq(older))
		first := e.Hub.Attachments()[0]
		if detached, clean, _ := first.State(); !detached || !clean {
			t.Fatalf("after logout: detached %v clean %v", detached, clean)
		}
		gatewaytest.Fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
		gatewaytest.Fails(t, e.Dial(t, enc), "unauthenticated", gatewaytest.ResumeReq(res.GetToken()))
		gatewaytest.OK(t, c, gatewaytest.LoginReq("alice", "correct horse", "phone"))
		gatewaytest.Ping(t, tablet)

		// A connection that goes away without a close handshake detaches
		// uncleanly; one that closes normally, cleanly.
		againDev := e.Hub.Attachments()[2]
		again.CloseNow()
		tabletDev := e.Hub.Device(t, id, "tablet")
		tablet.Close()
		gatewaytest.Eventually(t, "detaches", func() bool {
			d1, _, _ := tabletDev.State()
			d2, _, _ := againDev.State()
			return d1 && d2
		})
		if _, clean, _ := tabletDev.State(); !clean {
			t.Fatal("a normal close detached uncleanly")
		}
		if _, clean, _ := againDev.State(); clean {
			t.Fatal("a dropped connection detached cleanly")
		}
	})
}

func TestForgedExpiredAndMalformedTokensAreUnauthenticated(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.TokenTTL = time.Hour })
	u := e.Login(t, frame.JSON, "bob")
	other := e.Login(t, frame.Proto, "carol")

	forged := make([]byte, 32)
	rand.Read(forged)
	c := e.Dial(t, frame.JSON)
	for name, token := range map[string]string{
		"forged":    base64.RawURLEncoding.EncodeToString(forged),
		"malformed": "not a token!",
		"truncated": u.Token[:20],
		"empty":     "",
	} {
		t.Run(name, func(t *testing.T) {
			gatewaytest.Fails(t, c, "unauthenticated", gatewaytest.ResumeReq(token))
			gatewaytest.Ping(t, other.Conn)
		})
	}
	t.Run("expired", func(t *testing.T) {
		gatewaytest.OK(t, e.Dial(t, frame.JSON), gatewaytest.ResumeReq(u.Token))
		e.Clock.Add(time.Hour + time.Second)
		gatewaytest.Fails(t, c, "unauthenticated", gatewaytest.ResumeReq(u.Token))
		gatewaytest.Ping(t, other.Conn)
	})
}

func TestUnauthenticatedConnectionTimesOut(t *testing.T) {
	// The timeout applies to dave's connection too: it must leave time for
	// his login (an argon2id hash) on a loaded machine.
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.AuthTimeout = 2 * time.Second })
	other := e.Login(t, frame.Proto, "dave")
	c := e.Dial(t, frame.JSON)
	<-c.Done()
	if code, reason := c.CloseStatus(); code != websocket.StatusPolicyViolation || reason == "" {
		t.Fatalf("closed with %v %q (%v), want policy violation with a reason", code, reason, c.Err())
	}
	gatewaytest.Ping(t, other.Conn)
}

func TestIdleConnectionIsClosed(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.HeartbeatInterval, c.IdleTimeout = 100*time.Millisecond, time.Second
	})
	u := e.Login(t, frame.Proto, "erin")
	<-u.Conn.Done()
	if code, reason := u.Conn.CloseStatus(); code != websocket.StatusPolicyViolation || reason == "" {
		t.Fatalf("closed with %v %q (%v)", code, reason, u.Conn.Err())
	}
	d := e.Hub.Device(t, u.ID, u.Device)
	gatewaytest.Eventually(t, "detach", func() bool { detached, _, _ := d.State(); return detached })
	if _, clean, _ := d.State(); clean {
		t.Fatal("an idle close detached cleanly")
	}
}

func TestLoginFailsCleanlyWhenDeliveryIsDown(t *testing.T) {
	e := gatewaytest.New(t)
	c := e.Dial(t, frame.Proto)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "pia", Password: "password-pia"}})
	e.Hub.SetFailing(true)
	gatewaytest.Fails(t, c, "unavailable", gatewaytest.LoginReq("pia", "password-pia", "d1"))
	gatewaytest.Fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
	e.Hub.SetFailing(false)
	gatewaytest.OK(t, c, gatewaytest.LoginReq("pia", "password-pia", "d1"))
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
}

// Password guessing: after LoginFailuresPerUser failures an account refuses
// every login, the right password included, with rate_limited and the wait;
// other accounts are not affected; the delay's end lifts it, and a
// successful login clears the count. The counts live in Redis, so a second
// gateway of the deployment refuses too. The delays run on a manual clock:
// the refusals hold however slow the machine, and the delay ends when the
// test moves the clock (the window of a minute only bounds how long Redis
// keeps the counts).
func TestLoginThrottlePerUsername(t *testing.T) {
	clock := gatewaytest.NewManualClock()
	throttled := func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginFailureWindow, c.LoginDelayClock = 3, time.Minute, clock.Now
	}
	e := gatewaytest.New(t, throttled)
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "victim", Password: "correct horse"}})
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "bystander", Password: "correct horse"}})

	// Two failures, then a success: the count starts again.
	gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq("victim", "guess 1", "d1"))
	gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq("VICTIM", "guess 2", "d1"))
	gatewaytest.OK(t, e.Dial(t, frame.JSON), gatewaytest.LoginReq("victim", "correct horse", "d1"))
	for i := range 3 {
		gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq("victim", fmt.Sprintf("guess %d", 3+i), "d1"))
	}
	er := gatewaytest.Fails(t, c, "rate_limited", gatewaytest.LoginReq("victim", "correct horse", "d1"))
	if er.GetRetryAfterMs() != 1000 {
		t.Fatalf("retry after %d ms, want the first delay, 1000", er.GetRetryAfterMs())
	}
	gatewaytest.Fails(t, c, "rate_limited", gatewaytest.LoginReq(" Victim", "guess 6", "d1"))
	gatewaytest.OK(t, e.Dial(t, frame.JSON), gatewaytest.LoginReq("bystander", "correct horse", "d1"))

	// Another gateway on the same deployment sees the same count.
	other := gatewaytest.NewOn(t, e, throttled)
	gatewaytest.Fails(t, other.Dial(t, frame.Proto), "rate_limited", gatewaytest.LoginReq("victim", "correct horse", "d2"))

	// A millisecond short of the delay the account is still refused; at
	// its end the right password logs in.
	clock.Add(time.Duration(er.GetRetryAfterMs()-1) * time.Millisecond)
	if er := gatewaytest.Fails(t, c, "rate_limited", gatewaytest.LoginReq("victim", "correct horse", "d1")); er.GetRetryAfterMs() != 1 {
		t.Fatalf("retry after %d ms a millisecond before the delay's end, want 1", er.GetRetryAfterMs())
	}
	clock.Add(time.Millisecond)
	gatewaytest.OK(t, e.Dial(t, frame.JSON), gatewaytest.LoginReq("victim", "correct horse", "d1"))
}

// A client address that fails on many usernames is refused on every one.
func TestLoginThrottlePerAddress(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginFailuresPerAddr, c.LoginFailureWindow = 100, 4, time.Minute
	})
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "carol", Password: "correct horse"}})
	for i := range 4 {
		gatewaytest.Fails(t, c, "bad_credentials", gatewaytest.LoginReq(fmt.Sprintf("nobody%d", i), "guess", "d1"))
	}
	er := gatewaytest.Fails(t, e.Dial(t, frame.JSON), "rate_limited", gatewaytest.LoginReq("carol", "correct horse", "d1"))
	if er.GetRetryAfterMs() <= 0 {
		t.Fatalf("retry after %d ms", er.GetRetryAfterMs())
	}
	// Not limited by address: the same guesses do not lock anyone out.
	e2 := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.LoginFailuresPerAddr = -1 })
	c2 := e2.Dial(t, frame.JSON)
	gatewaytest.OK(t, c2, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "carol", Password: "correct horse"}})
	for i := range 6 {
		gatewaytest.Fails(t, c2, "bad_credentials", gatewaytest.LoginReq(fmt.Sprintf("nobody%d", i), "guess", "d1"))
	}
	gatewaytest.OK(t, c2, gatewaytest.LoginReq("carol", "correct horse", "d1"))
}

func TestLoginThrottleSettingsAreValidated(t *testing.T) {
	for _, c := range []gateway.Config{
		{GatewayID: "gw", PublicAddr: "x:1", LoginFailuresPerUser: -1},
		{GatewayID: "gw", PublicAddr: "x:1", LoginFailuresPerAddr: -2},
		{GatewayID: "gw", PublicAddr: "x:1", LoginFailureWindow: -time.Second},
	} {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "login failure") {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// Register refuses passwords that are only white space or among the most
// common ones, with invalid and a message that says why.
func TestRegisterRefusesWeakPasswords(t *testing.T) {
	e := gatewaytest.New(t)
	c := e.Dial(t, frame.JSON)
	for name, pw := range map[string]string{
		"spaces":             "          ",
		"tabs and newlines":  "\t\t\n\n\t\t\n\n",
		"common":             "password123",
		"common in capitals": "QWERTYUIOP",
		"common padded":      " iloveyou1 ",
	} {
		t.Run(name, func(t *testing.T) {
			er := gatewaytest.Fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "weak", Password: pw}})
			if !strings.Contains(er.GetMessage(), "password") {
				t.Fatalf("message %q does not say what is wrong", er.GetMessage())
			}
		})
	}
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "weak", Password: "password123 but longer"}})
}
