package accounts_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/mpim/mpim/command"
	"github.com/mpim/mpim/domain"
	"github.com/mpim/mpim/gateway/accounts"
	"github.com/mpim/mpim/internal/sealed"
	"golang.org/x/crypto/argon2"
)

// storedHash is the password hash the log holds for user.
func storedHash(t *testing.T, cmd *command.Service, user domain.UserID) string {
	t.Helper()
	u, err := cmd.User(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return u.PasswordHash()
}

// addr is the client address of the tests' logins.
const addr = "192.0.2.1:1000"

// withAlice is newServices with alice registered (password "correct horse").
func withAlice(t *testing.T) (*accounts.Service, *command.Service, func(*sealed.Keys) (*accounts.Service, error), domain.UserID) {
	t.Helper()
	s, _, cmd, with := newServices(t)
	alice, _, err := s.Register(context.Background(), "alice", "correct horse", "", addr)
	if err != nil {
		t.Fatal(err)
	}
	return s, cmd, with, alice
}

// Registration and password changes put only sealed hashes in the log;
// logins open them. A hash in the clear, as logs written before sealing
// hold, still verifies.
func TestPasswordHashesAreSealedInTheLog(t *testing.T) {
	s, cmd, _, alice := withAlice(t)
	ctx := context.Background()
	h := storedHash(t, cmd, alice)
	if !strings.HasPrefix(h, sealed.Prefix) || strings.Contains(h, "argon2") {
		t.Fatalf("registration logged %q, want a sealed hash", h)
	}
	if _, err := s.Login(ctx, "alice", "correct horse", "d1", "", addr); err != nil {
		t.Fatalf("login with the sealed hash: %v", err)
	}
	if err := s.ChangePassword(ctx, command.Actor{User: alice, Device: "d1"}, addr, "correct horse", "battery staple"); err != nil {
		t.Fatal(err)
	}
	if h2 := storedHash(t, cmd, alice); !strings.HasPrefix(h2, sealed.Prefix) || strings.Contains(h2, "argon2") || h2 == h {
		t.Fatalf("password change logged %q, want a new sealed hash", h2)
	}
	if _, err := s.Login(ctx, "alice", "battery staple", "d1", "", addr); err != nil {
		t.Fatalf("login after the change: %v", err)
	}

	salt := []byte("legacy-salt-0123")
	key := argon2.IDKey([]byte("old horse"), salt, 1, 64, 1, 32)
	legacy := fmt.Sprintf("$argon2id$v=19$m=64,t=1,p=1$%s$%s", base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	if _, err := cmd.Register(ctx, "olduser", legacy, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "olduser", "old horse", "d1", "", addr); err != nil {
		t.Fatalf("login with a hash in the clear from before sealing: %v", err)
	}
	if _, err := s.Login(ctx, "olduser", "wrong horse", "d1", "", addr); domain.ErrorCode(err) != accounts.CodeBadCredentials {
		t.Fatalf("wrong password against a hash in the clear: %v", err)
	}
}

// A sealed hash copied onto another user does not open for them, and a
// gateway without the key that sealed a hash fails loudly (internal) rather
// than calling the password wrong.
func TestSealedHashesDoNotMoveOrOpenWithoutTheirKey(t *testing.T) {
	s, cmd, with, alice := withAlice(t)
	ctx := context.Background()
	if _, err := cmd.Register(ctx, "mallory", storedHash(t, cmd, alice), "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "mallory", "correct horse", "d1", "", addr); domain.ErrorCode(err) != domain.EInternal || !strings.Contains(err.Error(), "another owner") {
		t.Fatalf("login with alice's sealed hash copied onto mallory: %v, want an internal error", err)
	}
	other, _, err := sealed.Generate()
	if err != nil {
		t.Fatal(err)
	}
	s2, err := with(other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Login(ctx, "alice", "correct horse", "d1", "", addr); domain.ErrorCode(err) != domain.EInternal || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("login on a gateway with another key: %v, want an internal error naming the missing key", err)
	}
	rotated, err := sealed.Parse(strings.Join([]string{strings.Repeat("ab", 32), testKey}, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	s3, err := with(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Login(ctx, "alice", "correct horse", "d1", "", addr); err != nil {
		t.Fatalf("login after rotation (the old key second): %v", err)
	}
	if _, err := with(nil); err == nil || !strings.Contains(err.Error(), "PasswordKeys is required") {
		t.Fatalf("a service without password keys: %v", err)
	}
}
