package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpim/mpim/gateway"
	"github.com/mpim/mpim/gateway/gatewaytest"
	"github.com/mpim/mpim/proto/frame"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

func hashes(tb testing.TB, e *gatewaytest.Env, op string) float64 {
	tb.Helper()
	return gatewaytest.CounterValue(tb, e.Registry, "mpim_gateway_password_hashes_total", "op", op)
}

// Parallel wrong logins to one username are counted before any password is
// checked: of 40 at once, at most the limit are verified, the rest are
// refused with rate_limited.
func TestParallelWrongLoginsVerifyAtMostTheLimit(t *testing.T) {
	// Hashes slow enough that the logins overlap.
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.Argon2 = gateway.Argon2Params{Time: 2, MemoryKiB: 4 << 10, Threads: 1}
	})
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "target", Password: "correct horse"}})
	before := hashes(t, e, "verify")
	const n, limit = 40, 10
	codes := make(chan string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		cl := e.Dial(t, frame.Proto)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := cl.Call(gatewaytest.Ctx(t), gatewaytest.LoginReq("target", fmt.Sprintf("guess %d", i), "d1"))
			if err != nil {
				codes <- err.Error()
				return
			}
			codes <- r.GetError().GetCode()
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[string]int{}
	for c := range codes {
		count[c]++
	}
	if count["bad_credentials"] > limit || count["bad_credentials"]+count["rate_limited"] != n {
		t.Fatalf("answers %v: want at most %d bad_credentials, the rest rate_limited", count, limit)
	}
	if v := hashes(t, e, "verify") - before; v > limit {
		t.Fatalf("%v passwords verified, want at most %d", v, limit)
	}
}

// An attacker's failures at one address delay that address only: the user
// logs in from another, and so does the attacker's address once the delay
// has passed; the delay doubles with each further failure. The delays run
// on a manual clock, so each is exact and passes only when the test moves
// the clock.
func TestFailuresAtOneAddressDoNotLockOutAnother(t *testing.T) {
	clock := gatewaytest.NewManualClock()
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) {
		c.LoginFailuresPerUser, c.LoginDelayClock = 3, clock.Now
	})
	gatewaytest.OK(t, e.Dial(t, frame.JSON), &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "victim", Password: "correct horse"}})
	attacker := e.DialFrom(t, frame.JSON, "198.51.100.7:4000")
	for i := range 3 {
		gatewaytest.Fails(t, attacker, "bad_credentials", gatewaytest.LoginReq("victim", fmt.Sprintf("guess %d", i), "d1"))
	}
	first := gatewaytest.Fails(t, attacker, "rate_limited", gatewaytest.LoginReq("victim", "correct horse", "d1")).GetRetryAfterMs()
	if first != 1000 {
		t.Fatalf("first delay %d ms, want 1000", first)
	}
	gatewaytest.OK(t, e.DialFrom(t, frame.Proto, "203.0.113.9:5000"), gatewaytest.LoginReq("victim", "correct horse", "phone"))
	// The same IPv6 /64 is one client; another /64 is not.
	v6 := e.DialFrom(t, frame.JSON, "[2001:db8:1:2::1]:4000")
	for i := range 3 {
		gatewaytest.Fails(t, v6, "bad_credentials", gatewaytest.LoginReq("victim", fmt.Sprintf("guess %d", i), "d1"))
	}
	gatewaytest.Fails(t, e.DialFrom(t, frame.JSON, "[2001:db8:1:2:ffff::9]:4001"), "rate_limited", gatewaytest.LoginReq("victim", "correct horse", "d1"))
	gatewaytest.OK(t, e.DialFrom(t, frame.JSON, "[2001:db8:1:3::1]:4000"), gatewaytest.LoginReq("victim", "correct horse", "tablet"))

	// After the delay the attacker's address may try again; one more
	// failure doubles the delay.
	clock.Add(time.Duration(first) * time.Millisecond)
	gatewaytest.Fails(t, attacker, "bad_credentials", gatewaytest.LoginReq("victim", "guess again", "d1"))
	if next := gatewaytest.Fails(t, attacker, "rate_limited", gatewaytest.LoginReq("victim", "guess again", "d1")).GetRetryAfterMs(); next != 2000 {
		t.Fatalf("second delay %d ms, want 2000", next)
	}
}

// Registering a taken name is answered exists without hashing the
// password.
func TestRegisterOfATakenNameDoesNotHash(t *testing.T) {
	e := gatewaytest.New(t)
	c := e.Dial(t, frame.JSON)
	gatewaytest.OK(t, c, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "taken", Password: "correct horse"}})
	before := hashes(t, e, "hash")
	for range 5 {
		gatewaytest.Fails(t, c, "exists", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "TAKEN", Password: "another horse"}})
	}
	if n := hashes(t, e, "hash") - before; n != 0 {
		t.Fatalf("%v hashes for registrations of a taken name", n)
	}
}

// An address gets PasswordAttemptsPerAddr logins and registrations a
// minute; the next is refused before it waits for a hashing slot, and
// other addresses are not affected.
func TestPasswordAttemptsPerAddress(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.PasswordAttemptsPerAddr = 3 })
	flood := e.DialFrom(t, frame.JSON, "198.51.100.20:1")
	for i := range 3 {
		gatewaytest.OK(t, flood, &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: fmt.Sprintf("bot%d", i), Password: "correct horse"}})
	}
	before := hashes(t, e, "hash") + hashes(t, e, "verify")
	er := gatewaytest.Fails(t, flood, "rate_limited", &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "bot9", Password: "correct horse"}})
	if er.GetRetryAfterMs() <= 0 || er.GetRetryAfterMs() > 60_000 {
		t.Fatalf("retry after %d ms", er.GetRetryAfterMs())
	}
	gatewaytest.Fails(t, flood, "rate_limited", gatewaytest.LoginReq("bot0", "correct horse", "d1"))
	if n := hashes(t, e, "hash") + hashes(t, e, "verify") - before; n != 0 {
		t.Fatalf("%v hashes after the limit", n)
	}
	gatewaytest.OK(t, e.DialFrom(t, frame.JSON, "198.51.100.21:1"), gatewaytest.LoginReq("bot0", "correct horse", "d1"))
}

// Connections that have not logged in are capped per address and in all;
// the handshake over a cap is refused, and a login frees a place.
func TestUnauthenticatedConnectionCaps(t *testing.T) {
	e := gatewaytest.New(t, func(c *gateway.Config, _ *gateway.Deps) { c.MaxUnauthPerAddr, c.MaxUnauth = 3, 6 })
	gatewaytest.OK(t, e.Dial(t, frame.JSON), &mpimv1.ClientFrame_Register{Register: &mpimv1.RegisterRequest{Username: "ursula", Password: "correct horse"}})
	const x = "198.51.100.30:1"
	var open []*gatewaytest.Client
	for range 3 {
		open = append(open, e.DialFrom(t, frame.JSON, x))
	}
	refused := func(remote, status string) {
		t.Helper()
		c, err := gatewaytest.Dial(gatewaytest.Ctx(t), e.URL, frame.JSON, &gatewaytest.Options{Header: http.Header{gatewaytest.RemoteHeader: {remote}}})
		if err == nil {
			c.CloseNow()
			t.Fatalf("connection from %s accepted over the cap", remote)
		}
		if !strings.Contains(err.Error(), status) {
			t.Fatalf("connection from %s: %v, want status %s", remote, err, status)
		}
	}
	refused("198.51.100.30:2", "429")
	gatewaytest.OK(t, open[0], gatewaytest.LoginReq("ursula", "correct horse", "d1"))
	open = append(open, e.DialFrom(t, frame.JSON, x))
	refused(x, "429")
	// The registering connection, 3 from x and 2 more fill the total.
	e.DialFrom(t, frame.JSON, "203.0.113.1:1")
	e.DialFrom(t, frame.JSON, "203.0.113.2:1")
	refused("203.0.113.3:1", "503")
	// A closed connection frees its place.
	open[1].CloseNow()
	gatewaytest.Eventually(t, "place freed", func() bool {
		c, err := gatewaytest.Dial(gatewaytest.Ctx(t), e.URL, frame.JSON, &gatewaytest.Options{Header: http.Header{gatewaytest.RemoteHeader: {"203.0.113.3:1"}}})
		if err == nil {
			t.Cleanup(func() { c.CloseNow() })
		}
		return err == nil
	})
	gatewaytest.Ping(t, open[0])
}
