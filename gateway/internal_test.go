package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/internal/coord"
)

func TestEveryDomainCodeHasAStableClientCode(t *testing.T) {
	for _, c := range []domain.Code{domain.EInvalid, domain.ENotFound, domain.EConflict, domain.EExists, domain.EForbidden,
		domain.ENotMember, domain.EMuted, domain.EBlocked, domain.EWindowPassed, domain.EDissolved, domain.ENoRequest,
		domain.ETooLarge, domain.EUnauthorized, domain.ERateLimited, domain.EUnavailable, domain.EInternal} {
		e, _ := clientError(fmt.Errorf("wrapped: %w", domain.Errorf(c, "x")))
		if e.Code == "" || (e.Code == "internal") != (c == domain.EInternal) {
			t.Errorf("%s -> %q", c, e.Code)
		}
	}
	if e, fault := clientError(errors.New("boom")); e.Code != "internal" || !fault || strings.Contains(e.Message, "boom") {
		t.Errorf("a plain error -> %v, %v", e, fault)
	}
	if e, _ := clientError(fmt.Errorf("x: %w", context.DeadlineExceeded)); e.Code != "unavailable" {
		t.Errorf("a timeout -> %v", e)
	}
	if e, _ := clientError(domain.Errorf("brand_new", "x")); e.Code != "internal" {
		t.Errorf("an unmapped code -> %v", e)
	}
	if e, _ := clientError(rateLimited(newUserLimits(2, 1).acquire("u"))); e.Code != "rate_limited" {
		t.Errorf("rate limit -> %v", e)
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := Config{GatewayID: "bad id}", MaxFrameBytes: 10, SendQueue: -1, IdleTimeout: time.Second, HeartbeatInterval: time.Minute}
	c.setDefaults()
	err := c.Validate()
	for _, want := range []string{"gateway id", "public address", "max frame bytes", "send queue", "idle timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
	good := Config{GatewayID: "gw-1", PublicAddr: "gw1:8080"}
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if good.IdleTimeout != 3*good.HeartbeatInterval || good.SendQueue != 1024 || good.MaxFrameBytes != 64<<10 {
		t.Fatalf("defaults %+v", good)
	}
}

func TestPasswordsHashAndVerify(t *testing.T) {
	pw, err := newPasswords(Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltBytes: 16, KeyBytes: 32}, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h1, _ := pw.hash(ctx, "correct horse")
	h2, _ := pw.hash(ctx, "correct horse")
	if h1 == h2 || !strings.HasPrefix(h1, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hashes %q %q: want PHC strings with distinct salts", h1, h2)
	}
	if ok, err := pw.verify(ctx, h1, "correct horse"); !ok || err != nil {
		t.Fatalf("verify the right password: %v %v", ok, err)
	}
	if ok, err := pw.verify(ctx, h1, "correct horsf"); ok || err != nil {
		t.Fatalf("verify a wrong password: %v %v", ok, err)
	}
	for _, bad := range []string{"", "$2b$10$abc", "$argon2id$v=19$m=999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=64,t=1,p=1$!!$!!"} {
		if _, err := pw.verify(ctx, bad, "x"); domain.ErrorCode(err) != domain.EInternal {
			t.Errorf("verify against %q: %v", bad, err)
		}
	}
}

func TestStreamIDs(t *testing.T) {
	for s, ok := range map[string]bool{"1-0": true, "1700000000000-12": true, "": false, "1": false, "-1": false, "1-": false,
		"a-1": false, "1-1-1": false, "99999999999999999999999-0": false} {
		if validInboxID(s) != ok {
			t.Errorf("validInboxID(%q) = %v", s, !ok)
		}
	}
	var a ackTimes
	t0 := time.Unix(100, 0)
	for i, id := range []string{"5-0", "5-1", "6-0"} {
		a.sent(id, t0.Add(time.Duration(i)*time.Second))
	}
	var got []time.Time
	a.acked("5-1", func(t time.Time) { got = append(got, t) })
	if len(got) != 2 || len(a.pending) != 1 {
		t.Fatalf("acking 5-1 observed %v, left %v", got, a.pending)
	}
}

type fakeDirectory struct {
	gws []coord.GatewayInfo
	err error
}

func (f fakeDirectory) Gateways(context.Context) ([]coord.GatewayInfo, error) { return f.gws, f.err }

func TestLeastLoaded(t *testing.T) {
	g, ok := leastLoaded([]coord.GatewayInfo{{ID: "a", Addr: "a:1", Load: 5}, {ID: "b", Addr: "", Load: 0}, {ID: "c", Addr: "c:1", Load: 2}})
	if !ok || g.ID != "c" {
		t.Fatalf("picked %v %v", g, ok)
	}
	seen := map[string]bool{}
	for range 200 {
		g, _ := leastLoaded([]coord.GatewayInfo{{ID: "a", Addr: "a:1", Load: 1}, {ID: "b", Addr: "b:1", Load: 1}, {ID: "c", Addr: "c:1", Load: 3}})
		seen[g.ID] = true
	}
	if !seen["a"] || !seen["b"] || seen["c"] {
		t.Fatalf("ties picked %v; want both tied gateways and never the loaded one", seen)
	}
	if _, ok := leastLoaded(nil); ok {
		t.Fatal("picked a gateway from none")
	}
}
