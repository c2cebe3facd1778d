package gatewaytest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Encodings runs a subtest per encoding.
func Encodings(t *testing.T, f func(t *testing.T, enc frame.Encoding)) {
	for _, enc := range []frame.Encoding{frame.Proto, frame.JSON} {
		t.Run(enc.String(), func(t *testing.T) { f(t, enc) })
	}
}

// Ctx returns a context bounded well beyond any healthy answer, cancelled
// when the test ends.
func Ctx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

// Eventually retries cond until it holds or a minute passes.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Go runs run in a goroutine until the test ends; then it cancels run's
// context, waits for it to return and fails the test if it returned an
// error. what names it in the failure.
func Go(tb testing.TB, what string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("%s: %v", what, err)
		}
	})
}

// Call sends a request and returns its response.
func Call(tb testing.TB, c *Client, req any) *mpimv1.Response {
	tb.Helper()
	r, err := c.Call(Ctx(tb), req)
	if err != nil {
		tb.Fatalf("%T: %v", req, err)
	}
	return r
}

// OK sends a request that must succeed.
func OK(tb testing.TB, c *Client, req any) *mpimv1.Response {
	tb.Helper()
	r := Call(tb, c, req)
	if e := r.GetError(); e != nil {
		tb.Fatalf("%T: error %s: %s", req, e.GetCode(), e.GetMessage())
	}
	return r
}

// Fails sends a request that must fail with code.
func Fails(tb testing.TB, c *Client, code string, req any) *mpimv1.Error {
	tb.Helper()
	r := Call(tb, c, req)
	if r.GetError().GetCode() != code {
		tb.Fatalf("%T: response %v, want error %q", req, r, code)
	}
	return r.GetError()
}

// Ping checks that c is still served.
func Ping(tb testing.TB, c *Client) {
	tb.Helper()
	r := OK(tb, c, &mpimv1.ClientFrame_Ping{Ping: &mpimv1.PingRequest{}})
	if r.GetPing().GetServerTimeMs() == 0 {
		tb.Fatalf("pong without time: %v", r)
	}
}

// User is a registered, logged-in test user.
type User struct {
	ID     string
	Name   string
	Device string
	Token  string
	Conn   *Client
}

// Login registers name (password "password-<name>") on a new connection in
// enc and logs it in as device "d1".
func (e *Env) Login(tb testing.TB, enc frame.Encoding, name string) *User {
	tb.Helper()
	c := e.Dial(tb, enc)
	reg := OK(tb, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: name, Password: "password-" + name, DisplayName: strings.ToUpper(name)}})
	u := &User{ID: reg.GetRegister().GetUserId(), Name: name, Device: "d1", Conn: c}
	res := OK(tb, c, &mpimv1.ClientFrame_Login{Login: &mpimv1.LoginRequest{Username: name, Password: "password-" + name, DeviceId: u.Device, Platform: "test"}})
	u.Token = res.GetLogin().GetToken()
	if res.GetLogin().GetUserId() != u.ID {
		tb.Fatalf("login as %s: user %q, registered %q", name, res.GetLogin().GetUserId(), u.ID)
	}
	return u
}
