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
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func loginReq(name, password, device string) *mpimv1.ClientFrame_Login {
	return &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: name, Password: password, DeviceId: device, Platform: "test"}}
}

func resumeReq(token string) *mpimv1.ClientFrame_Resume {
	return &mpimv1.ClientFrame_Resume{Resume: &mpimv1.ResumeRequest{Token: token}}
}

var pingReq = &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}}

func TestAccountLifecycle(t *testing.T) {
	encodings(t, func(t *testing.T, enc frame.Encoding) {
		e := newEnv(t)
		c := e.dial(t, enc)

		fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
		fails(t, c, "unauthenticated", &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
		fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "alice", Password: "short"}})
		fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "-bad name", Password: "long enough"}})
		reg := ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "Alice", Password: "correct horse", DisplayName: "Alice A."}})
		if reg.GetRegister().GetUsername() != "alice" || reg.GetRegister().GetUserId() == "" {
			t.Fatalf("register: %v", reg)
		}
		id := reg.GetRegister().GetUserId()
		fails(t, c, "exists", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "ALICE", Password: "another one"}})

		fails(t, c, "bad_credentials", loginReq("alice", "wrong password", "phone"))
		fails(t, c, "bad_credentials", loginReq("nobody", "correct horse", "phone"))
		fails(t, c, "invalid", loginReq("alice", "correct horse", "bad device id"))

		res := ok(t, c, loginReq("alice", "correct horse", "phone")).GetLogin()
		if res.GetUserId() != id || res.GetDeviceId() != "phone" || res.GetProfile().GetDisplayName() != "Alice A." ||
			res.GetHeartbeatMs() == 0 || res.GetTokenExpiresAtMs() <= time.Now().UnixMilli() {
			t.Fatalf("login result %v", res)
		}
		raw, err := base64.RawURLEncoding.DecodeString(res.GetToken())
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q is not 32 bytes of base64url: %v", res.GetToken(), err)
		}
		if d := e.hub.device(t, id, "phone"); d.sink == nil {
			t.Fatal("login did not attach the device")
		}
		fails(t, c, "already_authenticated", loginReq("alice", "correct horse", "phone"))
		ok(t, c, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})

		// A second device logs in at the same time; the token resumes on a
		// third connection.
		tablet := e.dial(t, enc)
		ok(t, tablet, loginReq("alice", "correct horse", "tablet"))
		again := e.dial(t, enc)
		rs := ok(t, again, resumeReq(res.GetToken())).GetResume()
		if rs.GetUserId() != id || rs.GetDeviceId() != "phone" || rs.GetToken() != "" {
			t.Fatalf("resume result %v", rs)
		}
		ok(t, again, &mpimv1.ClientFrame_GetProfile{GetProfile: &mpimv1.GetProfileRequest{}})

		// Logout revokes the device's tokens (this one and an older login's)
		// and detaches cleanly; the connection stays usable for another login.
		older := ok(t, e.dial(t, enc), loginReq("alice", "correct horse", "phone")).GetLogin().GetToken()
		ok(t, c, &mpimv1.ClientFrame_Logout{Logout: &mpimv1.LogoutRequest{}})
		fails(t, e.dial(t, enc), "unauthenticated", resumeReq(older))
		first := e.hub.attachments()[0]
		if detached, clean, _ := first.state(); !detached || !clean {
			t.Fatalf("after logout: detached %v clean %v", detached, clean)
		}
		fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
		fails(t, e.dial(t, enc), "unauthenticated", resumeReq(res.GetToken()))
		ok(t, c, loginReq("alice", "correct horse", "phone"))
		ping(t, tablet)

		// A connection that goes away without a close handshake detaches
		// uncleanly; one that closes normally, cleanly.
		againDev := e.hub.attachments()[2]
		again.CloseNow()
		tabletDev := e.hub.device(t, id, "tablet")
		tablet.Close()
		eventually(t, "detaches", func() bool {
			d1, _, _ := tabletDev.state()
			d2, _, _ := againDev.state()
			return d1 && d2
		})
		if _, clean, _ := tabletDev.state(); !clean {
			t.Fatal("a normal close detached uncleanly")
		}
		if _, clean, _ := againDev.state(); clean {
			t.Fatal("a dropped connection detached cleanly")
		}
	})
}

func TestForgedExpiredAndMalformedTokensAreUnauthenticated(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.TokenTTL = time.Hour })
	u := e.login(t, frame.JSON, "bob")
	other := e.login(t, frame.Proto, "carol")

	forged := make([]byte, 32)
	rand.Read(forged)
	c := e.dial(t, frame.JSON)
	for name, token := range map[string]string{
		"forged":    base64.RawURLEncoding.EncodeToString(forged),
		"malformed": "not a token!",
		"truncated": u.token[:20],
		"empty":     "",
	} {
		t.Run(name, func(t *testing.T) {
			fails(t, c, "unauthenticated", resumeReq(token))
			ping(t, other.c)
		})
	}
	t.Run("expired", func(t *testing.T) {
		ok(t, e.dial(t, frame.JSON), resumeReq(u.token))
		e.clock.Add(time.Hour + time.Second)
		fails(t, c, "unauthenticated", resumeReq(u.token))
		ping(t, other.c)
	})
}

func TestUnauthenticatedConnectionTimesOut(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.AuthTimeout = 300 * time.Millisecond })
	other := e.login(t, frame.Proto, "dave")
	c := e.dial(t, frame.JSON)
	<-c.Done()
	if code, reason := c.CloseStatus(); code != websocket.StatusPolicyViolation || reason == "" {
		t.Fatalf("closed with %v %q (%v), want policy violation with a reason", code, reason, c.Err())
	}
	ping(t, other.c)
}

func TestIdleConnectionIsClosed(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.HeartbeatInterval, c.IdleTimeout = 100*time.Millisecond, time.Second
	})
	u := e.login(t, frame.Proto, "erin")
	<-u.c.Done()
	if code, reason := u.c.CloseStatus(); code != websocket.StatusPolicyViolation || reason == "" {
		t.Fatalf("closed with %v %q (%v)", code, reason, u.c.Err())
	}
	d := e.hub.device(t, u.id, u.device)
	eventually(t, "detach", func() bool { detached, _, _ := d.state(); return detached })
	if _, clean, _ := d.state(); clean {
		t.Fatal("an idle close detached cleanly")
	}
}

func TestLoginFailsCleanlyWhenDeliveryIsDown(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, frame.Proto)
	ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "pia", Password: "password-pia"}})
	e.hub.mu.Lock()
	e.hub.failing = true
	e.hub.mu.Unlock()
	fails(t, c, "unavailable", loginReq("pia", "password-pia", "d1"))
	fails(t, c, "unauthenticated", &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
	e.hub.mu.Lock()
	e.hub.failing = false
	e.hub.mu.Unlock()
	ok(t, c, loginReq("pia", "password-pia", "d1"))
	ok(t, c, &mpimv1.ClientFrame_ListFriends{ListFriends: &mpimv1.ListFriendsRequest{}})
}

// Password guessing: after LoginFailuresPerUser failures an account refuses
// every login, the right password included, with rate_limited and the wait;
// other accounts are not affected; the window's end lifts it, and a
// successful login clears the count. The counts live in Redis, so a second
// gateway of the deployment refuses too.
func TestLoginThrottlePerUsername(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginFailureWindow = 3, 2*time.Second
	})
	c := e.dial(t, frame.JSON)
	ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "victim", Password: "correct horse"}})
	ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "bystander", Password: "correct horse"}})

	// Two failures, then a success: the count starts again.
	fails(t, c, "bad_credentials", loginReq("victim", "guess 1", "d1"))
	fails(t, c, "bad_credentials", loginReq("VICTIM", "guess 2", "d1"))
	ok(t, e.dial(t, frame.JSON), loginReq("victim", "correct horse", "d1"))
	for i := range 3 {
		fails(t, c, "bad_credentials", loginReq("victim", fmt.Sprintf("guess %d", 3+i), "d1"))
	}
	er := fails(t, c, "rate_limited", loginReq("victim", "correct horse", "d1"))
	if er.GetRetryAfterMs() <= 0 || er.GetRetryAfterMs() > 2000 {
		t.Fatalf("retry after %d ms, want within the 2s window", er.GetRetryAfterMs())
	}
	fails(t, c, "rate_limited", loginReq(" Victim", "guess 6", "d1"))
	ok(t, e.dial(t, frame.JSON), loginReq("bystander", "correct horse", "d1"))

	// Another gateway on the same deployment sees the same count.
	other := newEnvOn(t, e, func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginFailureWindow = 3, 2*time.Second
	})
	fails(t, other.dial(t, frame.Proto), "rate_limited", loginReq("victim", "correct horse", "d2"))

	time.Sleep(time.Duration(er.GetRetryAfterMs())*time.Millisecond + 100*time.Millisecond)
	ok(t, e.dial(t, frame.JSON), loginReq("victim", "correct horse", "d1"))
}

// A client address that fails on many usernames is refused on every one.
func TestLoginThrottlePerAddress(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginFailuresPerAddr, c.LoginFailureWindow = 100, 4, time.Minute
	})
	c := e.dial(t, frame.JSON)
	ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "carol", Password: "correct horse"}})
	for i := range 4 {
		fails(t, c, "bad_credentials", loginReq(fmt.Sprintf("nobody%d", i), "guess", "d1"))
	}
	er := fails(t, e.dial(t, frame.JSON), "rate_limited", loginReq("carol", "correct horse", "d1"))
	if er.GetRetryAfterMs() <= 0 {
		t.Fatalf("retry after %d ms", er.GetRetryAfterMs())
	}
	// Not limited by address: the same guesses do not lock anyone out.
	e2 := newEnv(t, func(c *gateway.Config, _ *gateway.Deps) { c.LoginFailuresPerAddr = -1 })
	c2 := e2.dial(t, frame.JSON)
	ok(t, c2, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "carol", Password: "correct horse"}})
	for i := range 6 {
		fails(t, c2, "bad_credentials", loginReq(fmt.Sprintf("nobody%d", i), "guess", "d1"))
	}
	ok(t, c2, loginReq("carol", "correct horse", "d1"))
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
	e := newEnv(t)
	c := e.dial(t, frame.JSON)
	for name, pw := range map[string]string{
		"spaces":             "          ",
		"tabs and newlines":  "\t\t\n\n\t\t\n\n",
		"common":             "password123",
		"common in capitals": "QWERTYUIOP",
		"common padded":      " iloveyou1 ",
	} {
		t.Run(name, func(t *testing.T) {
			er := fails(t, c, "invalid", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "weak", Password: pw}})
			if !strings.Contains(er.GetMessage(), "password") {
				t.Fatalf("message %q does not say what is wrong", er.GetMessage())
			}
		})
	}
	ok(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "weak", Password: "password123 but longer"}})
}
