package accounts_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/eventstore"
	"github.com/mpim/mpim/gateway/accounts"
	"github.com/mpim/mpim/internal/sealed"
	"github.com/mpim/mpim/internal/testsvc"
	"github.com/mpim/mpim/schema"
	"github.com/redis/go-redis/v9"
)

// clock is a test clock that can be moved forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.offset) }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

// newService returns a Service over a fresh Redis prefix and database,
// with cheap hashes and at most two failed logins per username. Its login
// delays run on a clock that stands still, so a delay never ends while a
// test runs, however slow the machine.
func newService(tb testing.TB) (*accounts.Service, *clock) {
	tb.Helper()
	s, clk, _, _ := newServices(tb)
	return s, clk
}

// testKey is the password key of the services of newService.
const testKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// newServices is newService that also returns its command service and a
// function that makes another Service on the same deployment with other
// password keys.
func newServices(tb testing.TB) (*accounts.Service, *clock, *command.Service, func(*sealed.Keys) (*accounts.Service, error)) {
	tb.Helper()
	ctx := context.Background()
	rt := testsvc.Redis(tb)
	rdb := redis.NewClient(&redis.Options{Addr: rt.Addr})
	tb.Cleanup(func() { rdb.Close() })
	store, err := eventstore.Open(ctx, rdb, eventstore.Config{Prefix: rt.Prefix, Partitions: 2})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	clk := &clock{}
	stopped := time.Now()
	cmd, err := command.New(store, command.Config{Now: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sql.Open("mysql", testsvc.MySQL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if _, err := schema.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	with := func(keys *sealed.Keys) (*accounts.Service, error) {
		return accounts.New(accounts.Config{Prefix: rt.Prefix, TokenTTL: time.Hour,
			Argon2:              accounts.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, SaltBytes: 16, KeyBytes: 32},
			MaxConcurrentHashes: 2, LoginFailureWindow: time.Minute, LoginFailuresPerUser: 2, LoginFailuresPerAddr: -1,
			PasswordAttemptsPerAddr: -1, Now: clk.Now, DelayClock: func() time.Time { return stopped }, PasswordKeys: keys}, cmd, db, rdb, nil)
	}
	keys, err := sealed.Parse(testKey)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := with(keys)
	if err != nil {
		tb.Fatal(err)
	}
	return s, clk, cmd, with
}

func TestTokensResumeUntilRevokedOrExpired(t *testing.T) {
	s, clk := newService(t)
	ctx := context.Background()
	const addr = "192.0.2.1:1000"
	id, _, err := s.Register(ctx, "ada", "correct horse", "Ada", addr)
	if err != nil {
		t.Fatal(err)
	}
	login := func(device domain.DeviceID) accounts.Login {
		t.Helper()
		l, err := s.Login(ctx, "ada", "correct horse", device, "test", addr)
		if err != nil || l.Identity.User != id || l.Identity.Device != device {
			t.Fatalf("login on %s: %+v, %v", device, l, err)
		}
		return l
	}
	denied := func(token, why string) {
		t.Helper()
		if _, err := s.Resume(ctx, token); domain.ErrorCode(err) != domain.EUnauthorized {
			t.Fatalf("resume %s: %v, want unauthorized", why, err)
		}
	}
	phone, laptop, tablet := login("phone"), login("laptop"), login("tablet")
	if got, err := s.Resume(ctx, phone.Token); err != nil || got.User != id || got.Device != "phone" || !got.Expiry.Equal(phone.Identity.Expiry) {
		t.Fatalf("resume: %+v, %v", got, err)
	}
	denied(phone.Token[:20], "a truncated token")
	me := command.Actor{User: id, Device: "phone"}
	if err := s.LogOutDevice(ctx, me, "tablet"); err != nil {
		t.Fatal(err)
	}
	denied(tablet.Token, "a logged-out device's token")
	if err := s.LogOutDevice(ctx, me, "phone"); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("logging out the caller's own device: %v", err)
	}
	if ended, err := s.LogOutOthers(ctx, me); err != nil || len(ended) != 1 || ended[0] != "laptop" {
		t.Fatalf("logging out the others ended %v, %v", ended, err)
	}
	denied(laptop.Token, "another device's token")
	if _, err := s.Resume(ctx, phone.Token); err != nil {
		t.Fatalf("the caller's token after logging out the others: %v", err)
	}
	clk.Add(time.Hour)
	denied(phone.Token, "an expired token")
	if n, err := s.PruneTokens(ctx, 10); err != nil || n != 3 {
		t.Fatalf("pruned %d, %v; want the three expired tokens", n, err)
	}
}

func TestLoginFailuresAreThrottledAndLookAlike(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	const addr = "192.0.2.1:1000"
	if _, _, err := s.Register(ctx, "bob", "password", "", addr); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("registering a common password: %v", err)
	}
	if _, _, err := s.Register(ctx, "bob", "correct horse", "", addr); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nobody", "bob"} {
		if _, err := s.Login(ctx, name, "wrong horse", "d", "", addr); domain.ErrorCode(err) != accounts.CodeBadCredentials {
			t.Fatalf("wrong login as %s: %v", name, err)
		}
	}
	if _, err := s.Login(ctx, "bob", "wrong horse", "d", "", addr); domain.ErrorCode(err) != accounts.CodeBadCredentials {
		t.Fatalf("second wrong login: %v", err)
	}
	var de *domain.Error
	_, err := s.Login(ctx, "bob", "correct horse", "d", "", addr)
	if !errors.As(err, &de) || de.Code != domain.ERateLimited || de.RetryAfter != time.Second {
		t.Fatalf("login over the limit: %v, want rate_limited for the first delay, a second", err)
	}
	if _, err := s.Login(ctx, "bob", "correct horse", "d", "", "198.51.100.7:1"); err != nil {
		t.Fatalf("login from another address: %v", err)
	}
}
